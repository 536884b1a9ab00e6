//! Hostname styles: patterns such as `SRV-{WORD}-{nn}` or `DESKTOP-{ALNUM:7}`,
//! filled from a decky's seed (and MAC, for printers that name themselves after it).

use crate::seed::SeedRng;

/// One piece of a parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Literal(String),
    /// `{word}` / `{WORD}` / `{Word}`: a word from the style's list.
    Word(Case),
    /// `{nn}`: a two-digit number 10–99.
    TwoDigits,
    /// `{n}`: one digit 1–9.
    Digit,
    /// `{ALNUM:k}` / `{alnum:k}`: k letters or digits.
    Alnum(Case, usize),
    /// `{HEX:k}` / `{hex:k}`: k hex digits.
    Hex(Case, usize),
    /// `{MAC:k}` / `{mac:k}`: the last k hex digits of the decky's MAC.
    Mac(Case, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    Lower,
    Upper,
    Title,
}

impl Case {
    fn apply(self, s: &str) -> String {
        match self {
            Case::Lower => s.to_ascii_lowercase(),
            Case::Upper => s.to_ascii_uppercase(),
            Case::Title => {
                let mut out = s.to_ascii_lowercase();
                if let Some(first) = out.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                out
            }
        }
    }

    fn of(name: &str) -> Self {
        if name.chars().all(|c| c.is_ascii_uppercase()) {
            Case::Upper
        } else if name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
            Case::Title
        } else {
            Case::Lower
        }
    }
}

/// A validated hostname style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostnameStyle {
    pub pattern: String,
    pub(crate) tokens: Vec<Token>,
    pub words: Vec<String>,
}

impl HostnameStyle {
    /// Parses `pattern`; `words` feeds `{word}` placeholders.
    pub fn parse(pattern: &str, words: Vec<String>) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut rest = pattern;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or("unclosed `{` in pattern")?;
                    tokens.push(parse_placeholder(&rest[1..end])?);
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    tokens.push(literal(&rest[..i])?);
                    rest = &rest[i..];
                }
                None => {
                    tokens.push(literal(rest)?);
                    rest = "";
                }
            }
        }
        if tokens.iter().any(|t| matches!(t, Token::Word(_))) && words.is_empty() {
            return Err("pattern uses {word} but the style has no words".into());
        }
        if words
            .iter()
            .any(|w| w.is_empty() || !w.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err("words must be non-empty and alphanumeric".into());
        }
        Ok(Self {
            pattern: pattern.to_string(),
            tokens,
            words,
        })
    }

    /// A hostname in this style. `mac` feeds `{MAC:k}`.
    pub fn generate(&self, rng: &mut SeedRng, mac: &[u8; 6]) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const HEX: &[u8] = b"0123456789ABCDEF";
        let mut out = String::new();
        for token in &self.tokens {
            match token {
                Token::Literal(s) => out.push_str(s),
                Token::Word(case) => {
                    let word: &String = rng.pick(&self.words);
                    out.push_str(&case.apply(word));
                }
                Token::TwoDigits => out.push_str(&rng.range(10, 99).to_string()),
                Token::Digit => out.push_str(&rng.range(1, 9).to_string()),
                Token::Alnum(case, n) => {
                    let s: String = (0..*n).map(|_| *rng.pick(ALNUM) as char).collect();
                    out.push_str(&case.apply(&s));
                }
                Token::Hex(case, n) => {
                    let s: String = (0..*n).map(|_| *rng.pick(HEX) as char).collect();
                    out.push_str(&case.apply(&s));
                }
                Token::Mac(case, n) => {
                    let hex: String = mac.iter().map(|b| format!("{b:02X}")).collect();
                    out.push_str(&case.apply(&hex[12 - n..]));
                }
            }
        }
        out
    }
}

fn literal(text: &str) -> Result<Token, String> {
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!("`{bad}` cannot appear in a hostname"));
    }
    Ok(Token::Literal(text.to_string()))
}

fn parse_placeholder(inner: &str) -> Result<Token, String> {
    let (name, count) = match inner.split_once(':') {
        Some((n, c)) => {
            let count: usize = c.parse().map_err(|_| format!("`{{{inner}}}`: `{c}` is not a count"))?;
            (n, Some(count))
        }
        None => (inner, None),
    };
    let case = Case::of(name);
    let token = match (name.to_ascii_lowercase().as_str(), count) {
        ("word", None) => Token::Word(case),
        ("nn", None) => Token::TwoDigits,
        ("n", None) => Token::Digit,
        ("alnum", Some(n)) if (1..=32).contains(&n) => Token::Alnum(case, n),
        ("hex", Some(n)) if (1..=32).contains(&n) => Token::Hex(case, n),
        ("mac", Some(n)) if (1..=12).contains(&n) => Token::Mac(case, n),
        _ => {
            return Err(format!(
                "unknown placeholder `{{{inner}}}` (known: {{word}}, {{nn}}, {{n}}, {{ALNUM:k}}, {{HEX:k}}, {{MAC:k}})"
            ));
        }
    };
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::FleetSeed;

    fn words() -> Vec<String> {
        vec!["alpha".into(), "bravo".into()]
    }

    #[test]
    fn generates_in_style() {
        let mut rng = FleetSeed::placeholder().rng_for("h");
        let mac = [0x3c, 0xd9, 0x2b, 0x12, 0xab, 0xcd];
        let s = HostnameStyle::parse("SRV-{WORD}-{nn}", words()).unwrap();
        let name = s.generate(&mut rng, &mac);
        assert!(
            name.starts_with("SRV-ALPHA-") || name.starts_with("SRV-BRAVO-"),
            "{name}"
        );
        assert_eq!(name.len(), "SRV-ALPHA-10".len());
        let p = HostnameStyle::parse("NPI{MAC:6}", vec![]).unwrap();
        assert_eq!(p.generate(&mut rng, &mac), "NPI12ABCD");
        let d = HostnameStyle::parse("DESKTOP-{ALNUM:7}", vec![]).unwrap();
        let name = d.generate(&mut rng, &mac);
        assert_eq!(name.len(), 15);
        assert!(name[8..].chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(HostnameStyle::parse("SRV!{WORD}", words()).is_err());
        assert!(HostnameStyle::parse("{bogus}", words()).is_err());
        assert!(HostnameStyle::parse("{word", words()).is_err());
        assert!(HostnameStyle::parse("{word}", vec![]).is_err());
        assert!(HostnameStyle::parse("{ALNUM:0}", vec![]).is_err());
    }
}
