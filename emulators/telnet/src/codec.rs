//! Telnet (RFC 854, 855) on the server's side, without I/O: a [`Decoder`]
//! that splits what a client sends into data and commands, and the encoders
//! of what a daemon sends. Bounded: a subnegotiation keeps at most
//! [`MAX_SUB`] bytes, whatever the client sends.

/// "Interpret as command".
pub const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;
/// A subnegotiation's `SEND` request (RFC 1091, 1079, 1096, 1572).
pub const SEND: u8 = 1;
/// Its `IS` answer.
pub const IS: u8 = 0;

/// The longest subnegotiation payload kept (a terminal type, an
/// environment: a few dozen bytes from real clients).
pub const MAX_SUB: usize = 512;

/// Option codes, with the names personas use.
pub const OPTIONS: &[(&str, u8)] = &[
    ("BINARY", 0),
    ("ECHO", 1),
    ("SGA", 3),
    ("STATUS", 5),
    ("TM", 6),
    ("TTYPE", 24),
    ("NAWS", 31),
    ("TSPEED", 32),
    ("LFLOW", 33),
    ("LINEMODE", 34),
    ("XDISPLOC", 35),
    ("OLD-ENVIRON", 36),
    ("AUTHENTICATION", 37),
    ("ENCRYPT", 38),
    ("NEW-ENVIRON", 39),
];

pub fn option_code(name: &str) -> Option<u8> {
    OPTIONS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// An option negotiation verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Will,
    Wont,
    Do,
    Dont,
}

impl Verb {
    fn code(self) -> u8 {
        match self {
            Verb::Will => WILL,
            Verb::Wont => WONT,
            Verb::Do => DO,
            Verb::Dont => DONT,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "WILL" => Verb::Will,
            "WONT" => Verb::Wont,
            "DO" => Verb::Do,
            "DONT" => Verb::Dont,
            _ => return None,
        })
    }
}

/// Something the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// What the user typed (an escaped IAC already undone).
    Data(Vec<u8>),
    Negotiate(Verb, u8),
    /// A subnegotiation: the option and its payload (cut at [`MAX_SUB`]).
    Sub(u8, Vec<u8>),
    /// A two-byte command: NOP, AYT, IP, BRK, EC, EL, GA, DM, AO.
    Command(u8),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    Data,
    Iac,
    Verb(u8),
    SbOption,
    Sb,
    SbIac,
}

/// Splits the client's bytes into [`Token`]s; keeps partial sequences
/// across calls.
#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
    option: u8,
    sub: Vec<u8>,
}

impl Decoder {
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Token>) {
        let mut data = Vec::new();
        for &b in input {
            self.state = match (self.state, b) {
                (State::Data, IAC) => State::Iac,
                (State::Data, _) => {
                    data.push(b);
                    State::Data
                }
                (State::Iac, IAC) => {
                    data.push(IAC);
                    State::Data
                }
                (State::Iac, WILL | WONT | DO | DONT) => State::Verb(b),
                (State::Iac, SB) => State::SbOption,
                (State::Iac, _) => {
                    flush(&mut data, out);
                    out.push(Token::Command(b));
                    State::Data
                }
                (State::Verb(verb), _) => {
                    flush(&mut data, out);
                    let verb = match verb {
                        WILL => Verb::Will,
                        WONT => Verb::Wont,
                        DO => Verb::Do,
                        _ => Verb::Dont,
                    };
                    out.push(Token::Negotiate(verb, b));
                    State::Data
                }
                (State::SbOption, _) => {
                    self.option = b;
                    self.sub.clear();
                    State::Sb
                }
                (State::Sb, IAC) => State::SbIac,
                (State::Sb, _) => {
                    self.push_sub(b);
                    State::Sb
                }
                (State::SbIac, SE) => {
                    flush(&mut data, out);
                    out.push(Token::Sub(self.option, std::mem::take(&mut self.sub)));
                    State::Data
                }
                (State::SbIac, _) => {
                    // IAC IAC is a literal 255; anything else is a client bug,
                    // kept as data of the subnegotiation like telnetd does.
                    self.push_sub(b);
                    State::Sb
                }
            };
        }
        flush(&mut data, out);
    }

    fn push_sub(&mut self, b: u8) {
        if self.sub.len() < MAX_SUB {
            self.sub.push(b);
        }
    }
}

