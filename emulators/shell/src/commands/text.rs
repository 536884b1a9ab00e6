//! Text tools: the coreutils, grep, sed and a small awk, in GNU's output formats.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use sha2::Digest as _;

use super::{err, flags, out};
use crate::interp::{Exec, Io, Run};

/// Largest compiled regex (bytes), against pathological patterns.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

// === shared helpers ===

/// A named input: the file operand (or `-`) and its bytes.
pub(crate) type Input = (String, Arc<[u8]>);

/// The inputs of a filter: each file operand, or stdin when there is none.
pub(crate) fn inputs(
    run: &mut Run<'_>,
    tool: &str,
    files: &[String],
    io: &mut Io,
) -> Result<Vec<Input>, crate::interp::Flow> {
    let mut out = Vec::new();
    if files.is_empty() {
        out.push(("-".to_string(), run.read_all(io)?));
        return Ok(out);
    }
    for f in files {
        if f == "-" {
            out.push(("-".to_string(), run.read_all(io)?));
            continue;
        }
        match run.read_file(f) {
            Ok(d) => out.push((f.clone(), d)),
            Err(e) => err(io, &format!("{tool}: {f}: {}\n", e.message())),
        }
    }
    Ok(out)
}

fn lines_of(data: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if data.ends_with(b"\n") || data.is_empty() {
        v.pop();
    }
    v
}

/// Base64 with the standard alphabet and padding.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Decodes base64, skipping newlines; `Err` carries what decoded before the bad input.
pub(crate) fn base64_decode(text: &[u8], ignore_garbage: bool) -> Result<Vec<u8>, Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut pad = false;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad = true;
                continue;
            }
            b'\n' | b'\r' => continue,
            _ if ignore_garbage => continue,
            _ => return Err(out),
        };
        if pad {
            return Err(out);
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits >= 6 && !ignore_garbage {
        return Err(out);
    }
    Ok(out)
}

/// Expands the escapes of `echo -e` (`for_b` false) or `printf %b`. The bool
/// is true when `\c` stopped output.
pub(crate) fn backslash_escapes(text: &str, printf_b: bool) -> (Vec<u8>, bool) {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        match b[i] {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'e' | b'E' => out.push(0x1b),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'c' => return (out, true),
            b'0' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 3 && i + 1 < b.len() && (b'0'..=b'7').contains(&b[i + 1]) {
                    i += 1;
                    v = v * 8 + u32::from(b[i] - b'0');
                    n += 1;
                }
                out.push(v as u8);
            }
            c @ b'1'..=b'7' if printf_b => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i + 1 < b.len() && (b'0'..=b'7').contains(&b[i + 1]) {
                    i += 1;
                    v = v * 8 + u32::from(b[i] - b'0');
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i + 1 < b.len() && b[i + 1].is_ascii_hexdigit() {
                    i += 1;
                    v = v * 16 + (b[i] as char).to_digit(16).unwrap_or(0);
                    n += 1;
                }
                if n == 0 {
                    out.extend_from_slice(b"\\x");
                } else {
                    out.push(v as u8);
                }
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
        i += 1;
    }
    (out, false)
}

/// The body of `$'…'`.
pub(crate) fn ansi_c(text: &str) -> String {
    let mut s = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            s.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => s.push('\n'),
            Some('t') => s.push('\t'),
            Some('r') => s.push('\r'),
            Some('a') => s.push('\x07'),
            Some('b') => s.push('\x08'),
            Some('e' | 'E') => s.push('\x1b'),
            Some('f') => s.push('\x0c'),
            Some('v') => s.push('\x0b'),
            Some('\\') => s.push('\\'),
            Some('\'') => s.push('\''),
            Some('"') => s.push('"'),
            Some('x') => {
                let mut v = 0;
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                s.push(char::from_u32(v).unwrap_or('?'));
            }
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(x) => {
                            v = v * 8 + x;
                            chars.next();
                        }
                        None => break,
                    }
                }
                s.push(char::from_u32(v).unwrap_or('?'));
            }
            Some(other) => {
                s.push('\\');
                s.push(other);
            }
            None => s.push('\\'),
        }
    }
    s
}

// === printf ===

fn printf_number(arg: &str) -> Result<i64, String> {
    let t = arg.trim_start();
    if let Some(c) = t.strip_prefix(['\'', '"']) {
        return Ok(c.chars().next().map_or(0, |c| c as i64));
    }
    if t.is_empty() {
        return Ok(0);
    }
    crate::arith::parse_int(t).ok_or_else(|| format!("{arg}: invalid number"))
}

