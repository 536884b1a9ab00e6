//! Hostile input: random command lines and random keystrokes never panic the
//! shell, always finish, and produce bounded output.

mod common;

use decnet_shell::{Limits, Mode, ShellOutput, ShellSession};
use proptest::prelude::*;

/// Pieces of shell syntax, so random lines reach deep into the parser and
/// interpreter rather than failing at the first character.
const PIECES: &[&str] = &[
    "echo",
    "cat",
    "ls",
    "x",
    "$x",
    "${x:-a}",
    "${#x}",
    "$((1+",
    "))",
    "$(",
    ")",
    "`",
    "'",
    "\"",
    "\\",
    ";",
    "&&",
    "||",
    "|",
    "&",
    ">",
    ">>",
    "<",
    "<<",
    "<<<",
    "2>&1",
    "EOF",
    "\n",
    " ",
    "{",
    "}",
    "(",
    ")",
    "if",
    "then",
    "else",
    "fi",
    "for",
    "in",
    "do",
    "done",
    "while",
    "true",
    "case",
    "esac",
    ";;",
    "*",
    "?",
    "[a-z]",
    "~",
    "=",
    "x=1",
    "f()",
    "!",
    "#",
    "{1..3}",
    "-la",
    "/tmp",
    "/proc/cpuinfo",
    "grep",
    "sed",
    "s/a/b/",
    "awk",
    "{print $1}",
    "sort",
    "base64",
    "-d",
    "sudo",
    "cd",
    "..",
    "rm",
    "-rf",
    "printf",
    "%s%d%",
    "read",
    "eval",
    "exit",
    "wget",
    "http://192.0.2.1/a",
    "yes",
    "seq",
    "1000000",
    "tr",
    "a-z",
    "head",
];

fn host(distro: &'static str) -> &'static decnet_shell::ShellHost {
    use std::sync::OnceLock;
    static HOSTS: OnceLock<Vec<(&'static str, decnet_shell::ShellHost)>> = OnceLock::new();
    let hosts = HOSTS.get_or_init(|| {
        ["debian", "alpine", "centos7"]
            .iter()
            .map(|d| (*d, common::host(d)))
            .collect()
    });
    &hosts.iter().find(|(d, _)| *d == distro).expect("a prepared distro").1
}

fn line() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|v| v.join(" "))
}

fn total_len(out: &[ShellOutput]) -> usize {
    out.iter()
        .map(|o| match o {
            ShellOutput::Stdout(b) | ShellOutput::Stderr(b) => b.len(),
            _ => 0,
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_command_lines_finish(line in line()) {
        let host = host("debian");
        let out = ShellSession::run_exec(host, "root", &line, b"some stdin\n", common::NOW, 3);
        prop_assert!(out.iter().any(|o| matches!(o, ShellOutput::Exit(_))), "no exit for {line:?}");
        prop_assert!(total_len(&out) <= 3 * Limits::default().max_output);
    }

    #[test]
    fn random_bytes_as_a_line(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let host = host("alpine");
        let line = String::from_utf8_lossy(&bytes).into_owned();
        let out = ShellSession::run_exec(host, "admin", &line, &bytes, common::NOW, 5);
        prop_assert!(out.iter().any(|o| matches!(o, ShellOutput::Exit(_))));
    }

    #[test]
    fn random_keystrokes(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..20)) {
        let host = host("centos7");
        let mut s = ShellSession::new(host, "admin", Mode::Interactive, Limits::default(), 9);
        let mut total = total_len(&s.start(common::NOW));
        for c in chunks {
            let out = s.feed(common::NOW, &c);
            total += total_len(&out);
        }
        prop_assert!(total <= 64 * Limits::default().max_output);
    }

    #[test]
    fn random_typed_lines(lines in prop::collection::vec(line(), 0..6)) {
        let host = host("debian");
        let mut s = ShellSession::new(host, "admin", Mode::Interactive, Limits::default(), 9);
        s.start(common::NOW);
        for l in lines {
            s.feed(common::NOW, l.as_bytes());
            s.feed(common::NOW, b"\r");
        }
        s.feed(common::NOW, b"\x03\x04");
    }
}

/// Lines the random tests found that sent the parser's tokenizer into an
/// unbounded loop (and CI out of memory): each must now end with a syntax
/// error, and ordinary here-documents must still run.
#[test]
fn here_documents_that_looped_the_parser_finish() {
    let host = host("debian");
    for line in [
        "eval x << $( < } $x rm /tmp true # s/a/b/ & {1..3}",
        "<< $( <x #\n)",
        "<< \"$( <x #",
        ": << $( >x #\nEOF",
        "\" $( | << >> grep \"",
        "echo ${x<<''} ",
        "cat << ${ \"\" $(",
        "eval \"echo \\${x<<''} \"",
    ] {
        let out = ShellSession::run_exec(host, "root", line, b"", common::NOW, 3);
        assert!(
            out.contains(&ShellOutput::Exit(2)),
            "{line:?} should be a syntax error: {out:?}"
        );
    }
    let out = ShellSession::run_exec(host, "root", "cat << EOF\nuser $(whoami)\nEOF", b"", common::NOW, 3);
    assert!(out.contains(&ShellOutput::Stdout(b"user root\n".to_vec())), "{out:?}");
    // A dropper script: a substitution on an earlier line, then a here-document.
    let script = "ARCH=$(uname -m)\ncat << EOF\narch $ARCH\nEOF";
    let out = ShellSession::run_exec(host, "root", script, b"", common::NOW, 3);
    assert!(out.contains(&ShellOutput::Stdout(b"arch x86_64\n".to_vec())), "{out:?}");
}
