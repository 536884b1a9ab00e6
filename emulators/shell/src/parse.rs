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

/// Runs a brush-parser call, turning a panic inside it (0.4 unwraps, e.g. an
/// I/O number that overflows `i32`) into `None`: hostile input must not take
/// the session down.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Parses a whole program.
pub(crate) fn parse(text: &str, limits: &Limits) -> Result<ast::Program, ParseFailure> {
    if text.len() > limits.max_line || nesting(text) > limits.max_nesting {
        return Err(ParseFailure::TooComplex);
    }
    if huge_io_number(text) {
        // brush-parser 0.4 unwraps the parse of an I/O number into an i32.
        return Err(ParseFailure::Syntax {
            token: "newline".into(),
        });
    }
    if let Some(token) = heredoc_without_word(text) {
        // brush-parser 0.4's tokenizer loops, allocating without bound, on
        // some here-documents that have no delimiter word; bash rejects them.
        return Err(ParseFailure::Syntax { token });
    }
    let mut parser = brush_parser::Parser::new(std::io::Cursor::new(text.as_bytes()), &options());
    let Some(result) = guarded(|| parser.parse_program()) else {
        return Err(ParseFailure::Syntax {
            token: "newline".into(),
        });
    };
    match result {
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

/// A `<<` (not `<<<`) outside quotes whose delimiter word is missing (the
/// next token is an operator or the end) or empty once unquoted (`<<''`):
/// the token bash would name in its syntax error. brush-parser 0.4's
/// tokenizer loops, allocating without bound, on both.
fn heredoc_without_word(text: &str) -> Option<String> {
    let c: Vec<char> = text.chars().collect();
    let (mut i, mut single, mut double) = (0, false, false);
    let operator = |ch: char| "&|;<>()".contains(ch);
    while i < c.len() {
        match c[i] {
            '\\' if !single => i += 1,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '<' if !single && !double && c.get(i + 1) == Some(&'<') && c.get(i + 2) != Some(&'<') => {
                let mut j = i + 2;
                if c.get(j) == Some(&'-') {
                    j += 1;
                }
                while c.get(j).is_some_and(|ch| ch.is_whitespace() && *ch != '\n') {
                    j += 1;
                }
                match c.get(j) {
                    None | Some('\n') => return Some("newline".into()),
                    Some(&ch) if operator(ch) => {
                        let two: String = c[j..(j + 2).min(c.len())].iter().collect();
                        let token = if ["&&", "||", ";;", ">>", "<<"].contains(&two.as_str()) {
                            two
                        } else {
                            ch.to_string()
                        };
                        return Some(token);
                    }
                    _ => {}
                }
                let mut k = j;
                let mut quote: Option<char> = None;
                let mut content = 0;
                while let Some(&ch) = c.get(k) {
                    match quote {
                        None if ch.is_whitespace() || operator(ch) => break,
                        None if ch == '\'' || ch == '"' => quote = Some(ch),
                        Some(q) if ch == q => quote = None,
                        _ if ch == '\\' || ch.is_whitespace() || ch.is_control() => {}
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

/// A word that starts with ten or more digits and holds a redirection
/// operator: an I/O number too big for a file descriptor.
fn huge_io_number(text: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || "&|;()".contains(c))
        .any(|word| {
            let digits = word.chars().take_while(char::is_ascii_digit).count();
            digits >= 10 && word.contains(['<', '>'])
        })
}

/// The token starting at (or after) char index `at`.
fn token_at(text: &str, at: usize) -> String {
    if let Some(Ok(tokens)) = guarded(|| brush_parser::tokenize_str(text)) {
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
    // Compound commands nest too (`if if if …`): their depth counts as well.
    let mut kw_depth: usize = 0;
    let mut kw_max = 0;
    for w in text.split(|c: char| c.is_whitespace() || c == ';' || c == '(' || c == ')') {
        match w {
            "if" | "while" | "until" | "for" | "case" | "select" => {
                kw_depth += 1;
                kw_max = kw_max.max(kw_depth);
            }
            "fi" | "done" | "esac" => kw_depth = kw_depth.saturating_sub(1),
            _ => {}
        }
    }
    max.max(kw_max)
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
            ("<< \x0c ", "newline"),
            ("666666666666\u{fffd}<\u{6}!&!1=", "newline"),
            ("echo 99999999999>x", "newline"),
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