/// Formats bash `printf`: (bytes, status, warnings).
pub(crate) fn printf_format(format: &str, args: &[String], max: usize) -> (Vec<u8>, i32, Vec<String>) {
    let mut out = Vec::new();
    let mut status = 0;
    let mut warnings = Vec::new();
    let mut ai = 0;
    let f: Vec<char> = format.chars().collect();
    loop {
        let mut consumed_any = false;
        let mut i = 0;
        while i < f.len() {
            if out.len() > max {
                return (out, status, warnings);
            }
            let c = f[i];
            if c == '\\' {
                let mut j = i + 1;
                let mut esc = String::from("\\");
                if j < f.len() {
                    esc.push(f[j]);
                    if f[j] == 'x' {
                        while j + 1 < f.len() && esc.len() < 4 && f[j + 1].is_ascii_hexdigit() {
                            j += 1;
                            esc.push(f[j]);
                        }
                    } else if f[j].is_digit(8) {
                        while j + 1 < f.len() && esc.len() < 4 && f[j + 1].is_digit(8) {
                            j += 1;
                            esc.push(f[j]);
                        }
                        if !esc.starts_with("\\0") {
                            esc.insert(1, '0');
                        }
                    }
                }
                let (bytes, _) = backslash_escapes(&esc, true);
                out.extend(bytes);
                i = j + 1;
                continue;
            }
            if c != '%' {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 1;
                continue;
            }
            if i + 1 < f.len() && f[i + 1] == '%' {
                out.push(b'%');
                i += 2;
                continue;
            }
            // %[flags][width][.precision]conv
            let mut j = i + 1;
            let mut flags = String::new();
            while j < f.len() && "-+ #0".contains(f[j]) {
                flags.push(f[j]);
                j += 1;
            }
            let mut width = String::new();
            if j < f.len() && f[j] == '*' {
                let w = args.get(ai).map(|a| printf_number(a).unwrap_or(0)).unwrap_or(0);
                ai += 1;
                consumed_any = true;
                width = w.to_string();
                j += 1;
            }
            while j < f.len() && f[j].is_ascii_digit() {
                width.push(f[j]);
                j += 1;
            }
            let mut precision: Option<usize> = None;
            if j < f.len() && f[j] == '.' {
                j += 1;
                let mut p = String::new();
                if j < f.len() && f[j] == '*' {
                    let w = args.get(ai).map(|a| printf_number(a).unwrap_or(0)).unwrap_or(0);
                    ai += 1;
                    consumed_any = true;
                    p = w.max(0).to_string();
                    j += 1;
                }
                while j < f.len() && f[j].is_ascii_digit() {
                    p.push(f[j]);
                    j += 1;
                }
                precision = Some(p.parse().unwrap_or(0));
            }
            while j < f.len() && "hlLqjzt".contains(f[j]) {
                j += 1;
            }
            let Some(&conv) = f.get(j) else {
                warnings.push(format!(
                    "`{}': missing format character",
                    f[i..].iter().collect::<String>()
                ));
                return (out, 1, warnings);
            };
            let arg = args.get(ai).cloned();
            if arg.is_some() {
                consumed_any = true;
            }
            ai += 1;
            let left = flags.contains('-');
            let zero = flags.contains('0') && !left;
            let width: usize = width.trim_start_matches('-').parse().unwrap_or(0).min(4096);
            let body: Vec<u8> = match conv {
                's' => {
                    let mut s = arg.unwrap_or_default();
                    if let Some(p) = precision {
                        s = s.chars().take(p).collect();
                    }
                    s.into_bytes()
                }
                'b' => {
                    let (b, stop) = backslash_escapes(&arg.unwrap_or_default(), true);
                    if stop {
                        out.extend(pad(b, width, left, false));
                        return (out, status, warnings);
                    }
                    b
                }
                'c' => arg
                    .and_then(|a| a.chars().next())
                    .map(|c| c.to_string().into_bytes())
                    .unwrap_or_default(),
                'd' | 'i' | 'u' | 'o' | 'x' | 'X' => {
                    let v = match arg.as_deref().map(printf_number) {
                        Some(Ok(v)) => v,
                        Some(Err(w)) => {
                            warnings.push(w);
                            status = 1;
                            0
                        }
                        None => 0,
                    };
                    let mut digits = match conv {
                        'o' => format!("{:o}", v),
                        'x' => format!("{:x}", v),
                        'X' => format!("{:X}", v),
                        'u' => format!("{}", v as u64),
                        _ => v.unsigned_abs().to_string(),
                    };
                    if let Some(p) = precision
                        && digits.len() < p
                    {
                        digits = format!("{}{digits}", "0".repeat(p - digits.len()));
                    }
                    if flags.contains('#') && v != 0 {
                        match conv {
                            'x' => digits.insert_str(0, "0x"),
                            'X' => digits.insert_str(0, "0X"),
                            'o' => digits.insert(0, '0'),
                            _ => {}
                        }
                    }
                    let sign = if matches!(conv, 'd' | 'i') {
                        if v < 0 {
                            "-"
                        } else if flags.contains('+') {
                            "+"
                        } else if flags.contains(' ') {
                            " "
                        } else {
                            ""
                        }
                    } else {
                        ""
                    };
                    if zero && precision.is_none() && width > sign.len() + digits.len() {
                        digits = format!("{}{digits}", "0".repeat(width - sign.len() - digits.len()));
                    }
                    format!("{sign}{digits}").into_bytes()
                }
                'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
                    let v: f64 = match arg.as_deref() {
                        Some(a) => match a.trim().parse::<f64>() {
                            Ok(v) => v,
                            Err(_) => match printf_number(a) {
                                Ok(v) => v as f64,
                                Err(w) => {
                                    warnings.push(w);
                                    status = 1;
                                    0.0
                                }
                            },
                        },
                        None => 0.0,
                    };
                    let p = precision.unwrap_or(6);
                    let s = match conv {
                        'e' | 'E' => {
                            let s = format!("{v:.p$e}");
                            // Rust prints 1.5e2; C prints 1.5e+02.
                            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                            let e: i32 = e.parse().unwrap_or(0);
                            let s = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
                            if conv == 'E' { s.to_uppercase() } else { s }
                        }
                        'g' | 'G' => {
                            let s = format!("{v}");
                            if conv == 'G' { s.to_uppercase() } else { s }
                        }
                        _ => format!("{v:.p$}"),
                    };
                    let s = if flags.contains('+') && v >= 0.0 {
                        format!("+{s}")
                    } else {
                        s
                    };
                    if zero && width > s.len() {
                        let (sign, rest) = if s.starts_with(['-', '+']) {
                            s.split_at(1)
                        } else {
                            ("", s.as_str())
                        };
                        format!("{sign}{}{rest}", "0".repeat(width - s.len())).into_bytes()
                    } else {
                        s.into_bytes()
                    }
                }
                other => {
                    warnings.push(format!("`{other}': invalid format character"));
                    return (out, 1, warnings);
                }
            };
            out.extend(pad(body, width, left, false));
            i = j + 1;
        }
        if !consumed_any || ai >= args.len() {
            break;
        }
    }
    (out, status, warnings)
}

fn pad(body: Vec<u8>, width: usize, left: bool, _zero: bool) -> Vec<u8> {
    let len = String::from_utf8_lossy(&body).chars().count();
    if len >= width {
        return body;
    }
    let fill = vec![b' '; width - len];
    if left {
        [body, fill].concat()
    } else {
        [fill, body].concat()
    }
}

// === regex ===

