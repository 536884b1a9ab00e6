#!/usr/bin/env python3
"""suggest: authoring aid for personalities (osfit checks the result).

For every nmap-os-db reference whose name matches a regex it derives the
personality settings the shaper would need (first accepted value of each
test), predicts the subject with osfit's model and scores it.  Entries that
reach 100 % on every test but the ISN ones are reachable (with the share of
ISN outcomes where SP/GCD/ISR match too); the others list their blockers,
mostly tests SCHEMA.md leaves to Linux (U1, IE DFI, T1, T5/T7).

Usage: suggest.py REGEX [--all]     reachable entries (--all: and the blockers of the rest)
       suggest.py REGEX --fit ENTRY  settings derived from entry ENTRY and every entry
                                     they can bring to 100 % (own = name matches REGEX)
"""
import argparse
import math
import re

import osfit

TTLS = [0x40, 0x80, 0xFF, 0x3C, 0x20, 0x1E]
TS_HZ = {"1": 2, "7": 100, "8": 200, "A": 1000}
IPID_POLICY = {"Z": "zero", "I": "incremental", "BI": "broken_incremental", "RD": "random"}
REV_SEQ = {v: k for k, v in osfit.SEQ_MAP.items()}
REV_ACK = {v: k for k, v in osfit.ACK_MAP.items()}


def first(expr):
    alt = expr.split("|")[0]
    if "-" in alt and osfit.as_int(alt.split("-")[0]) is not None:
        alt = alt.split("-")[0]
    return alt.lstrip("<>")


def tokens(o):
    """'M5B4NW8ST11' -> [('M','5B4'),('N',''),('W','8'),('S',''),('T','11')]"""
    return re.findall(r"([MNWSTLE])([0-9A-F]*)", o)


def derive(ref):
    """(sysctls, personality) that would reproduce `ref` as far as the shaper can."""
    L = ref["lines"]
    g = lambda ln, t, d=None: L.get(ln, {}).get(t, d)
    sc, tcp = {}, {}
    texpr = g("T1", "T") or g("ECN", "T") or g("IE", "T") or "40"
    tg = g("T1", "TG")
    cands = ([osfit.as_int(tg)] if tg and osfit.as_int(tg) else []) + TTLS
    sc["ip_default_ttl"] = next((t for t in cands if osfit.accepts(texpr, osfit.hx(t))), 64)
    sc["ip_no_pmtu_disc"] = 0 if osfit.accepts(g("T1", "DF", "Y"), "Y") else 1
    sc["tcp_ecn"] = 1 if osfit.accepts(g("ECN", "CC", "N"), "Y") else 0
    o1 = first(g("OPS", "O1", "M5B4"))
    kinds = {k for k, _ in tokens(o1)}
    sc["tcp_timestamps"] = int("T" in kinds)
    sc["tcp_sack"] = int("S" in kinds)
    sc["tcp_window_scaling"] = int("W" in kinds)
    allowed = "".join(c for c in "wst" if c.upper() in kinds)
    opts = {}
    for probe, test in (("probe1", ("OPS", "O1")), ("probe3", ("OPS", "O3")),
                        ("probe6", ("OPS", "O6")), ("ecn", ("ECN", "O"))):
        o = g(*test)
        if o is None:
            continue
        toks = tokens(first(o))
        for k, v in toks:
            if k == "M" and v:
                tcp["mss"] = int(v, 16)
            if k == "W" and v:
                tcp["window_scale"] = int(v, 16)
        key = "".join(c for c in osfit.PROBE_OFFERS[probe] if c in allowed) or "none"
        tpl = "".join(k for k, _ in toks)
        if tpl != osfit.LINUX_OPTS[key]:
            opts[key] = tpl
    if opts:
        tcp["options"] = opts
    wins = {f"probe{i}": osfit.as_int(first(g("WIN", f"W{i}", "0"))) for i in range(1, 7)}
    wins["ecn"] = osfit.as_int(first(g("ECN", "W", "0")))
    tcp["syn_ack_windows"] = {k: v for k, v in wins.items() if v is not None}
    ts = first(g("SEQ", "TS", "U"))
    if ts not in ("U", "0") and osfit.as_int(ts) is not None:
        tcp["timestamp_hz"] = TS_HZ.get(ts, 2 ** osfit.as_int(ts))
    ipid = {}
    for test, key in (("TI", "tcp"), ("CI", "rst"), ("II", "icmp")):
        cls = first(g("SEQ", test, "")) if g("SEQ", test) else None
        if cls in IPID_POLICY:
            ipid[key] = IPID_POLICY[cls]
        elif cls == "RI":
            ipid[key] = "random"
    if ipid:
        tcp["ip_id"] = ipid
    tcp["rst_ack"] = "other" if first(g("T4", "A", "Z")) == "O" else "zero"
    for t in ("T2", "T3"):
        if g(t, "R", "N") != "N":
            tcp[t.lower()] = {"flags": first(g(t, "F", "AR")), "df": first(g(t, "DF", "Y")) == "Y",
                              "window": osfit.as_int(first(g(t, "W", "0"))) or 0,
                              "seq": REV_SEQ.get(first(g(t, "S", "Z")), "other"),
                              "ack": REV_ACK.get(first(g(t, "A", "Z")), "other")}
    pers = {"tcp": tcp}
    cd = g("IE", "CD")
    if cd and first(cd) != "S":
        pers["icmp"] = {"echo_code": 0 if first(cd) == "Z" else osfit.as_int(first(cd)) or 0}
    return sc, pers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("regex")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--fit", type=int, help="entry number: settings + what else they match")
    args = ap.parse_args()
    weights, refs = osfit.parse_db(osfit.DB)
    if args.fit is not None:
        return fit(weights, refs, refs[args.fit], args.regex)
    for i, ref in enumerate(refs):
        if not re.search(args.regex, ref["name"]):
            continue
        sc, pers = derive(ref)
        try:
            p = osfit.profile(weights, ref, osfit.predict(sc, pers))
        except osfit.Bad as e:  # score the rest with Linux's option order
            pers["tcp"].pop("options", None)
            p = osfit.profile(weights, ref, osfit.predict(sc, pers))
            p["sure"] = False
            p["misses"].insert(0, f"BLOCKED {e}")
        isn = 100.0 * len(p["cells"]) / (21 * 18)
        if p["sure"]:
            print(f"  reachable isn {isn:5.1f}%  {ref['name']}  [entry {i}]")
        elif args.all:
            print(f"  {p['acc'] * 100:5.1f}%          {ref['name']}  [entry {i}]: " + "; ".join(p["misses"]))


def fit(weights, refs, ref, regex):
    """Settings derived from `ref`; which entries they reach and which rivals they risk."""
    sc, pers = derive(ref)
    print("sysctls", sc)
    print("personality", pers)
    subj = osfit.predict(sc, pers)
    print(osfit.render(subj))
    grid = 21 * 18
    covered = set()
    for i, r in enumerate(refs):
        p = osfit.profile(weights, r, subj)
        if not (p["maybe"] and p["cells"]):
            continue
        mine = re.search(regex, r["name"]) and p["sure"]
        if mine:
            covered |= p["cells"]
        print(f"  {'own  ' if mine else 'RIVAL'} isn {100.0 * len(p['cells']) / grid:5.1f}%  {r['name']}  [entry {i}]")
    print(f"  own entries cover {100.0 * len(covered) / grid:.1f}% of ISN outcomes")


if __name__ == "__main__":
    main()
