//! Any datagram: decoding never panics, and a decoded ERROR re-encodes to the
//! same packet.
#![no_main]

use decnet_emu_tftp::codec::{Packet, decode, encode_error};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Packet::Error { code, message }) = decode(data)
        && let Ok(text) = std::str::from_utf8(&message)
        && !text.contains('\0')
    {
        assert_eq!(decode(&encode_error(code, text)), Ok(Packet::Error { code, message }));
    }
});