/// Translates a POSIX BRE (or ERE when `extended`) into Rust regex syntax.
pub(crate) fn posix_to_rust(pattern: &str, extended: bool) -> String {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if in_class {
            if c == ']' {
                in_class = false;
            }
            if c == '['
                && chars.get(i + 1) == Some(&':')
                && let Some(end) = chars[i..].iter().collect::<String>().find(":]")
            {
                let s: String = chars[i..i + end + 2].iter().collect();
                out.push_str(&s);
                i += end + 2;
                continue;
            }
            if c == '\\' {
                out.push_str("\\\\");
            } else if c == '&' || c == '~' || c == '-' && chars.get(i + 1) == Some(&']') {
                out.push('\\');
                out.push(c);
            } else {
                out.push(c);
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '\\' if i + 1 < chars.len() => {
                let n = chars[i + 1];
                i += 2;
                match n {
                    '(' | ')' | '{' | '}' | '|' | '+' | '?' if !extended => out.push(n),
                    '<' | '>' => out.push_str("\\b"),
                    'w' | 'W' | 's' | 'S' | 'b' | 'B' => {
                        out.push('\\');
                        out.push(n);
                    }
                    d if d.is_ascii_digit() => out.push_str(&regex::escape(&d.to_string())),
                    other => out.push_str(&regex::escape(&other.to_string())),
                }
                continue;
            }
            '(' | ')' | '{' | '}' | '|' | '+' | '?' if !extended => {
                out.push('\\');
                out.push(c);
            }
            '*' if out.is_empty() || out.ends_with('(') || out.ends_with('|') || out.ends_with('^') => {
                out.push_str("\\*")
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

fn build_regex(pattern: &str, extended: bool, icase: bool) -> Option<regex::bytes::Regex> {
    regex::bytes::RegexBuilder::new(&posix_to_rust(pattern, extended))
        .case_insensitive(icase)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .ok()
}

/// `[[ s =~ re ]]` (ERE).
pub(crate) fn regex_is_match(pattern: &str, text: &str, icase: bool) -> bool {
    build_regex(pattern, true, icase).is_some_and(|r| r.is_match(text.as_bytes()))
}

// === the tools ===

fn count_arg(args: &[String], default: i64) -> (i64, bool, bool, Vec<String>) {
    // (count, from_start (+N), bytes (-c), files)
    let mut n = default;
    let mut plus = false;
    let mut bytes = false;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let value = if a == "-n" || a == "-c" {
            bytes = a == "-c";
            i += 1;
            args.get(i).cloned()
        } else if let Some(v) = a.strip_prefix("-n").or_else(|| a.strip_prefix("--lines=")) {
            Some(v.to_string())
        } else if let Some(v) = a.strip_prefix("-c").or_else(|| a.strip_prefix("--bytes=")) {
            bytes = true;
            Some(v.to_string())
        } else if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| c.is_ascii_digit()) {
            Some(a[1..].to_string())
        } else if a.starts_with('-') && a.len() > 1 {
            None
        } else {
            files.push(a.clone());
            None
        };
        if let Some(v) = value {
            plus = v.starts_with('+');
            n = v.trim_start_matches('+').parse().unwrap_or(default);
            if let Some(neg) = v.strip_prefix('-') {
                n = -neg.parse::<i64>().unwrap_or(0);
            }
        }
        i += 1;
    }
    (n, plus, bytes, files)
}

pub(crate) fn head(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (n, _, bytes, files) = count_arg(&argv[1..], 10);
    let many = files.len() > 1;
    for (k, (name, data)) in inputs(run, "head", &files, io)?.into_iter().enumerate() {
        if many {
            out(io, &format!("{}==> {name} <==\n", if k > 0 { "\n" } else { "" }));
        }
        if bytes {
            let end = if n >= 0 {
                (n as usize).min(data.len())
            } else {
                data.len().saturating_sub(n.unsigned_abs() as usize)
            };
            io.out.extend_from_slice(&data[..end]);
            continue;
        }
        let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
        let take = if n >= 0 {
            (n as usize).min(lines.len())
        } else {
            lines.len().saturating_sub(n.unsigned_abs() as usize)
        };
        for l in &lines[..take] {
            io.out.extend_from_slice(l);
        }
    }
    Ok(0)
}

pub(crate) fn tail(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let args: Vec<String> = argv[1..]
        .iter()
        .filter(|a| !matches!(a.as_str(), "-f" | "-F" | "--follow"))
        .cloned()
        .collect();
    let (n, plus, bytes, files) = count_arg(&args, 10);
    let n = n.unsigned_abs() as usize;
    let many = files.len() > 1;
    for (k, (name, data)) in inputs(run, "tail", &files, io)?.into_iter().enumerate() {
        if many {
            out(io, &format!("{}==> {name} <==\n", if k > 0 { "\n" } else { "" }));
        }
        if bytes {
            let start = if plus {
                n.saturating_sub(1).min(data.len())
            } else {
                data.len().saturating_sub(n)
            };
            io.out.extend_from_slice(&data[start..]);
            continue;
        }
        let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
        let start = if plus {
            n.saturating_sub(1).min(lines.len())
        } else {
            lines.len().saturating_sub(n)
        };
        for l in &lines[start..] {
            io.out.extend_from_slice(l);
        }
    }
    Ok(0)
}

pub(crate) fn grep(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut opts = String::new();
    let mut patterns = Vec::new();
    let mut operands = Vec::new();
    let mut i = 1;
    let mut done = false;
    while i < argv.len() {
        let a = &argv[i];
        if done || !a.starts_with('-') || a == "-" {
            operands.push(a.clone());
        } else if a == "--" {
            done = true;
        } else if a == "-e" {
            i += 1;
            patterns.extend(argv.get(i).cloned());
        } else if let Some(long) = a.strip_prefix("--") {
            match long {
                "count" => opts.push('c'),
                "invert-match" => opts.push('v'),
                "ignore-case" => opts.push('i'),
                "extended-regexp" => opts.push('E'),
                "fixed-strings" => opts.push('F'),
                "quiet" | "silent" => opts.push('q'),
                "only-matching" => opts.push('o'),
                _ => {}
            }
        } else {
            let body = &a[1..];
            if let Some(p) = body.strip_prefix('e') {
                patterns.push(p.to_string());
            } else {
                opts.push_str(body);
            }
        }
        i += 1;
    }
    if patterns.is_empty() {
        if operands.is_empty() {
            err(
                io,
                "Usage: grep [OPTION]... PATTERNS [FILE]...\nTry 'grep --help' for more information.\n",
            );
            return Ok(2);
        }
        patterns = operands.remove(0).split('\n').map(str::to_string).collect();
    }
    let extended = opts.contains('E') || argv[0] == "egrep";
    let fixed = opts.contains('F') || argv[0] == "fgrep";
    let icase = opts.contains('i');
    let word = opts.contains('w');
    let line_x = opts.contains('x');
    let mut regexes = Vec::new();
    for p in &patterns {
        let mut src = if fixed {
            regex::escape(p)
        } else {
            posix_to_rust(p, extended)
        };
        if word {
            src = format!("\\b(?:{src})\\b");
        }
        if line_x {
            src = format!("^(?:{src})$");
        }
        match regex::bytes::RegexBuilder::new(&src)
            .case_insensitive(icase)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(r) => regexes.push(r),
            Err(_) => {
                err(io, "grep: Unmatched [, [^, [:, [., or [=\n");
                return Ok(2);
            }
        }
    }
    let recursive = opts.contains('r') || opts.contains('R');
    let mut files = operands;
    if recursive {
        if files.is_empty() {
            files.push(".".into());
        }
        files = super::files::walk_files(run, &files);
    }
    let show_names = (files.len() > 1 || recursive) && !opts.contains('h') || opts.contains('H');
    let mut matched_any = false;
    let had_errors_before = io.err.len();
    for (name, data) in inputs(run, "grep", &files, io)? {
        let label = if name == "-" {
            "(standard input)".to_string()
        } else {
            name.clone()
        };
        let mut count = 0;
        for (ln, line) in lines_of(&data).into_iter().enumerate() {
            let hit = regexes.iter().any(|r| r.is_match(line));
            if hit == opts.contains('v') {
                continue;
            }
            count += 1;
            matched_any = true;
            if opts.contains('q') {
                return Ok(0);
            }
            if opts.contains('c') || opts.contains('l') {
                continue;
            }
            let prefix = format!(
                "{}{}",
                if show_names { format!("{label}:") } else { String::new() },
                if opts.contains('n') {
                    format!("{}:", ln + 1)
                } else {
                    String::new()
                }
            );
            if opts.contains('o') && !opts.contains('v') {
                for r in &regexes {
                    for m in r.find_iter(line) {
                        if !m.as_bytes().is_empty() {
                            io.out.extend_from_slice(prefix.as_bytes());
                            io.out.extend_from_slice(m.as_bytes());
                            io.out.push(b'\n');
                        }
                    }
                }
            } else {
                io.out.extend_from_slice(prefix.as_bytes());
                io.out.extend_from_slice(line);
                io.out.push(b'\n');
            }
            if io.out.len() > run.limits.max_output {
                break;
            }
        }
        if opts.contains('l') && count > 0 {
            out(io, &format!("{label}\n"));
        } else if opts.contains('c') {
            if show_names {
                out(io, &format!("{label}:{count}\n"));
            } else {
                out(io, &format!("{count}\n"));
            }
        }
    }
    if opts.contains('s') {
        io.err.truncate(had_errors_before);
    }
    if io.err.len() > had_errors_before && !matched_any {
        return Ok(2);
    }
    Ok(if matched_any { 0 } else { 1 })
}

/// One sed command.
#[derive(Debug, Clone)]
enum SedCmd {
    Subst {
        re: regex::bytes::Regex,
        rep: Vec<u8>,
        global: bool,
        nth: usize,
        print: bool,
    },
    Print,
    Delete,
    Quit,
    Translit(Vec<char>, Vec<char>),
    Append(String),
    Insert(String),
    LineNo,
}

#[derive(Debug, Clone)]
enum SedAddr {
    Line(usize),
    Last,
    Re(regex::bytes::Regex),
}

#[derive(Debug, Clone)]
struct SedItem {
    from: Option<SedAddr>,
    to: Option<SedAddr>,
    negate: bool,
    cmd: SedCmd,
}

fn sed_parse(script: &str, extended: bool) -> Result<Vec<SedItem>, String> {
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    let mut items = Vec::new();
    let read_delimited = |i: &mut usize, delim: char| -> Result<String, String> {
        let mut s = String::new();
        while *i < chars.len() && chars[*i] != delim {
            if chars[*i] == '\\' && *i + 1 < chars.len() {
                if chars[*i + 1] == delim {
                    s.push(delim);
                } else if chars[*i + 1] == 'n' {
                    s.push('\n');
                } else {
                    s.push('\\');
                    s.push(chars[*i + 1]);
                }
                *i += 2;
                continue;
            }
            s.push(chars[*i]);
            *i += 1;
        }
        if *i >= chars.len() {
            return Err("unterminated `s' command".into());
        }
        *i += 1;
        Ok(s)
    };
    let parse_addr = |i: &mut usize| -> Result<Option<SedAddr>, String> {
        if *i >= chars.len() {
            return Ok(None);
        }
        if chars[*i].is_ascii_digit() {
            let mut n = 0usize;
            while *i < chars.len() && chars[*i].is_ascii_digit() {
                n = n.saturating_mul(10).saturating_add(chars[*i] as usize - '0' as usize);
                *i += 1;
            }
            return Ok(Some(SedAddr::Line(n)));
        }
        if chars[*i] == '$' {
            *i += 1;
            return Ok(Some(SedAddr::Last));
        }
        if chars[*i] == '/' {
            *i += 1;
            let re = read_delimited(i, '/')?;
            let r = build_regex(&re, extended, false).ok_or("invalid regex")?;
            return Ok(Some(SedAddr::Re(r)));
        }
        Ok(None)
    };
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ';') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let from = parse_addr(&mut i)?;
        let mut to = None;
        if from.is_some() && i < chars.len() && chars[i] == ',' {
            i += 1;
            to = parse_addr(&mut i)?;
        }
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        let mut negate = false;
        if i < chars.len() && chars[i] == '!' {
            negate = true;
            i += 1;
        }
        let Some(&c) = chars.get(i) else {
            return Err("missing command".into());
        };
        i += 1;
        let cmd = match c {
            's' => {
                let delim = *chars.get(i).ok_or("unterminated `s' command")?;
                i += 1;
                let re = read_delimited(&mut i, delim)?;
                let rep = read_delimited(&mut i, delim)?;
                let mut global = false;
                let mut print = false;
                let mut icase = false;
                let mut nth = 1;
                while i < chars.len() && !matches!(chars[i], ';' | '\n' | '}') {
                    match chars[i] {
                        'g' => global = true,
                        'p' => print = true,
                        'i' | 'I' => icase = true,
                        d if d.is_ascii_digit() => nth = d as usize - '0' as usize,
                        ' ' => {}
                        _ => return Err("unknown option to `s'".to_string()),
                    }
                    i += 1;
                }
                let re = build_regex(&re, extended, icase).ok_or("invalid regex")?;
                SedCmd::Subst {
                    re,
                    rep: rep.into_bytes(),
                    global,
                    nth: nth.max(1),
                    print,
                }
            }
            'p' => SedCmd::Print,
            'd' => SedCmd::Delete,
            'q' => SedCmd::Quit,
            '=' => SedCmd::LineNo,
            'y' => {
                let delim = *chars.get(i).ok_or("unterminated `y' command")?;
                i += 1;
                let a = read_delimited(&mut i, delim)?;
                let b = read_delimited(&mut i, delim)?;
                SedCmd::Translit(a.chars().collect(), b.chars().collect())
            }
            'a' | 'i' => {
                let mut text = String::new();
                while i < chars.len() && chars[i] != '\n' && chars[i] != ';' {
                    text.push(chars[i]);
                    i += 1;
                }
                let text = text.trim_start().trim_start_matches('\\').to_string();
                if c == 'a' {
                    SedCmd::Append(text)
                } else {
                    SedCmd::Insert(text)
                }
            }
            other => return Err(format!("unknown command: `{other}'")),
        };
        items.push(SedItem { from, to, negate, cmd });
    }
    Ok(items)
}

