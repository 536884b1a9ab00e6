//! The main correctness test: scripts that only touch text run in the real
//! `/bin/bash` (with this machine's coreutils, grep, sed, gawk/mawk) and in the
//! emulated shell; stdout and exit status must be the same.

mod common;

use std::process::Command;

/// Scripts covering quoting, expansions, printf, pipes into the text tools,
/// `$(…)`, `&&`/`||`, loops and `$?`.
const SCRIPTS: &[&str] = &[
    "echo hello world",
    "echo 'single  quoted'   \"double  quoted\"",
    "echo a\\ b \\$HOME 'it'\\''s'",
    "echo -n abc; echo def",
    "echo -e 'a\\tb\\nc'",
    "x=5; echo $x ${x} \"$x\" '$x'",
    "x='a b   c'; echo $x; echo \"$x\"",
    "unset y; echo \"[${y:-default}]\" \"[${y-unset}]\" \"[${y:+alt}]\"",
    "y=; echo \"[${y:-d}]\" \"[${y-d}]\" \"[${y:+a}]\"",
    "v=hello.tar.gz; echo ${v%.*} ${v%%.*} ${v#*.} ${v##*.} ${#v}",
    "v=abcabc; echo ${v/b/X} ${v//b/X} ${v:1:3} ${v:2} ${v: -2}",
    "v=Hello; echo ${v^^} ${v,,} ${v^}",
    "echo $((3 + 4 * 2)) $(( (3 + 4) * 2 )) $((7 / 2)) $((7 % 3)) $((2 ** 10)) $((-5 + 2))",
    "i=0; i=$((i+1)); ((i++)); echo $i; ((i > 1)) && echo big",
    "echo $(( 0x10 + 010 )) $(( 1 << 4 )) $(( 5 > 3 ? 10 : 20 ))",
    "printf '%s\\n' a b c",
    "printf '%d-%05d-%x-%X-%o\\n' 42 42 255 255 8",
    "printf '%-5s|%5s|%.2s\\n' ab cd efgh",
    "printf '%s=%s\\n' k1 v1 k2 v2 k3",
    "printf '%.3f %5.1f %e\\n' 3.14159 2.5 12345.678",
    "printf 'no newline'; echo",
    "printf '%b\\n' 'a\\tb' 'c\\nd'",
    "printf '%c%c\\n' hello world",
    "printf '%%literal%% %s\\n' x",
    "echo $(echo inner) `echo back`",
    "echo \"$(echo 'a  b')\" $(echo 'a  b')",
    "x=$(printf 'l1\\nl2\\n\\n'); echo \"[$x]\"",
    "true && echo yes || echo no; false && echo yes || echo no",
    "false; echo $?; true; echo $?",
    "ls /definitely/not/here 2>/dev/null; echo $?",
    "(exit 3); echo $?",
    "! false; echo $?",
    "for i in 1 2 3; do echo item $i; done",
    "for f in a b; do for g in x y; do echo $f$g; done; done",
    "i=0; while [ $i -lt 5 ]; do i=$((i+1)); done; echo $i",
    "i=3; until [ $i -eq 0 ]; do echo $i; i=$((i-1)); done",
    "for i in 1 2 3 4 5; do [ $i -eq 3 ] && continue; [ $i -eq 5 ] && break; echo $i; done",
    "for ((i=0; i<3; i++)); do echo c$i; done",
    "if [ 1 -eq 1 ]; then echo one; elif [ 2 -eq 2 ]; then echo two; else echo three; fi",
    "if false; then echo a; elif true; then echo b; fi",
    "[ -z '' ] && echo empty; [ -n x ] && echo nonempty; [ a = a ] && echo eq; [ a != b ] && echo ne",
    "test 5 -gt 3; echo $?; test 2 -ge 3; echo $?",
    "[[ abc == a* ]] && echo glob; [[ abc =~ ^a.c$ ]] && echo regex; [[ -z '' && 1 -lt 2 ]] && echo both",
    "case foo.sh in *.txt) echo text;; *.sh) echo shell;; *) echo other;; esac",
    "case x in a|b) echo ab;; x|y) echo xy;; esac",
    "f() { echo \"args: $# $1 $2\"; return 4; }; f one two; echo $?",
    "f() { local n=$1; echo $((n * 2)); }; echo $(f 21)",
    "echo {a,b,c}x {1..5} {a..e}",
    "echo pre{1..3}post",
    "cat <<EOF\nline one\nvalue $((1+1))\nEOF",
    "cat <<'EOF'\nraw $HOME $(x)\nEOF",
    "cat <<< 'here string'",
    "read a b <<< 'first second third'; echo \"$a|$b\"",
    "echo one two three | cut -d' ' -f2",
    "printf 'a:b:c\\nd:e:f\\n' | cut -d: -f1,3",
    "echo abcdef | cut -c2-4",
    "printf 'b\\na\\nc\\na\\n' | sort",
    "printf 'b\\na\\nc\\na\\n' | sort -u",
    "printf '10\\n9\\n100\\n' | sort -n",
    "printf '10\\n9\\n100\\n' | sort -rn",
    "printf 'x 3\\ny 1\\nz 2\\n' | sort -k2 -n",
    "printf 'a\\na\\nb\\na\\n' | uniq",
    "printf 'a\\na\\nb\\na\\n' | uniq -c",
    "printf 'a\\na\\nb\\n' | sort | uniq -d",
    "echo 'Hello World' | tr a-z A-Z",
    "echo 'Hello World' | tr -d lo",
    "echo 'aaabbbccc' | tr -s a-c",
    "echo 'hello' | tr '[:lower:]' '[:upper:]'",
    "printf 'one\\ntwo\\nthree\\n' | wc -l",
    "echo 'one two three' | wc -w",
    "echo 'one two three' | wc -c",
    "printf 'a b\\nc d e\\n' | wc",
    "printf '1\\n2\\n3\\n4\\n5\\n6\\n7\\n8\\n9\\n10\\n11\\n12\\n' | head -3",
    "printf '1\\n2\\n3\\n4\\n5\\n' | head -n 2",
    "printf '1\\n2\\n3\\n4\\n5\\n' | tail -2",
    "printf '1\\n2\\n3\\n4\\n5\\n' | tail -n +3",
    "printf 'apple\\nbanana\\ncherry\\n' | grep an",
    "printf 'apple\\nBanana\\ncherry\\n' | grep -i banana",
    "printf 'apple\\nbanana\\ncherry\\n' | grep -v an",
    "printf 'apple\\nbanana\\ncherry\\n' | grep -c a",
    "printf 'cat\\ndog\\ncow\\n' | grep -E 'c(a|o)'",
    "printf 'abc\\n' | grep -o b",
    "printf 'x\\ny\\n' | grep z; echo $?",
    "printf 'a1\\nb2\\n' | grep -n '[0-9]'",
    "echo 'hello world' | sed 's/world/there/'",
    "echo 'aaa' | sed 's/a/b/g'",
    "echo 'aaa' | sed 's/a/b/2'",
    "printf 'l1\\nl2\\nl3\\n' | sed -n '2p'",
    "printf 'l1\\nl2\\nl3\\n' | sed '2d'",
    "printf 'l1\\nl2\\nl3\\n' | sed -n '/l3/p'",
    "echo 'key=value' | sed 's/\\(.*\\)=\\(.*\\)/\\2=\\1/'",
    "echo 'key=value' | sed -E 's/(.*)=(.*)/\\2:\\1/'",
    "echo abc | sed 's/b/[&]/'",
    "printf 'l1\\nl2\\nl3\\n' | sed '1,2s/l/L/'",
    "echo 'a b c' | awk '{print $2}'",
    "echo 'a:b:c' | awk -F: '{print $1, $3}'",
    "printf 'x 1\\ny 2\\nz 3\\n' | awk '{s += $2} END {print s}'",
    "printf 'a\\nb\\nc\\n' | awk 'NR==2'",
    "printf 'a b\\nc d e\\n' | awk '{print NF}'",
    "printf 'foo 1\\nbar 2\\n' | awk '/bar/ {print $2}'",
    "printf 'a\\nb\\n' | awk '{print NR\": \"$0}'",
    "echo 'x y z' | awk '{print $NF}'",
    "printf '3\\n1\\n2\\n' | awk '$1 > 1'",
    "echo hi | awk '{printf \"%s-%d\\n\", $1, 42}'",
    "printf 'a 1\\na 2\\nb 5\\n' | awk '{c[$1]+=$2} END {for (k in c) print k, c[k]}' | sort",
    "echo 'Hello' | awk '{print length($0), toupper($0), substr($0, 2, 3)}'",
    "echo hello | base64",
    "echo aGVsbG8K | base64 -d",
    "printf 'x%.0s' {1..60} | base64",
    "echo hello | md5sum",
    "echo hello | sha256sum",
    "echo hello | sha1sum",
    "echo $(echo a; echo b) | wc -w",
    "echo a; echo b >&2; echo c",
    "echo out 2>&1 | cat",
    "x=1; { x=2; echo in; }; echo $x",
    "x=1; (x=2; echo in); echo $x",
    "a=1 b=2; echo $a$b",
    "set -- x y z; echo $# $1 $3; shift; echo $@",
    "for a in \"x y\" z; do echo \"[$a]\"; done",
    "f() { for a in \"$@\"; do echo \"<$a>\"; done; }; f '1 2' 3",
    "echo \"$(echo \"nested $(echo deep)\")\"",
    "echo ${UNDEFINED_THING}end",
    "IFS=:; x='a:b:c'; for p in $x; do echo $p; done",
    "seq 3",
    "seq 2 5",
    "seq 1 2 9 | tail -1",
    "basename /a/b/c.txt; basename /a/b/c.txt .txt; dirname /a/b/c.txt; dirname file",
    "echo $(( $(echo 6) * 7 ))",
    "x=abc; [ \"$x\" = abc ] && echo match",
    "echo 'a,b,c' | tr ',' '\\n' | sort -r",
    "printf 'k=v\\n' | while IFS== read -r k v; do echo \"$k -> $v\"; done",
    "n=0; for i in $(seq 1 10); do n=$((n+i)); done; echo $n",
    "printf '%s\\n' one two | xargs echo",
    "echo a b c | xargs -n 1 echo",
    "expr 3 + 4; expr 10 / 3",
    "true; false; echo $?",
    "echo -e 'no\\c escape'; echo",
    "echo $'tab\\there'",
    "printf 'l\\n' | cat -n",
    "eval 'echo evaluated $((2+2))'",
    "type echo; type cd",
    "echo '}' ; echo '{a}'",
];

fn real_bash(script: &str) -> (String, i32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .output()
        .expect("run /bin/bash");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code().unwrap_or(-1))
}

#[test]
fn same_stdout_and_status_as_real_bash() {
    let host = common::host("debian");
    let mut failures = Vec::new();
    for script in SCRIPTS {
        let (want_out, want_status) = real_bash(script);
        let got = common::exec(&host, script);
        let got_status = got.status.unwrap_or(-1);
        if got.stdout != want_out || got_status != want_status {
            failures.push(format!(
                "script: {script:?}\n  bash:  {want_out:?} (status {want_status})\n  ours:  {:?} (status {got_status})\n  ours stderr: {:?}",
                got.stdout, got.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} scripts differ:\n{}", failures.len(), SCRIPTS.len(), failures.join("\n"));
}
