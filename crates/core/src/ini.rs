//! The INI dialect of DECNET fleet files.
//!
//! It follows Python's `configparser` (which the original DECNET used), so files
//! written for the original load unchanged: `key = value` or `key: value`, `#` and
//! `;` comment lines, indented continuation lines, case-insensitive keys, `%%` for a
//! literal `%`. Two additions that the original's own README examples rely on:
//! inline comments (` # …` or ` ; …` after whitespace) and `-` in keys read as `_`
//! (`nmap-os` = `nmap_os`). Duplicate sections and keys are errors, as in the
//! original's strict CLI mode. Parsing is pure: no file system, no allocation
//! beyond the input's size.

use crate::error::ConfigError;

/// Upper bound on an INI file's size; fleet files are a few KiB.
pub const MAX_INI_BYTES: usize = 1024 * 1024;

/// A parsed INI file: sections in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniDocument {
    /// How the file is named in error messages.
    pub file: String,
    pub sections: Vec<IniSection>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniSection {
    /// Section name as written (case kept), without brackets.
    pub name: String,
    pub line: usize,
    pub entries: Vec<IniEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniEntry {
    /// Normalised key: lower case, `-` read as `_`.
    pub key: String,
    pub value: String,
    pub line: usize,
}

impl IniDocument {
    pub fn section(&self, name: &str) -> Option<&IniSection> {
        self.sections.iter().find(|s| s.name == name)
    }
}

impl IniSection {
    pub fn get(&self, key: &str) -> Option<&IniEntry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// Normalises a key the way the loader compares keys.
pub fn normalise_key(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

/// Parses `source`; `file` names it in errors.
pub fn parse(source: &str, file: &str) -> Result<IniDocument, ConfigError> {
    let err = |line: usize, msg: &str| ConfigError::new(file, msg).line(line);
    if source.len() > MAX_INI_BYTES {
        return Err(ConfigError::new(
            file,
            format!("file is {} bytes; the limit is {MAX_INI_BYTES}", source.len()),
        ));
    }
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);

    let mut sections: Vec<IniSection> = Vec::new();
    // Whether the previous line was a key (or its continuation), so that an
    // indented line continues that key's value.
    let mut in_value = false;

    for (index, raw) in source.split('\n').enumerate() {
        let number = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim();
        if trimmed.is_empty() {
            in_value = false;
            continue;
        }
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if indented && in_value {
            let text = unescape(strip_inline_comment(trimmed));
            let entry = sections
                .last_mut()
                .and_then(|s| s.entries.last_mut())
                .expect("in_value implies a current entry");
            if entry.value.is_empty() {
                entry.value = text;
            } else {
                entry.value.push('\n');
                entry.value.push_str(&text);
            }
            continue;
        }
        let content = strip_inline_comment(trimmed);
        if let Some(rest) = content.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(err(number, "section header is missing its closing `]`"));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(err(number, "empty section name `[]`"));
            }
            if let Some(first) = sections.iter().find(|s| s.name == name) {
                return Err(err(
                    number,
                    &format!("duplicate section (first defined on line {})", first.line),
                )
                .section(name));
            }
            sections.push(IniSection {
                name: name.to_string(),
                line: number,
                entries: Vec::new(),
            });
            in_value = false;
            continue;
        }
        let Some(split) = content.find(['=', ':']) else {
            return Err(err(
                number,
                &format!("expected `key = value`, found `{}`", truncate(content, 60)),
            ));
        };
        let (raw_key, value) = (&content[..split], &content[split + 1..]);
        let key = normalise_key(raw_key);
        let Some(section) = sections.last_mut() else {
            return Err(err(number, "key outside any section; start the file with a `[section]`").key(key));
        };
        if key.is_empty() {
            return Err(err(number, "empty key before `=`").section(section.name.clone()));
        }
        if let Some(first) = section.get(&key) {
            return Err(
                err(number, &format!("duplicate key (first set on line {})", first.line))
                    .section(section.name.clone())
                    .key(key),
            );
        }
        section.entries.push(IniEntry {
            key,
            value: unescape(value.trim()),
            line: number,
        });
        in_value = true;
    }
    Ok(IniDocument {
        file: file.to_string(),
        sections,
    })
}