fn sed_replacement(rep: &[u8], caps: &regex::bytes::Captures<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rep.len() {
        match rep[i] {
            b'&' => out.extend_from_slice(caps.get(0).map_or(&b""[..], |m| m.as_bytes())),
            b'\\' if i + 1 < rep.len() => {
                i += 1;
                match rep[i] {
                    d @ b'0'..=b'9' => {
                        out.extend_from_slice(caps.get((d - b'0') as usize).map_or(&b""[..], |m| m.as_bytes()))
                    }
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    other => out.push(other),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

pub(crate) fn sed(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut quiet = false;
    let mut extended = false;
    let mut in_place = false;
    let mut scripts = Vec::new();
    let mut files = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        match a.as_str() {
            "-n" | "--quiet" | "--silent" => quiet = true,
            "-E" | "-r" | "--regexp-extended" => extended = true,
            "-e" => {
                i += 1;
                scripts.extend(argv.get(i).cloned());
            }
            s if s.starts_with("-i") => in_place = true,
            s if s.starts_with('-') && s.len() > 1 => {
                quiet |= s.contains('n');
                extended |= s.contains('E') || s.contains('r');
                in_place |= s.contains('i');
            }
            _ => files.push(a.clone()),
        }
        i += 1;
    }
    if scripts.is_empty() {
        if files.is_empty() {
            err(
                io,
                "Usage: sed [OPTION]... {script-only-if-no-other-script} [input-file]...\n",
            );
            return Ok(1);
        }
        scripts.push(files.remove(0));
    }
    let items = match sed_parse(&scripts.join("\n"), extended) {
        Ok(items) => items,
        Err(e) => {
            err(
                io,
                &format!("sed: -e expression #1, char {}: {e}\n", scripts.join("\n").len()),
            );
            return Ok(1);
        }
    };
    let file_inputs = inputs(run, "sed", &files, io)?;
    let mut status = 0;
    if in_place {
        for (name, data) in file_inputs {
            let result = sed_run(&items, &data, quiet, run.limits.max_output);
            if let Err(e) = run.write_file(&name, &result, false, "sed") {
                err(
                    io,
                    &format!("sed: couldn't open temporary file {name}: {}\n", e.message()),
                );
                status = 4;
            }
        }
        return Ok(status);
    }
    let all: Vec<u8> = file_inputs.iter().flat_map(|(_, d)| d.iter().copied()).collect();
    let result = sed_run(&items, &all, quiet, run.limits.max_output);
    io.out.extend_from_slice(&result);
    Ok(status)
}

fn sed_run(items: &[SedItem], data: &[u8], quiet: bool, max: usize) -> Vec<u8> {
    let lines = lines_of(data);
    let total = lines.len();
    let mut out = Vec::new();
    let mut active = vec![false; items.len()];
    'lines: for (n, line) in lines.into_iter().enumerate() {
        let ln = n + 1;
        let mut space = line.to_vec();
        let mut append = Vec::new();
        let mut deleted = false;
        let matches_addr = |a: &SedAddr, space: &[u8]| match a {
            SedAddr::Line(x) => *x == ln,
            SedAddr::Last => ln == total,
            SedAddr::Re(r) => r.is_match(space),
        };
        for (k, item) in items.iter().enumerate() {
            let selected = match (&item.from, &item.to) {
                (None, _) => true,
                (Some(a), None) => matches_addr(a, &space),
                (Some(a), Some(b)) => {
                    if active[k] {
                        if matches_addr(b, &space) || matches!(b, SedAddr::Line(x) if *x <= ln) {
                            active[k] = false;
                        }
                        true
                    } else if matches_addr(a, &space) {
                        active[k] = !matches!(b, SedAddr::Line(x) if *x <= ln);
                        true
                    } else {
                        false
                    }
                }
            };
            if selected == item.negate {
                continue;
            }
            match &item.cmd {
                SedCmd::Subst {
                    re,
                    rep,
                    global,
                    nth,
                    print,
                    ..
                } => {
                    let mut result = Vec::new();
                    let mut last = 0;
                    let mut count = 0;
                    let mut changed = false;
                    for caps in re.captures_iter(&space) {
                        let Some(m) = caps.get(0) else { continue };
                        count += 1;
                        if count < *nth {
                            continue;
                        }
                        result.extend_from_slice(&space[last..m.start()]);
                        result.extend(sed_replacement(rep, &caps));
                        last = m.end();
                        changed = true;
                        if !global {
                            break;
                        }
                    }
                    if changed {
                        result.extend_from_slice(&space[last..]);
                        space = result;
                        if *print {
                            out.extend_from_slice(&space);
                            out.push(b'\n');
                        }
                    }
                }
                SedCmd::Print => {
                    out.extend_from_slice(&space);
                    out.push(b'\n');
                }
                SedCmd::Delete => {
                    deleted = true;
                    break;
                }
                SedCmd::Quit => {
                    if !quiet {
                        out.extend_from_slice(&space);
                        out.push(b'\n');
                    }
                    break 'lines;
                }
                SedCmd::LineNo => out.extend_from_slice(format!("{ln}\n").as_bytes()),
                SedCmd::Translit(a, b) => {
                    let s: String = String::from_utf8_lossy(&space)
                        .chars()
                        .map(|c| {
                            a.iter()
                                .position(|&x| x == c)
                                .and_then(|i| b.get(i).copied())
                                .unwrap_or(c)
                        })
                        .collect();
                    space = s.into_bytes();
                }
                SedCmd::Append(t) => append.extend_from_slice(format!("{t}\n").as_bytes()),
                SedCmd::Insert(t) => out.extend_from_slice(format!("{t}\n").as_bytes()),
            }
        }
        if !deleted && !quiet {
            out.extend_from_slice(&space);
            out.push(b'\n');
        }
        out.extend(append);
        if out.len() > max {
            break;
        }
    }
    out
}

pub(crate) fn awk(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut fs = None;
    let mut program = None;
    let mut files = Vec::new();
    let mut vars = BTreeMap::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        if a == "-F" {
            i += 1;
            fs = argv.get(i).cloned();
        } else if let Some(f) = a.strip_prefix("-F") {
            fs = Some(f.to_string());
        } else if a == "-v" {
            i += 1;
            if let Some((k, v)) = argv.get(i).and_then(|s| s.split_once('=')) {
                vars.insert(k.to_string(), super::awk::Value::Str(v.to_string()));
            }
        } else if program.is_none() {
            program = Some(a.clone());
        } else {
            files.push(a.clone());
        }
        i += 1;
    }
    let Some(program) = program else {
        err(io, "usage: awk [-F fs][-v var=value][prog | -f progfile][file ...]\n");
        return Ok(2);
    };
    let prog = match super::awk::parse(&program) {
        Ok(p) => p,
        Err(e) => {
            err(io, &format!("awk: line 1: syntax error at or near {e}\n"));
            return Ok(2);
        }
    };
    let data: Vec<u8> = inputs(run, "awk", &files, io)?
        .into_iter()
        .flat_map(|(_, d)| d.to_vec())
        .collect();
    let max = run.limits.max_output;
    let steps = run.limits.max_steps * 10;
    let status = super::awk::run(&prog, &data, fs.as_deref(), vars, &mut io.out, max, steps);
    Ok(status)
}

pub(crate) fn wc(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, files) = flags(&argv[1..]);
    let (mut l, mut w, mut c) = (f.contains('l'), f.contains('w'), f.contains('c') || f.contains('m'));
    if !l && !w && !c {
        (l, w, c) = (true, true, true);
    }
    let ins = inputs(run, "wc", &files, io)?;
    let mut rows = Vec::new();
    let mut total = (0usize, 0usize, 0usize);
    for (name, data) in &ins {
        let lines = data.iter().filter(|&&b| b == b'\n').count();
        let words = data
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .count();
        let bytes = if f.contains('m') {
            String::from_utf8_lossy(data).chars().count()
        } else {
            data.len()
        };
        total = (total.0 + lines, total.1 + words, total.2 + bytes);
        rows.push((name.clone(), lines, words, bytes));
    }
    if ins.len() > 1 {
        rows.push(("total".into(), total.0, total.1, total.2));
    }
    let ncols = [l, w, c].iter().filter(|x| **x).count();
    let stdin_only = files.is_empty();
    let width = if stdin_only && ncols > 1 {
        7
    } else if stdin_only || (ncols == 1 && ins.len() == 1) {
        1
    } else {
        total.2.max(total.0).max(total.1).to_string().len()
    };
    for (name, lines, words, bytes) in rows {
        let mut cols = Vec::new();
        if l {
            cols.push(format!("{lines:>width$}"));
        }
        if w {
            cols.push(format!("{words:>width$}"));
        }
        if c {
            cols.push(format!("{bytes:>width$}"));
        }
        let mut line = cols.join(" ");
        if name != "-" {
            line.push(' ');
            line.push_str(&name);
        }
        out(io, &format!("{line}\n"));
    }
    Ok(if io.err.is_empty() { 0 } else { 1 })
}

pub(crate) fn sort(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut numeric = false;
    let mut reverse = false;
    let mut unique = false;
    let mut key: Option<usize> = None;
    let mut sep: Option<char> = None;
    let mut files = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        if a == "-k" {
            i += 1;
            key = argv.get(i).and_then(|k| {
                k.split([',', '.'])
                    .next()?
                    .trim_end_matches(char::is_alphabetic)
                    .parse()
                    .ok()
            });
        } else if let Some(k) = a.strip_prefix("-k") {
            key = k
                .split([',', '.'])
                .next()
                .and_then(|k| k.trim_end_matches(char::is_alphabetic).parse().ok());
            numeric |= k.contains('n');
        } else if a == "-t" {
            i += 1;
            sep = argv.get(i).and_then(|s| s.chars().next());
        } else if let Some(t) = a.strip_prefix("-t") {
            sep = t.chars().next();
        } else if a.starts_with('-') && a.len() > 1 {
            numeric |= a.contains('n') || a.contains('h') || a.contains('g');
            reverse |= a.contains('r');
            unique |= a.contains('u');
        } else {
            files.push(a.clone());
        }
        i += 1;
    }
    let data: Vec<u8> = inputs(run, "sort", &files, io)?
        .into_iter()
        .flat_map(|(_, d)| d.to_vec())
        .collect();
    let text = String::from_utf8_lossy(&data);
    let mut lines: Vec<&str> = text.lines().collect();
    let field = |l: &str| -> String {
        match key {
            Some(k) if k > 0 => {
                let parts: Vec<&str> = match sep {
                    Some(s) => l.split(s).collect(),
                    None => l.split_whitespace().collect(),
                };
                parts.get(k - 1).map(|s| s.to_string()).unwrap_or_default()
            }
            _ => l.to_string(),
        }
    };
    let num = |s: &str| -> f64 {
        let t = s.trim_start();
        let end = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(t.len());
        t[..end].parse().unwrap_or(0.0)
    };
    // GNU sort in C.UTF-8 compares bytes; the last resort is the whole line.
    lines.sort_by(|a, b| {
        let (fa, fb) = (field(a), field(b));
        let primary = if numeric {
            num(&fa).partial_cmp(&num(&fb)).unwrap_or(std::cmp::Ordering::Equal)
        } else {
            fa.cmp(&fb)
        };
        primary.then_with(|| {
            if unique && numeric {
                std::cmp::Ordering::Equal
            } else {
                a.cmp(b)
            }
        })
    });
    if reverse {
        lines.reverse();
    }
    if unique {
        lines.dedup_by(|a, b| {
            if numeric {
                num(&field(a)) == num(&field(b))
            } else {
                field(a) == field(b)
            }
        });
    }
    for l in lines {
        out(io, &format!("{l}\n"));
    }
    Ok(0)
}

