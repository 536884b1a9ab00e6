#!/usr/bin/env python3
"""osfit: offline check of OS personalities against nmap 7.93's OS database.

For each personality TOML it predicts the subject fingerprint `nmap -O` would
compute for a decky (Linux 6.18 baseline + the personality, as SCHEMA.md
describes), scores it against every reference in nmap-os-db with nmap's rule
(tests present on both sides only, weighted by MatchPoints) and checks that
  * the `nmap_references` entries are at 100 % on every test the personality
    decides, and, together, on SP/GCD/ISR too for every ISN outcome the
    decky can give (the kernel's: SP F8-10C x ISR FD-10E, GCD 1; a persona's
    ISN clock: its isr and sp, or its gcd's; --isn-aside: for some);
  * no entry whose name lacks every `nmap` substring can reach 100 % (it
    would print in `OS details:`), and at most 8 names can at once (above
    that nmap prints no OS details; entries of one name count once).

A predicted test can hold several values (random IP IDs, the ISN outcomes).
For the personality's own references a test counts only when the reference
accepts all of them; for rivals, when it accepts any.

Usage: osfit.py [--db PATH] [--top N] [--subject] [--isn-aside] FILE.toml...
Exit status: 0 all pass, 1 a check failed, 2 bad input.
"""
import argparse
import math
import sys
import tomllib
from pathlib import Path

DB = "/usr/share/nmap/nmap-os-db"
LINES = ["SEQ", "OPS", "WIN", "ECN", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "U1", "IE"]
MAX_DETAILS = 8  # nmap prints no OS details above this many perfect matches

# ---------------------------------------------------------------- database


