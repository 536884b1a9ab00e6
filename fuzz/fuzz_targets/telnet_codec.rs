//! Any bytes from a client, cut anywhere: decoding never panics, keeps a
//! subnegotiation within its bound, and data escaped for the wire decodes
//! back to itself.
#![no_main]

use decnet_emu_telnet::codec::{Decoder, MAX_SUB, Token, escape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut decoder = Decoder::default();
    let mut tokens = Vec::new();
    decoder.feed(&data[..cut], &mut tokens);
    decoder.feed(&data[cut..], &mut tokens);
    for token in &tokens {
        if let Token::Sub(_, payload) = token {
            assert!(payload.len() <= MAX_SUB);
        }
    }

    let mut back = Vec::new();
    Decoder::default().feed(&escape(data), &mut back);
    let joined: Vec<u8> = back
        .into_iter()
        .flat_map(|t| match t {
            Token::Data(d) => d,
            other => panic!("escaped data decoded to {other:?}"),
        })
        .collect();
    assert_eq!(joined, data);
});