pub(crate) fn uniq(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, files) = flags(&argv[1..]);
    let data = inputs(run, "uniq", &files[..files.len().min(1)], io)?
        .into_iter()
        .next()
        .map(|(_, d)| d)
        .unwrap_or_else(|| Arc::from(&b""[..]));
    let icase = f.contains('i');
    let mut groups: Vec<(&[u8], usize)> = Vec::new();
    for line in lines_of(&data) {
        match groups.last_mut() {
            Some((prev, n)) if *prev == line || (icase && prev.eq_ignore_ascii_case(line)) => *n += 1,
            _ => groups.push((line, 1)),
        }
    }
    for (line, n) in groups {
        if (f.contains('d') && n < 2) || (f.contains('u') && n > 1) {
            continue;
        }
        if f.contains('c') {
            out(io, &format!("{n:>7} "));
        }
        io.out.extend_from_slice(line);
        io.out.push(b'\n');
    }
    Ok(0)
}

fn ranges(spec: &str) -> Option<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                if a.is_empty() { 1 } else { a.parse().ok()? },
                if b.is_empty() { usize::MAX } else { b.parse().ok()? },
            ),
            None => {
                let n = part.parse().ok()?;
                (n, n)
            }
        };
        if a == 0 {
            return None;
        }
        out.push((a, b));
    }
    Some(out)
}

