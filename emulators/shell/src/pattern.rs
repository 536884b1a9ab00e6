//! Shell pattern matching (`*`, `?`, `[...]`, backslash escapes) for `case`,
//! `[[ == ]]`, `${x#pat}` and pathname expansion against the fake filesystem.

use brush_parser::word::SubstringMatchKind;

use crate::interp::Run;

/// Escapes glob characters so `text` matches only itself.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The literal text of an unquoted word piece (its backslashes already gone).
pub(crate) fn unescape_literal(text: &str) -> String {
    text.to_string()
}

/// Whether `pattern` matches all of `text`.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    match_at(&p, &t)
}

fn match_at(p: &[char], t: &[char]) -> bool {
    // Iterative matcher with one backtrack point per `*`: linear-ish, no recursion blow-up.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = class(p, pi, t[ti])
                        && ok
                    {
                        pi = next;
                        ti += 1;
                        continue;
                    }
                    if class(p, pi, t[ti]).is_none() && t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == t[ti] {
                        pi += 2;
                        ti += 1;
                        continue;
                    }
                }
                c => {
                    if c == t[ti] {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches a bracket expression at `p[start]`; `None` if it is not one.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && (p[i] == '!' || p[i] == '^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (p[i] != ']' || first) {
        first = false;
        if p[i] == '[' && i + 1 < p.len() && p[i + 1] == ':' {
            let rest: String = p[i + 2..].iter().collect();
            if let Some(end) = rest.find(":]") {
                let name = &rest[..end];
                matched |= match name {
                    "alpha" => c.is_alphabetic(),
                    "digit" => c.is_ascii_digit(),
                    "alnum" => c.is_alphanumeric(),
                    "upper" => c.is_uppercase(),
                    "lower" => c.is_lowercase(),
                    "space" => c.is_whitespace(),
                    "xdigit" => c.is_ascii_hexdigit(),
                    "punct" => c.is_ascii_punctuation(),
                    _ => false,
                };
                i += 2 + end + 2;
                continue;
            }
        }
        let lo = if p[i] == '\\' && i + 1 < p.len() {
            i += 1;
            p[i]
        } else {
            p[i]
        };
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if lo <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
    if i >= p.len() {
        return None;
    }
    Some((matched != negate, i + 1))
}

/// `${v%pat}` / `${v%%pat}`.
pub(crate) fn strip_suffix(v: &str, pat: &str, longest: bool) -> String {
    let idx: Vec<usize> = v.char_indices().map(|(i, _)| i).chain([v.len()]).collect();
    let order: Vec<usize> = if longest {
        idx.clone()
    } else {
        idx.iter().rev().copied().collect()
    };
    for i in order {
        if matches(pat, &v[i..]) {
            return v[..i].to_string();
        }
    }
    v.to_string()
}

/// `${v#pat}` / `${v##pat}`.
pub(crate) fn strip_prefix(v: &str, pat: &str, longest: bool) -> String {
    let idx: Vec<usize> = v.char_indices().map(|(i, _)| i).chain([v.len()]).collect();
    let order: Vec<usize> = if longest {
        idx.iter().rev().copied().collect()
    } else {
        idx.clone()
    };
    for i in order {
        if matches(pat, &v[..i]) {
            return v[i..].to_string();
        }
    }
    v.to_string()
}

/// `${v/pat/rep}` and friends.
pub(crate) fn replace(v: &str, pat: &str, rep: &str, kind: &SubstringMatchKind) -> String {
    if pat.is_empty() {
        return v.to_string();
    }
    let idx: Vec<usize> = v.char_indices().map(|(i, _)| i).chain([v.len()]).collect();
    match kind {
        SubstringMatchKind::Prefix => {
            for &j in idx.iter().rev() {
                if matches(pat, &v[..j]) {
                    return format!("{rep}{}", &v[j..]);
                }
            }
            v.to_string()
        }
        SubstringMatchKind::Suffix => {
            for &i in &idx {
                if matches(pat, &v[i..]) {
                    return format!("{}{rep}", &v[..i]);
                }
            }
            v.to_string()
        }
        SubstringMatchKind::FirstOccurrence | SubstringMatchKind::Anywhere => {
            let all = matches!(kind, SubstringMatchKind::Anywhere);
            let mut out = String::new();
            let mut i = 0;
            let mut done = false;
            while i < v.len() {
                let mut hit = None;
                if !done {
                    for &j in idx.iter().rev() {
                        if j > i && matches(pat, &v[i..j]) {
                            hit = Some(j);
                            break;
                        }
                    }
                }
                match hit {
                    Some(j) => {
                        out.push_str(rep);
                        i = j;
                        done = !all;
                    }
                    None => {
                        let c = v[i..].chars().next().unwrap_or(' ');
                        out.push(c);
                        i += c.len_utf8();
                    }
                }
            }
            out
        }
    }
}

/// Pathname expansion against the fake filesystem; sorted matches, or empty.
pub(crate) fn glob(run: &mut Run<'_>, pattern: &str) -> Vec<String> {
    let absolute = pattern.starts_with('/');
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let mut current: Vec<String> = vec![String::new()];
    for (n, part) in parts.iter().enumerate() {
        let is_glob = part.contains(['*', '?', '[']);
        let mut next = Vec::new();
        for prefix in &current {
            if !is_glob {
                let literal = part.replace('\\', "");
                let candidate = join(prefix, &literal);
                let full = crate::fs::absolute(&run.st.cwd, &display(&candidate, absolute));
                if n + 1 == parts.len() && run.fs.lstat(&full).is_err() {
                    continue;
                }
                next.push(candidate);
                continue;
            }
            let dir = crate::fs::absolute(&run.st.cwd, &display(prefix, absolute));
            let Ok(entries) = run.fs.list(&dir, run.cred()) else {
                continue;
            };
            for (name, _) in entries {
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if matches(part, &name) {
                    next.push(join(prefix, &name));
                }
            }
            if next.len() > 4096 {
                break;
            }
        }
        current = next;
        if current.is_empty() {
            return Vec::new();
        }
    }
    let mut out: Vec<String> = current.into_iter().map(|c| display(&c, absolute)).collect();
    out.sort();
    out
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn display(path: &str, absolute: bool) -> String {
    if absolute {
        format!("/{path}")
    } else if path.is_empty() {
        ".".to_string()
    } else {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("*.sh", "x.sh"));
        assert!(!matches("*.sh", "x.shx"));
        assert!(matches("a?c", "abc"));
        assert!(matches("[a-c]x", "bx"));
        assert!(!matches("[!a-c]x", "bx"));
        assert!(matches("\\*", "*"));
        assert!(!matches("\\*", "a"));
        assert!(matches("*", ""));
        assert_eq!(strip_suffix("file.tar.gz", ".*", false), "file.tar");
        assert_eq!(strip_suffix("file.tar.gz", ".*", true), "file");
        assert_eq!(strip_prefix("/a/b/c", "*/", true), "c");
        assert_eq!(replace("aXbXc", "X", "-", &SubstringMatchKind::Anywhere), "a-b-c");
    }
}