fn flush(data: &mut Vec<u8>, out: &mut Vec<Token>) {
    if !data.is_empty() {
        out.push(Token::Data(std::mem::take(data)));
    }
}

/// `IAC <verb> <option>`.
pub fn negotiate(verb: Verb, option: u8) -> [u8; 3] {
    [IAC, verb.code(), option]
}

/// `IAC SB <option> <payload, IAC doubled> IAC SE`.
pub fn sub(option: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![IAC, SB, option];
    out.extend(escape(payload));
    out.extend([IAC, SE]);
    out
}

/// Data for the wire: every IAC doubled.
pub fn escape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for &b in data {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
    out
}

/// Parses a persona's `"WILL ECHO"` / `"SB TTYPE SEND"` into bytes.
pub fn parse_command(text: &str) -> Result<Vec<u8>, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let option = |name: &str| option_code(name).ok_or_else(|| format!("unknown telnet option `{name}` in `{text}`"));
    match words.as_slice() {
        [verb, name] => {
            let verb = Verb::parse(verb).ok_or_else(|| format!("unknown verb in `{text}`"))?;
            Ok(negotiate(verb, option(name)?).to_vec())
        }
        ["SB", name, "SEND"] => Ok(sub(option(name)?, &[SEND])),
        _ => Err(format!("`{text}` is not `VERB OPTION` or `SB OPTION SEND`")),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode(chunks: &[&[u8]]) -> Vec<Token> {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out);
        }
        out
    }

    #[test]
    fn splits_debian_telnets_first_answer() {
        // The first bytes Debian's telnet client sent to inetutils telnetd.
        let bytes = b"\xff\xfd%\xff\xfb\x18\xff\xfa \x0038400,38400\xff\xf0\xff\xfa\x18\x00XTERM\xff\xf0root\r\0";
        assert_eq!(
            decode(&[bytes]),
            [
                Token::Negotiate(Verb::Do, 37),
                Token::Negotiate(Verb::Will, 24),
                Token::Sub(32, b"\x0038400,38400".to_vec()),
                Token::Sub(24, b"\x00XTERM".to_vec()),
                Token::Data(b"root\r\0".to_vec()),
            ]
        );
    }

    #[test]
    fn sequences_split_across_reads_are_joined() {
        let whole = decode(&[b"a\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0b\xff\xffc"]);
        let pieces = decode(&[
            b"a\xff",
            b"\xfb",
            b"\x1f\xff\xfa\x1f\x00",
            b"\x50\x00\x18\xff",
            b"\xf0b\xff",
            b"\xffc",
        ]);
        let data = |tokens: &[Token]| -> Vec<u8> {
            tokens
                .iter()
                .filter_map(|t| match t {
                    Token::Data(d) => Some(d.clone()),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        assert_eq!(data(&whole), b"ab\xffc");
        assert_eq!(data(&pieces), b"ab\xffc");
        assert!(pieces.contains(&Token::Sub(31, vec![0, 80, 0, 24])));
        assert!(pieces.contains(&Token::Negotiate(Verb::Will, 31)));
    }

    #[test]
    fn persona_commands_parse() {
        assert_eq!(parse_command("WILL ECHO").unwrap(), [IAC, WILL, 1]);
        assert_eq!(parse_command("SB TTYPE SEND").unwrap(), [IAC, SB, 24, 1, IAC, SE]);
        assert!(parse_command("WILL NOSUCH").unwrap_err().contains("NOSUCH"));
        assert!(parse_command("MAYBE ECHO").is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_boundedly(bytes in proptest::collection::vec(any::<u8>(), 0..4096), cut in 0usize..4096) {
            let cut = cut.min(bytes.len());
            let tokens = decode(&[&bytes[..cut], &bytes[cut..]]);
            let mut out = 0;
            for t in &tokens {
                match t {
                    Token::Data(d) => out += d.len(),
                    Token::Sub(_, p) => { prop_assert!(p.len() <= MAX_SUB); out += p.len() }
                    _ => out += 1,
                }
            }
            prop_assert!(out <= bytes.len());
        }

        #[test]
        fn escaped_data_decodes_to_itself(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let tokens = decode(&[&escape(&data)]);
            let back: Vec<u8> = tokens.into_iter().flat_map(|t| match t {
                Token::Data(d) => d,
                other => panic!("unexpected {other:?}"),
            }).collect();
            prop_assert_eq!(back, data);
        }
    }
}