pub(crate) fn cut(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut delim = '\t';
    let mut fields = None;
    let mut chars = None;
    let mut only_delimited = false;
    let mut files = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        let mut take = |flag: &str| -> Option<String> {
            if a == flag {
                i += 1;
                argv.get(i).cloned()
            } else {
                a.strip_prefix(flag).map(str::to_string)
            }
        };
        if let Some(d) = take("-d") {
            delim = d.chars().next().unwrap_or('\t');
        } else if let Some(f) = take("-f") {
            fields = Some(f);
        } else if let Some(c) = take("-c").or_else(|| take("-b")) {
            chars = Some(c);
        } else if a == "-s" {
            only_delimited = true;
        } else {
            files.push(a.clone());
        }
        i += 1;
    }
    let spec = match (&fields, &chars) {
        (Some(s), _) | (None, Some(s)) => s.clone(),
        (None, None) => {
            err(
                io,
                "cut: you must specify a list of bytes, characters, or fields\nTry 'cut --help' for more information.\n",
            );
            return Ok(1);
        }
    };
    let Some(rs) = ranges(&spec) else {
        err(
            io,
            "cut: fields are numbered from 1\nTry 'cut --help' for more information.\n",
        );
        return Ok(1);
    };
    let want = |n: usize| rs.iter().any(|(a, b)| n >= *a && n <= *b);
    for (_, data) in inputs(run, "cut", &files, io)? {
        let text = String::from_utf8_lossy(&data).into_owned();
        for line in text.lines() {
            if fields.is_some() {
                if !line.contains(delim) {
                    if !only_delimited {
                        out(io, &format!("{line}\n"));
                    }
                    continue;
                }
                let picked: Vec<&str> = line
                    .split(delim)
                    .enumerate()
                    .filter(|(n, _)| want(n + 1))
                    .map(|(_, s)| s)
                    .collect();
                out(io, &format!("{}\n", picked.join(&delim.to_string())));
            } else {
                let picked: String = line
                    .chars()
                    .enumerate()
                    .filter(|(n, _)| want(n + 1))
                    .map(|(_, c)| c)
                    .collect();
                out(io, &format!("{picked}\n"));
            }
        }
    }
    Ok(0)
}