/// Cuts a trailing ` # comment` or ` ; comment` (the marker must follow whitespace,
/// so `#` inside a value such as a URL fragment or a password stays).
fn strip_inline_comment(text: &str) -> &str {
    let bytes = text.as_bytes();
    for i in 1..bytes.len() {
        if (bytes[i] == b'#' || bytes[i] == b';') && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return text[..i].trim_end();
        }
    }
    text
}

/// configparser's interpolation escape: `%%` is a literal `%`.
fn unescape(text: &str) -> String {
    text.replace("%%", "%")
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(s: &str) -> IniDocument {
        parse(s, "t.ini").unwrap()
    }

    #[test]
    fn sections_keys_and_both_delimiters() {
        let doc = parse_ok("[general]\nnet = 10.0.0.0/24\ngw: 10.0.0.1\n\n[Decky-01]\nNMAP-OS=windows\n");
        assert_eq!(doc.sections.len(), 2);
        assert_eq!(doc.sections[0].get("gw").unwrap().value, "10.0.0.1");
        let d = doc.section("Decky-01").unwrap();
        assert_eq!(d.get("nmap_os").unwrap().value, "windows");
        assert_eq!(d.get("nmap_os").unwrap().line, 6);
    }

    #[test]
    fn comments_full_line_and_inline() {
        let doc = parse_ok(
            "# top\n; also\n[general]\nnet = 192.168.1.0/24 # subnet CIDR\ninterface = eth0 ; NIC\nurl = http://x/#frag\n",
        );
        let g = &doc.sections[0];
        assert_eq!(g.get("net").unwrap().value, "192.168.1.0/24");
        assert_eq!(g.get("interface").unwrap().value, "eth0");
        assert_eq!(g.get("url").unwrap().value, "http://x/#frag");
    }

    #[test]
    fn continuation_lines_join_with_newlines() {
        let doc = parse_ok("[d.dns]\nextra_records = a A 10.0.0.1\n  b A 10.0.0.2\n\tc TXT hi\nnext = 1\n");
        let s = &doc.sections[0];
        assert_eq!(
            s.get("extra_records").unwrap().value,
            "a A 10.0.0.1\nb A 10.0.0.2\nc TXT hi"
        );
        assert_eq!(s.get("next").unwrap().value, "1");
    }

    #[test]
    fn percent_escape_and_crlf_and_bom() {
        let doc = parse_ok("\u{feff}[s]\r\npw = 100%%\r\n");
        assert_eq!(doc.sections[0].get("pw").unwrap().value, "100%");
    }

    #[test]
    fn errors_name_line_section_and_key() {
        let e = parse("[a]\nx = 1\nx = 2\n", "f.ini").unwrap_err();
        assert_eq!(e.to_string(), "f.ini:3: [a] x: duplicate key (first set on line 2)");
        let e = parse("[a]\n[a]\n", "f.ini").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.ini:2: [a] duplicate section (first defined on line 1)"
        );
        let e = parse("x = 1\n", "f.ini").unwrap_err();
        assert!(e.to_string().starts_with("f.ini:1: x: key outside any section"));
        let e = parse("[a\n", "f.ini").unwrap_err();
        assert_eq!(e.to_string(), "f.ini:1: section header is missing its closing `]`");
        let e = parse("[a]\njunk\n", "f.ini").unwrap_err();
        assert_eq!(e.to_string(), "f.ini:2: expected `key = value`, found `junk`");
    }

    #[test]
    fn oversized_input_is_refused() {
        let big = "#".repeat(MAX_INI_BYTES + 1);
        assert!(parse(&big, "big.ini").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s, "p.ini");
        }

        #[test]
        fn never_panics_on_ini_shaped_input(
            lines in proptest::collection::vec("(\\[[a-z.\\-]{0,6}\\]?|[ \t]?[a-z_\\-]{0,5}[ ]?[=:]?[ ]?[a-z0-9 #;%]{0,8}|[#;].*| *)", 0..30)
        ) {
            let _ = parse(&lines.join("\n"), "p.ini");
        }
    }
}
