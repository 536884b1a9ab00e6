//! Parsing a command line with brush-parser, behind bounds that keep its
//! recursive-descent parser's stack small, and bash's own error wording.

use brush_parser::{ParseError, ParserOptions, ast};

use crate::Limits;

/// Why a line did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseFailure {
    /// More input could complete it (an open quote, `if` without `fi`, a
    /// trailing `|`): an interactive shell shows `PS2` and reads on.
    Incomplete { quote: Option<char> },
    /// A syntax error at this token (`newline` at the end of a line).
    Syntax { token: String },
    /// Beyond the parser's bounds (too long, nested too deep).
    TooComplex,
}

impl ParseFailure {
    /// bash's message for the interactive shell (without the `-bash: ` prefix).
    pub(crate) fn message(&self) -> String {
        match self {
            ParseFailure::Incomplete { quote: Some(q) } => format!("unexpected EOF while looking for matching `{q}'"),
            ParseFailure::Incomplete { quote: None } => "syntax error: unexpected end of file".to_string(),
            ParseFailure::Syntax { token } => format!("syntax error near unexpected token `{token}'"),
            ParseFailure::TooComplex => "xmalloc: cannot allocate memory".to_string(),
        }
    }
}

/// The options our parser runs with (bash mode, extglob off like a login shell).
pub(crate) fn options() -> ParserOptions {
    ParserOptions {
        enable_extended_globbing: false,
        ..ParserOptions::default()
    }
}

/// Parses a whole program.
pub(crate) fn parse(text: &str, limits: &Limits) -> Result<ast::Program, ParseFailure> {
    if text.len() > limits.max_line || nesting(text) > limits.max_nesting {
        return Err(ParseFailure::TooComplex);
    }
    if let Some(token) = heredoc_without_word(text) {
        // brush-parser 0.4's tokenizer loops, allocating without bound, on
        // some here-documents that have no delimiter word; bash rejects them.
        return Err(ParseFailure::Syntax { token });
    }
    let mut parser = brush_parser::Parser::new(std::io::Cursor::new(text.as_bytes()), &options());
    match parser.parse_program() {
        Ok(p) => Ok(p),
        Err(ParseError::ParsingAtEndOfInput) => Err(ParseFailure::Incomplete { quote: None }),
        Err(ParseError::Tokenizing { inner, .. }) if inner.is_incomplete() => {
            let quote = match inner {
                brush_parser::TokenizerError::UnterminatedSingleQuote(_) => Some('\''),
                brush_parser::TokenizerError::UnterminatedDoubleQuote(_) => Some('"'),
                brush_parser::TokenizerError::UnterminatedBackquote(_) => Some('`'),
                brush_parser::TokenizerError::UnterminatedCommandSubstitution => Some(')'),
                _ => None,
            };
            Err(ParseFailure::Incomplete { quote })
        }
        Err(ParseError::Tokenizing { .. }) => Err(ParseFailure::Syntax {
            token: "newline".into(),
        }),
        Err(ParseError::ParsingNear(pos)) => Err(ParseFailure::Syntax {
            token: token_at(text, pos.index),
        }),
    }
}

/// A `<<` (not `<<<`) outside quotes whose next token is an operator or the
/// end of the input: the token bash would name in its syntax error.
fn heredoc_without_word(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let (mut i, mut single, mut double) = (0, false, false);
    while i < b.len() {
        match b[i] {
            b'\\' if !single => i += 1,
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'<' if !single && !double && b.get(i + 1) == Some(&b'<') && b.get(i + 2) != Some(&b'<') => {
                let mut j = i + 2;
                if b.get(j) == Some(&b'-') {
                    j += 1;
                }
                while matches!(b.get(j), Some(b' ' | b'\t')) {
                    j += 1;
                }
                match b.get(j) {
                    None | Some(b'\n') => return Some("newline".into()),
                    Some(&c) if b"&|;<>()".contains(&c) => {
                        let two = text.get(j..j + 2).unwrap_or("");
                        let token = if ["&&", "||", ";;", ">>", "<<"].contains(&two) {
                            two
                        } else {
                            &text[j..j + 1]
                        };
                        return Some(token.to_string());
                    }
                    _ => {}
                }
                // The delimiter word: brush-parser loops the same way on a
                // delimiter that is empty once unquoted (`<<''`).
                let mut k = j;
                let mut quote: Option<u8> = None;
                let mut content = 0;
                while let Some(&c) = b.get(k) {
                    match (quote, c) {
                        (None, b' ' | b'\t' | b'\n' | b'&' | b'|' | b';' | b'<' | b'>' | b'(' | b')') => break,
                        (None, b'\'' | b'"') => quote = Some(c),
                        (Some(q), c) if c == q => quote = None,
                        (None, b'\\') => {}
                        (_, b'\n') => {}
                        _ => content += 1,
                    }
                    k += 1;
                }
                if content == 0 {
                    return Some("newline".into());
                }
                i = k;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The token starting at (or after) char index `at`.
fn token_at(text: &str, at: usize) -> String {
    if let Ok(tokens) = brush_parser::tokenize_str(text) {
        for t in &tokens {
            let (s, span) = match t {
                brush_parser::Token::Operator(s, span) | brush_parser::Token::Word(s, span) => (s, span),
            };
            if span.start.index >= at {
                return if s == "\n" { "newline".into() } else { s.clone() };
            }
        }
    }
    "newline".into()
}

/// The deepest nesting of brackets and quotes-within-substitutions, a cheap
/// upper bound on the parser's recursion.
fn nesting(text: &str) -> usize {
    let mut depth: usize = 0;
    let mut max = 0;
    for c in text.chars() {
        match c {
            '(' | '{' | '[' | '`' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // Keywords nest too (`if if if …`), so count them as well.
    let keywords = text
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| matches!(*w, "if" | "while" | "until" | "for" | "case" | "do" | "then"))
        .count();
    max.max(keywords / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_without_a_word_is_a_syntax_error() {
        let limits = Limits::default();
        for (text, token) in [
            ("cat << && x", "&&"),
            ("cat <<", "newline"),
            ("'\n|| ' $( << && * ", "&&"),
            ("<<<<<''<  ", "newline"),
            ("cat <<'' x", "newline"),
            ("cat <<\"\n\"", "newline"),
        ] {
            assert_eq!(
                parse(text, &limits).err(),
                Some(ParseFailure::Syntax { token: token.into() }),
                "{text:?}"
            );
        }
        assert!(parse("cat <<EOF\nx\nEOF", &limits).is_ok());
        assert!(parse("cat <<< word", &limits).is_ok());
        assert!(parse("echo '<< &&'", &limits).is_ok());
    }
}