fn tr_set(spec: &str) -> Vec<char> {
    let mut out = Vec::new();
    let chars: Vec<char> = ansi_c(spec).chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' && chars.get(i + 1) == Some(&':') {
            let rest: String = chars[i..].iter().collect();
            if let Some(end) = rest.find(":]") {
                let class = &rest[2..end];
                let set: Vec<char> = match class {
                    "upper" => ('A'..='Z').collect(),
                    "lower" => ('a'..='z').collect(),
                    "digit" => ('0'..='9').collect(),
                    "alpha" => ('A'..='Z').chain('a'..='z').collect(),
                    "alnum" => ('0'..='9').chain('A'..='Z').chain('a'..='z').collect(),
                    "space" => vec![' ', '\t', '\n', '\r', '\x0b', '\x0c'],
                    "blank" => vec![' ', '\t'],
                    "punct" => (33u8..127)
                        .map(char::from)
                        .filter(|c| c.is_ascii_punctuation())
                        .collect(),
                    "xdigit" => ('0'..='9').chain('A'..='F').chain('a'..='f').collect(),
                    _ => Vec::new(),
                };
                out.extend(set);
                i += end + 2;
                continue;
            }
        }
        if i + 2 < chars.len() && chars[i + 1] == '-' {
            let (a, b) = (chars[i] as u32, chars[i + 2] as u32);
            if a <= b {
                out.extend((a..=b).take(65536).filter_map(char::from_u32));
            }
            i += 3;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

pub(crate) fn tr(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, sets) = flags(&argv[1..]);
    let delete = f.contains('d');
    let squeeze = f.contains('s');
    let complement = f.contains('c') || f.contains('C');
    if sets.is_empty() {
        err(io, "tr: missing operand\nTry 'tr --help' for more information.\n");
        return Ok(1);
    }
    let s1 = tr_set(&sets[0]);
    let s2 = sets.get(1).map(|s| tr_set(s)).unwrap_or_default();
    if !delete && !squeeze && sets.len() < 2 {
        err(
            io,
            &format!(
                "tr: missing operand after '{}'\nTry 'tr --help' for more information.\n",
                sets[0]
            ),
        );
        return Ok(1);
    }
    let data = run.read_all(io)?;
    let text = String::from_utf8_lossy(&data);
    let in1 = |c: char| s1.contains(&c) != complement;
    let mut result = String::new();
    let mut last: Option<char> = None;
    for c in text.chars() {
        if delete {
            if in1(c) {
                continue;
            }
            if squeeze && s2.contains(&c) && last == Some(c) {
                continue;
            }
            result.push(c);
            last = Some(c);
            continue;
        }
        let mapped = if !s2.is_empty() && in1(c) {
            if complement {
                *s2.last().unwrap_or(&c)
            } else {
                let idx = s1.iter().position(|&x| x == c).unwrap_or(0);
                *s2.get(idx).or(s2.last()).unwrap_or(&c)
            }
        } else {
            c
        };
        let squeeze_set = if s2.is_empty() { &s1 } else { &s2 };
        if squeeze && last == Some(mapped) && squeeze_set.contains(&mapped) {
            continue;
        }
        result.push(mapped);
        last = Some(mapped);
    }
    out(io, &result);
    Ok(0)
}

pub(crate) fn base64(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, files) = flags(&argv[1..]);
    let decode = f.contains('d') || f.contains("[decode]");
    let ignore = f.contains('i');
    let wrap = if f.contains("w0") || argv.iter().any(|a| a == "0") && f.contains('w') {
        0
    } else {
        76
    };
    let files: Vec<String> = files
        .into_iter()
        .filter(|a| a != "0" && a.parse::<usize>().is_err())
        .collect();
    let Some((_, data)) = inputs(run, "base64", &files[..files.len().min(1)], io)?
        .into_iter()
        .next()
    else {
        return Ok(1);
    };
    if decode {
        match base64_decode(&data, ignore) {
            Ok(bytes) => io.out.extend(bytes),
            Err(partial) => {
                io.out.extend(partial);
                err(io, "base64: invalid input\n");
                return Ok(1);
            }
        }
        return Ok(0);
    }
    let enc = base64_encode(&data);
    if wrap == 0 {
        out(io, &enc);
        if !enc.is_empty() {
            out(io, "\n");
        }
    } else {
        for chunk in enc.as_bytes().chunks(wrap) {
            io.out.extend_from_slice(chunk);
            io.out.push(b'\n');
        }
    }
    Ok(0)
}

pub(crate) fn digest(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (_, files) = flags(&argv[1..]);
    let tool = argv[0].rsplit('/').next().unwrap_or("md5sum").to_string();
    let mut status = 0;
    let named = files.clone();
    let ins = inputs(run, &tool, &files, io)?;
    if ins.len() < named.len().max(1) {
        status = 1;
    }
    for (name, data) in ins {
        let hex: String = match tool.as_str() {
            "md5sum" => md5::Md5::digest(&data[..]).iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            }),
            "sha1sum" => sha1::Sha1::digest(&data[..]).iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            }),
            "sha512sum" => sha2::Sha512::digest(&data[..]).iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            }),
            _ => sha2::Sha256::digest(&data[..]).iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            }),
        };
        out(io, &format!("{hex}  {name}\n"));
    }
    Ok(status)
}

