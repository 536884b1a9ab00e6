//! `zlib@openssh.com`: one zlib stream per direction for the whole
//! connection, each packet's payload flushed on its own, switched on after
//! authentication succeeds ("delayed" compression).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::cipher::MAX_PACKET;

pub struct Deflater(Compress);

impl Default for Deflater {
    fn default() -> Self {
        // sshd uses zlib's default level 6.
        Self(Compress::new(Compression::new(6), true))
    }
}

impl Deflater {
    /// Compresses one payload, ending with a sync flush so the peer can
    /// decode it without waiting for more.
    pub fn compress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(payload.len() + 64);
        let start = self.0.total_in();
        // Every round makes progress; the cap only guards against a stall.
        for _ in 0..100_000 {
            let consumed = usize::try_from(self.0.total_in() - start).ok()?;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            self.0
                .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
                .ok()?;
            let consumed = usize::try_from(self.0.total_in() - start).ok()?;
            if consumed == payload.len() && out.len() < out.capacity() {
                return Some(out);
            }
        }
        None
    }
}

pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Self(Decompress::new(true))
    }
}

impl Inflater {
    /// Decompresses one payload; `None` on corrupt data or when the result
    /// would exceed the packet limit (a zip bomb).
    pub fn decompress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() * 4 + 64);
        let start = self.0.total_in();
        for _ in 0..100_000 {
            let consumed = usize::try_from(self.0.total_in() - start).ok()?;
            if out.capacity() - out.len() < 64 {
                if out.len() >= MAX_PACKET {
                    return None;
                }
                out.reserve(out.capacity().max(256));
            }
            let before = (out.len(), consumed);
            let status = self
                .0
                .decompress_vec(&data[consumed..], &mut out, FlushDecompress::Sync)
                .ok()?;
            let consumed = usize::try_from(self.0.total_in() - start).ok()?;
            let stalled = (out.len(), consumed) == before;
            if out.len() > MAX_PACKET || status == Status::StreamEnd {
                return (status == Status::StreamEnd && out.len() <= MAX_PACKET).then_some(out);
            }
            if consumed == data.len() && out.len() < out.capacity() {
                return Some(out);
            }
            if consumed == data.len() && stalled {
                return Some(out);
            }
            if stalled && out.len() < out.capacity() {
                // No progress with input left and room to write: corrupt.
                return None;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn streams_carry_across_packets() {
        let mut d = Deflater::default();
        let mut i = Inflater::default();
        for n in [0usize, 1, 100, 70_000] {
            let payload: Vec<u8> = (0..n).map(|x| (x % 251) as u8).collect();
            let packed = d.compress(&payload).expect("compresses");
            assert_eq!(i.decompress(&packed).expect("decompresses"), payload);
        }
    }

    #[test]
    fn bombs_are_refused() {
        let mut d = Deflater::default();
        let packed = d.compress(&vec![0u8; MAX_PACKET + 10]).expect("compresses");
        assert!(Inflater::default().decompress(&packed).is_none());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Inflater::default().decompress(&data);
        }
    }
}