def parse_db(path):
    """Return (matchpoints, [ref]); a ref is {'name', 'lines': {line: {test: expr}}}."""
    weights, refs, cur = None, [], None
    for raw in open(path, encoding="latin-1"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "MatchPoints":
            cur = weights = {"name": "MatchPoints", "lines": {}}
        elif line.startswith("Fingerprint "):
            cur = {"name": line[len("Fingerprint "):], "lines": {}}
            refs.append(cur)
        elif "(" in line and line.endswith(")") and cur is not None:
            name, body = line[:-1].split("(", 1)
            tests = dict(kv.split("=", 1) for kv in body.split("%") if "=" in kv)
            cur["lines"][name] = tests
    return weights["lines"], refs


def as_int(text):
    try:
        return int(text, 16)
    except ValueError:
        return None


def accepts(expr, value):
    """nmap's expression match: alternatives `|`, hex ranges `a-b`, `>x`, `<x`."""
    num = as_int(value)
    for alt in expr.split("|"):
        if alt == value:
            return True
        if num is None or not alt:
            continue
        if alt[0] in "<>":
            bound = as_int(alt[1:])
            if bound is not None and (num > bound if alt[0] == ">" else num < bound):
                return True
        elif "-" in alt:
            lo, hi = (as_int(x) for x in alt.split("-", 1))
            if lo is not None and hi is not None and lo <= num <= hi:
                return True
    return False


def score(weights, ref, subject, sure=True):
    """Accuracy (0..1) and the mismatched tests of `subject` against `ref`.

    sure=True: a test with several predicted values counts only if the
    reference accepts all of them (the match holds on every scan);
    sure=False: if it accepts any (the match can happen on some scan)."""
    got = possible = 0
    misses = []
    need = all if sure else any
    for line, tests in subject.items():
        rtests = ref["lines"].get(line)
        if rtests is None:
            continue
        for test, values in tests.items():
            if test not in rtests:
                continue
            w = int(weights.get(line, {}).get(test, 0))
            possible += w
            if need(accepts(rtests[test], v) for v in values):
                got += w
            else:
                misses.append(f"{line}.{test}={show_value(values)} (ref {rtests[test]}, -{w})")
    return (got / possible if possible else 0.0), misses


# ------------------------------------------------------------- prediction

# Linux 6.18's SYN-ACK option order per offered/allowed option set.
LINUX_OPTS = {"wst": "MSTNW", "wt": "MNNTNW", "ws": "MNNSNW", "w": "MNW",
              "st": "MST", "t": "MNNT", "s": "MNNS", "none": "M"}
OPT_LEN = {"M": 4, "N": 1, "W": 3, "S": 2, "T": 10, "L": 1}
# What each nmap probe offers: SEQ probes 1..6 and the ECN probe.
PROBE_OFFERS = {"probe1": "wst", "probe2": "wst", "probe3": "wt", "probe4": "wst",
                "probe5": "wst", "probe6": "st", "ecn": "ws"}
# nmap's IP ID classes per policy, for (TI: 6 SYN-ACKs, CI: 3 RSTs, II: 2 echo replies).
# Random IDs: a step over 20000 means RD, but only with more than 2 samples; else a
# step over 1000 means RI. 6 samples miss RD with p = 0.3^5 (0.3 %, ignored), 3 with 9 %.
IPID = {"zero": ({"Z"}, {"Z"}, {"Z"}), "incremental": ({"I"}, {"I"}, {"I"}),
        "broken_incremental": ({"BI"}, {"BI"}, {"BI"}), "random": ({"RD", "RI"}, {"RD", "RI"}, {"RI", "?"}),
        # II has two samples: never RD, and plain random IDs one step in sixty
        # closer than 1000 (or a multiple of 256) are no class an entry names.
        "random_far": ({"RD"}, {"RD"}, {"RI"})}
SEQ_MAP = {"zero": "Z", "ack": "A", "ack+1": "A+", "other": "O"}
ACK_MAP = {"zero": "Z", "seq": "S", "seq+1": "S+", "other": "O"}
FLAG_ORDER = "EUAPRSF"  # the order nmap prints TCP flags in
UNKNOWN = {"?"}         # a value no reference expression accepts


class Bad(Exception):
    pass


def hx(n):
    return f"{n:X}"


def ts_class(hz):
    """nmap's SEQ.TS value for a timestamp clock of `hz`."""
    if hz <= 0:
        return "0"
    if hz <= 5.66:
        return "1"
    if 70 < hz <= 150:
        return "7"
    if 150 < hz <= 350:
        return "8"
    return hx(int(0.5 + math.log2(hz)))


def sysctls_of(path, pers):
    """Family sysctls (personas/os/families/<family>.toml) overlaid by the personality's."""
    merged = {}
    fam = path.resolve().parent.parent / "families" / f"{pers.get('family', '')}.toml"
    if fam.exists():
        merged.update(tomllib.loads(fam.read_text()).get("sysctls", {}))
    merged.update(pers.get("sysctls", {}))
    return {k.removeprefix("net.ipv4."): v for k, v in merged.items()}


def check_template(key, tpl):
    want = sorted(c.upper() for c in key if c != "n") + ["M"] if key != "none" else ["M"]
    have = sorted(c for c in tpl if c not in "NL")
    if set(tpl) - set(OPT_LEN) or have != sorted(want):
        raise Bad(f"options.{key} = {tpl!r}: must hold M and exactly the options of '{key}'")
    size = lambda t: sum(OPT_LEN[c] for c in t)
    n, linux = size(tpl), size(LINUX_OPTS[key])
    if n < linux or n > 40 or (n != linux and n % 4):
        raise Bad(f"options.{key} = {tpl!r}: {n} bytes, Linux uses {linux} (longer: whole words, up to 40)")


def predict(sc, pers):
    """The subject nmap would compute for sysctls `sc`: {line: {test: set(values)}}."""
    tcp = pers.get("tcp", {})
    ttl = hx(int(sc.get("ip_default_ttl", 64)))
    df = "N" if int(sc.get("ip_no_pmtu_disc", 0)) else "Y"
    allowed = "".join(c for c, k in (("w", "tcp_window_scaling"), ("s", "tcp_sack"),
                                     ("t", "tcp_timestamps")) if int(sc.get(k, 1)))
    mss = int(tcp.get("mss", 1460))
    if "window_scale" in tcp:
        wscale = int(tcp["window_scale"])
    elif "tcp_rmem" in sc:
        rmem = int(str(sc["tcp_rmem"]).split()[2])
        wscale = min(14, max(rmem, 4 << 20).bit_length() - 1 - 15)
    else:
        wscale = 10  # what the Linux 6.18 baseline shows (WA)
    templates = dict(LINUX_OPTS)
    for key, tpl in tcp.get("options", {}).items():
        if key not in LINUX_OPTS:
            raise Bad(f"unknown options key {key!r}")
        check_template(key, tpl)
        templates[key] = tpl

    def opts(probe):
        key = "".join(c for c in PROBE_OFFERS[probe] if c in allowed) or "none"
        m = int(tcp.get("syn_ack_mss", {}).get(probe, mss))
        out = {"M": f"M{hx(m)}", "N": "N", "W": f"W{hx(wscale)}", "S": "S", "T": "T11", "L": "L"}
        return "".join(out[c] for c in templates[key]), key

    def window(probe, key):
        w = tcp.get("syn_ack_windows", {}).get(probe, tcp.get("syn_ack_window"))
        if w is None:  # the kernel: 64 KiB rounded down to whole segments (MSS 1460, -12 with TS)
            seg = 1460 - (12 if "t" in key else 0)
            w = 65535 // seg * seg
        return hx(int(w))

    # IP IDs: nmap's classes TI (SYN-ACKs), CI (closed-port RSTs), II (ICMP echo).
    ipid = tcp.get("ip_id", {})
    pol = {k: ipid.get(k, "kernel") for k in ("tcp", "rst", "icmp")}
    cls = {}
    for n, (k, kernel) in enumerate((("tcp", {"Z"}), ("rst", {"Z"}), ("icmp", {"I"}))):
        if pol[k] == "kernel":
            # Linux zeroes the ID only with DF; without it the ID comes from a
            # hashed counter with random gaps: no class can be predicted.
            cls[k] = kernel if (df == "Y" or k == "icmp") else UNKNOWN
        elif pol[k] in IPID:
            cls[k] = IPID[pol[k]][n]
        else:
            raise Bad(f"ip_id.{k} = {pol[k]!r}")
    seq = {"SP": {hx(v) for v in range(0xF8, 0x10D)}, "GCD": {"1"},
           "ISR": {hx(v) for v in range(0xFD, 0x10F)},
           "TI": cls["tcp"], "CI": cls["rst"], "II": cls["icmp"]}
    isn = tcp.get("isn", {})
    if "gcd" in isn:
        seq.update(gcd_isn(int(isn["gcd"])))
    elif "isr" in isn:
        # Fixed steps for nmap's SEQ probes: it measures exactly these.
        seq.update({"SP": {hx(int(isn["sp"]))}, "ISR": {hx(int(isn["isr"]))}})
    incr = {"I", "BI", "RI"}
    if cls["tcp"] <= incr and cls["icmp"] <= incr:  # nmap only tests SS then
        shared = {"incremental", "broken_incremental"}
        seq["SS"] = {"S"} if pol["tcp"] == pol["icmp"] and pol["tcp"] in shared else {"S", "O"}
    elif cls["tcp"] & incr and cls["icmp"] & incr:
        seq["SS"] = UNKNOWN  # may or may not be present: no sure prediction
    if "t" not in allowed:
        seq["TS"] = {"U"}
    elif tcp.get("timestamp_per_connection"):
        # Values that start from the ISN: nmap's SEQ SYNs step them at its rate.
        isr = isn.get("isr")
        seq["TS"] = {hx(round(int(isr) / 8))} if isr else {"20", "21", "22"}
    elif "timestamp_hz" in tcp:
        seq["TS"] = {ts_class(float(tcp["timestamp_hz"]))}
    else:
        seq["TS"] = UNKNOWN  # Linux 6.x: random per connection

    subj = {"SEQ": seq, "OPS": {}, "WIN": {}}
    for i in range(1, 7):
        o, key = opts(f"probe{i}")
        subj["OPS"][f"O{i}"] = {o}
        subj["WIN"][f"W{i}"] = {window(f"probe{i}", key)}
    o, key = opts("ecn")
    ecn_cc = "Y" if int(sc.get("tcp_ecn", 2)) in (1, 2) else "N"
    subj["ECN"] = {"R": "Y", "DF": df, "T": ttl, "W": window("ecn", key), "O": o, "CC": ecn_cc, "Q": ""}
    subj["T1"] = {"R": "Y", "DF": df, "T": ttl, "S": "O", "A": "S+", "F": "AS", "RD": "0", "Q": ""}
    for t in ("t2", "t3"):
        subj[t.upper()] = synth_rst(tcp.get(t), ttl, df)
        if tcp.get(t, {}).get("options"):
            subj[t.upper()]["O"] = "".join(
                {"M": f"M{hx(mss)}", "W": f"W{hx(wscale)}", "T": "T11"}.get(c, c) for c in templates["wst"])
    rst_ack = {"zero": "Z", "other": "O", "none": None}[tcp.get("rst_ack", "zero")]
    for t in ("T4", "T6"):
        subj[t] = {"R": "N"} if rst_ack is None else {
            "R": "Y", "DF": df, "T": ttl, "W": "0", "S": "A", "A": rst_ack, "F": "R",
            "O": "", "RD": "0", "Q": ""}
    for t in ("T5", "T7"):
        rule = tcp.get(t.lower(), {})
        subj[t] = {"R": "N"} if rule.get("silent") else {
            "R": "Y", "DF": {True: "Y", False: "N"}.get(rule.get("df"), df), "T": ttl, "W": "0",
            "S": SEQ_MAP[rule.get("seq", "zero")],
            "A": ACK_MAP[rule.get("ack", "seq+1")], "F": "AR", "O": "", "RD": "0", "Q": ""}
    icmp = pers.get("icmp", {})
    ittl = hx(int(icmp["ttl"])) if "ttl" in icmp else ttl
    quote = int(icmp.get("quote", 328))
    subj["U1"] = {"R": "Y", "DF": "N", "T": ittl, "IPL": hx(28 + quote), "UN": "0", "RIPL": "G",
                  "RID": "G", "RIPCK": "G", "RUCK": "0" if icmp.get("zero_quoted_udp_checksum") else "G",
                  "RUD": "G"}
    code = icmp.get("echo_code")
    dfi = {"same": "S", "set": "Y", "clear": "N"}[icmp.get("echo_df", "clear")]
    subj["IE"] = {"R": "Y", "DFI": dfi, "T": ittl,
                  "CD": "S" if code is None else ("Z" if int(code) == 0 else hx(int(code)))}
    return {ln: {k: (v if isinstance(v, set) else {v}) for k, v in subj[ln].items()} for ln in LINES}


def gcd_isn(gcd):
    """SP, GCD and ISR of a counter that steps gcd, 2·gcd, … per connection,
    as nmap measures six SYNs sent 100-115 ms apart (SP from rates / gcd)."""
    sp, isr = set(), set()
    for first in (1, 2):
        steps = [first if i % 2 == 0 else 3 - first for i in range(5)]
        for dt in (0.100, 0.105, 0.110, 0.115):
            rates = [k * gcd / dt for k in steps]
            avg = sum(rates) / len(rates)
            sd = math.sqrt(sum((r / gcd - avg / gcd) ** 2 for r in rates) / (len(rates) - 1))
            sp.add(hx(0 if sd <= 1 else int(math.log2(sd) * 8 + 0.5)))
            isr.add(hx(int(math.log2(avg) * 8 + 0.5)))
    return {"SP": sp, "GCD": {hx(gcd)}, "ISR": isr}


def synth_rst(spec, ttl, df):
    """T2/T3: the shaper's answer to a probe Linux drops, or no answer."""
    if spec is None:
        return {"R": "N"}
    flags = spec.get("flags", "AR").upper()
    if set(flags) - set(FLAG_ORDER):
        raise Bad(f"flags {flags!r}: nmap prints only {FLAG_ORDER}")
    return {"R": "Y", "DF": "Y" if spec.get("df", df == "Y") else "N", "T": ttl,
            "W": hx(int(spec.get("window", 0))), "S": SEQ_MAP[spec.get("seq", "zero")],
            "A": ACK_MAP[spec.get("ack", "zero")], "F": "".join(c for c in FLAG_ORDER if c in flags),
            "O": "", "RD": "0", "Q": ""}


def show_value(values):
    if len(values) > 3 and all(as_int(v) is not None for v in values):
        nums = sorted(as_int(v) for v in values)
        return f"{hx(nums[0])}-{hx(nums[-1])}"
    return "|".join(sorted(values))


def render(subj):
    return "\n".join(f"{ln}(" + "%".join(f"{k}={show_value(v)}" for k, v in t.items()) + ")"
                     for ln, t in subj.items())


# ------------------------------------------------------------------ check

ISN_TESTS = ("SP", "GCD", "ISR")


def profile(weights, ref, subj):
    """How `ref` fares against `subj` over every ISN outcome the kernel can give.

    sure/maybe: all tests but SP/GCD/ISR match on every scan / on some scan;
    cells: the (SP, ISR) outcomes for which SP, GCD and ISR match as well;
    acc, misses: accuracy and mismatches without the ISN tests."""
    base = {ln: {k: v for k, v in t.items() if ln != "SEQ" or k not in ISN_TESTS}
            for ln, t in subj.items()}
    acc, misses = score(weights, ref, base)
    maybe = acc >= 1.0 or not score(weights, ref, base, sure=False)[1]
    seq, sub = ref["lines"].get("SEQ", {}), subj["SEQ"]
    ok = lambda t, v: "SEQ" not in ref["lines"] or t not in seq or accepts(seq[t], v)
    cells = set()
    if all(ok("GCD", g) for g in sub["GCD"]):
        cells = {(a, b) for a in sub["SP"] if ok("SP", a) for b in sub["ISR"] if ok("ISR", b)}
    return {"ref": ref, "sure": acc >= 1.0, "maybe": maybe, "cells": cells, "acc": acc,
            "misses": misses}


def check(path, weights, refs, top, show_subject, isn_aside):
    pers = tomllib.loads(path.read_text())
    for key in ("display_name", "family", "nmap"):
        if key not in pers:
            raise Bad(f"missing {key}")
    subj = predict(sysctls_of(path, pers), pers)
    wanted, expect = pers.get("nmap_references", []), pers["nmap"]
    grid = {(a, b) for a in subj["SEQ"]["SP"] for b in subj["SEQ"]["ISR"]}
    profs = [profile(weights, r, subj) for r in refs]
    pct = lambda cells: 100.0 * len(cells & grid) / len(grid)
    ok = True
    print(f"== {path.name}: {pers['display_name']} (family {pers['family']})")
    if show_subject:
        print(render(subj))
    print("   best references (accuracy without SP/GCD/ISR; share of ISN outcomes where those match too):")
    for p in sorted(profs, key=lambda p: (-p["acc"], -len(p["cells"])))[:top]:
        print(f"   {p['acc'] * 100:6.2f}% isn {pct(p['cells']):5.1f}%  {p['ref']['name']}")
        for m in p["misses"][:4]:
            print(f"                 miss {m}")
    covered = set()
    for name in wanted:
        mine = [p for p in profs if p["ref"]["name"] == name]
        if not mine:
            print(f"   FAIL not in the database: {name}")
            ok = False
            continue
        if not any(s in name for s in expect):
            print(f"   FAIL {name} names none of {expect}")
            ok = False
        sure = [p for p in mine if p["sure"]]
        cells = set().union(*(p["cells"] for p in sure))
        covered |= cells
        best = max(mine, key=lambda p: p["acc"])
        print(f"   ref  {name}: {len(sure)}/{len(mine)} entries at 100% on every non-ISN test, "
              f"100% overall on {pct(cells):.1f}% of ISN outcomes")
        if not sure:
            ok = False
            for m in best["misses"]:
                print(f"                 miss {m}")
    enough = covered >= grid or (isn_aside and covered)
    print(f"   references together: 100% on {pct(covered):.1f}% of ISN outcomes"
          f" ({'ok' if enough else 'FAIL: some scans show no exact match'})")
    ok = ok and enough
    rivals = {}
    for p in profs:
        if p["maybe"] and p["cells"] and p["ref"]["name"] not in wanted:
            rivals.setdefault(p["ref"]["name"], set()).update(p["cells"])
    for name, cells in sorted(rivals.items()):
        same = any(s in name for s in expect)
        print(f"   {'also' if same else 'FAIL'} can be 100% ({pct(cells):.1f}% of ISN outcomes): {name}"
              + ("" if same else f"  -- names none of {expect}"))
        ok = ok and same
    per_cell = max((len({p["ref"]["name"] for p in profs if p["maybe"] and c in p["cells"]})
                    for c in grid), default=0)
    if per_cell > MAX_DETAILS:
        print(f"   FAIL up to {per_cell} names at 100%: nmap prints no OS details above {MAX_DETAILS}")
        ok = False
    print(f"   verdict: {'PASS' if ok else 'FAIL'} (at most {per_cell} names in OS details)")
    return ok, f"references 100% on {pct(covered):5.1f}% of ISN outcomes, rivals {len(rivals)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--db", default=DB)
    ap.add_argument("--top", type=int, default=5, help="best references to list")
    ap.add_argument("--subject", action="store_true", help="print the predicted subject")
    ap.add_argument("--isn-aside", action="store_true",
                    help="pass if the references match on some ISN outcome, not on all")
    args = ap.parse_args()
    weights, refs = parse_db(args.db)
    results = {}
    for path in args.files:
        try:
            results[path.name] = check(path, weights, refs, args.top, args.subject, args.isn_aside)
        except (Bad, KeyError, ValueError, tomllib.TOMLDecodeError) as e:
            print(f"== {path.name}: bad personality: {e!r}")
            results[path.name] = (None, str(e))
        print()
    print("summary:")
    for name, (ok, note) in results.items():
        print(f"  {'PASS ' if ok else ('FAIL ' if ok is False else 'ERROR')} {name:26} {note}")
    if any(ok is None for ok, _ in results.values()):
        sys.exit(2)
    sys.exit(0 if all(ok for ok, _ in results.values()) else 1)


if __name__ == "__main__":
    main()