pub(crate) fn seq(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (_, ops) = flags(&argv[1..]);
    let nums: Vec<i64> = ops.iter().filter_map(|a| a.parse().ok()).collect();
    let (first, step, last) = match nums.as_slice() {
        [l] => (1, 1, *l),
        [f, l] => (*f, 1, *l),
        [f, s, l] => (*f, *s, *l),
        _ => {
            err(io, "seq: missing operand\nTry 'seq --help' for more information.\n");
            return Ok(1);
        }
    };
    if step == 0 {
        return Ok(1);
    }
    let mut i = first;
    let mut n = 0u64;
    while (step > 0 && i <= last) || (step < 0 && i >= last) {
        out(io, &format!("{i}\n"));
        i = i.saturating_add(step);
        n += 1;
        if n > run.limits.max_steps * 5 || io.out.len() > run.limits.max_output {
            break;
        }
    }
    Ok(0)
}

pub(crate) fn yes(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let word = if argv.len() > 1 {
        argv[1..].join(" ")
    } else {
        "y".into()
    };
    // Endless on a real host; here one output buffer's worth.
    while io.out.len() < run.limits.max_output.min(64 << 10) {
        out(io, &format!("{word}\n"));
    }
    Ok(0)
}

pub(crate) fn basename(_: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let Some(p) = argv.get(1) else {
        err(
            io,
            "basename: missing operand\nTry 'basename --help' for more information.\n",
        );
        return Ok(1);
    };
    let trimmed = p.trim_end_matches('/');
    let mut base = if trimmed.is_empty() && !p.is_empty() {
        "/".to_string()
    } else {
        trimmed.rsplit('/').next().unwrap_or("").to_string()
    };
    if let Some(suffix) = argv.get(2)
        && base != *suffix
    {
        base = base.strip_suffix(suffix.as_str()).unwrap_or(&base).to_string();
    }
    out(io, &format!("{base}\n"));
    Ok(0)
}

pub(crate) fn dirname(_: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let Some(p) = argv.get(1) else {
        err(
            io,
            "dirname: missing operand\nTry 'dirname --help' for more information.\n",
        );
        return Ok(1);
    };
    let trimmed = p.trim_end_matches('/');
    let d = match trimmed.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => trimmed[..i].trim_end_matches('/').to_string(),
        None if p.starts_with('/') => "/".to_string(),
        None => ".".to_string(),
    };
    out(io, &format!("{}\n", if d.is_empty() { "/" } else { &d }));
    Ok(0)
}

pub(crate) fn rev(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    for (_, data) in inputs(run, "rev", &argv[1..], io)? {
        for line in String::from_utf8_lossy(&data).lines() {
            out(io, &format!("{}\n", line.chars().rev().collect::<String>()));
        }
    }
    Ok(0)
}

pub(crate) fn xargs(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut i = 1;
    let mut per = usize::MAX;
    let mut replace: Option<String> = None;
    while i < argv.len() && argv[i].starts_with('-') {
        match argv[i].as_str() {
            "-n" => {
                i += 1;
                per = argv.get(i).and_then(|v| v.parse().ok()).unwrap_or(usize::MAX).max(1);
            }
            "-I" => {
                i += 1;
                replace = argv.get(i).cloned();
            }
            _ => {}
        }
        i += 1;
    }
    let cmd: Vec<String> = if i < argv.len() {
        argv[i..].to_vec()
    } else {
        vec!["echo".into()]
    };
    let data = run.read_all(io)?;
    let text = String::from_utf8_lossy(&data).into_owned();
    let items: Vec<String> = if replace.is_some() {
        text.lines().map(str::to_string).collect()
    } else {
        text.split_whitespace().map(str::to_string).collect()
    };
    if items.is_empty() {
        return if cmd[0] == "echo" { run.invoke(&cmd, io) } else { Ok(0) };
    }
    let mut status = 0;
    if let Some(r) = replace {
        for item in items {
            let argv: Vec<String> = cmd.iter().map(|a| a.replace(&r, &item)).collect();
            if run.invoke(&argv, io)? != 0 {
                status = 123;
            }
        }
        return Ok(status);
    }
    for chunk in items.chunks(per.min(4096)) {
        let mut argv = cmd.clone();
        argv.extend(chunk.iter().cloned());
        if run.invoke(&argv, io)? != 0 {
            status = 123;
        }
    }
    Ok(status)
}

pub(crate) fn expr(_: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let a = &argv[1..];
    let result = match a {
        [x, op, y] => {
            let (p, q) = (x.parse::<i64>(), y.parse::<i64>());
            match (op.as_str(), p, q) {
                ("+", Ok(p), Ok(q)) => p.wrapping_add(q).to_string(),
                ("-", Ok(p), Ok(q)) => p.wrapping_sub(q).to_string(),
                ("*", Ok(p), Ok(q)) => p.wrapping_mul(q).to_string(),
                ("/", Ok(_), Ok(0)) | ("%", Ok(_), Ok(0)) => {
                    err(io, "expr: division by zero\n");
                    return Ok(2);
                }
                ("/", Ok(p), Ok(q)) => (p / q).to_string(),
                ("%", Ok(p), Ok(q)) => (p % q).to_string(),
                ("=", _, _) => i32::from(x == y).to_string(),
                ("!=", _, _) => i32::from(x != y).to_string(),
                _ => {
                    err(io, "expr: non-integer argument\n");
                    return Ok(2);
                }
            }
        }
        [x] => x.clone(),
        _ => {
            err(io, "expr: syntax error\n");
            return Ok(2);
        }
    };
    let status = if result == "0" || result.is_empty() { 1 } else { 0 };
    out(io, &format!("{result}\n"));
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in [&b""[..], b"a", b"ab", b"abc", b"hello world\n"] {
            assert_eq!(base64_decode(base64_encode(s).as_bytes(), false).unwrap(), s);
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn bre_translation() {
        assert_eq!(posix_to_rust("a\\(b\\)c", false), "a(b)c");
        assert_eq!(posix_to_rust("a(b)", false), "a\\(b\\)");
        assert_eq!(posix_to_rust("a(b)", true), "a(b)");
    }

    #[test]
    fn printf_basics() {
        let p = |f: &str, a: &[&str]| {
            let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            String::from_utf8(printf_format(f, &args, 1 << 20).0).unwrap()
        };
        assert_eq!(p("%s-%d\\n", &["a", "5", "b", "6"]), "a-5\nb-6\n");
        assert_eq!(p("%05.1f|%-4s|%x", &["3.14159", "ab", "255"]), "003.1|ab  |ff");
        assert_eq!(p("%3d|%-3d|%03d", &["7", "7", "7"]), "  7|7  |007");
    }
}
