//! `DECKIES` (see `DeckyLine`), mapped into the loader: the one place the
//! loader writes the programs' memory directly, so that it may write part
//! of a line.
#![allow(unsafe_code)] // A mapping of a BPF map's memory.

use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};

use aya::maps::{Map, MapData};
use decnet_ebpf_common::{DECKY_LINE_BITS, Decky, DeckyLine, decky_line};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

/// `DECKIES`, mapped into this process: the loader writes each line's
/// `Decky` in place, never the counts the programs keep in the same line
/// with atomic operations (a map update writes a whole value, and would
/// lose a count that moved meanwhile).
pub(crate) struct DeckyLines {
    lines: NonNull<DeckyLine>,
    len: NonZeroUsize,
    _map: MapData,
}

// SAFETY: the mapping is this value's alone; the kernel's side of it is
// written by the programs only with atomic operations, on other fields.
unsafe impl Send for DeckyLines {}

const DECKY_LINES: usize = 1 << DECKY_LINE_BITS;

impl DeckyLines {
    pub(crate) fn map(map: Map) -> Result<Self, String> {
        let Map::Array(map) = map else {
            return Err("DECKIES is not an array".into());
        };
        let len = NonZeroUsize::new(DECKY_LINES * size_of::<DeckyLine>()).expect("not empty");
        // SAFETY: a shared mapping of the map's memory (made with
        // BPF_F_MMAPABLE, page-aligned, `len` long); unmapped on drop.
        let lines = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                map.fd().as_fd(),
                0,
            )
        }
        .map_err(|e| format!("cannot map DECKIES: {e}"))?;
        Ok(Self {
            lines: lines.cast(),
            len,
            _map: map,
        })
    }

    fn decky(&self, ip: u32) -> *mut Decky {
        let index = decky_line(ip) as usize % DECKY_LINES;
        // SAFETY: within the mapping.
        unsafe { &raw mut (*self.lines.as_ptr().add(index)).decky }
    }

    /// Gives `decky` its line, unless another decky holds it (that one's
    /// segments are then looked up whole). The address is written last, so
    /// that a segment that finds it finds the rest.
    pub(crate) fn hold(&self, decky: Decky) {
        let at = self.decky(decky.ip);
        // SAFETY: within the mapping; the programs only read this part.
        unsafe {
            let held = (&raw const (*at).ip).read_volatile();
            if held != 0 && held != decky.ip {
                return;
            }
            (&raw mut (*at).ip).write_volatile(0);
            fence(Ordering::Release);
            at.write_volatile(Decky { ip: 0, ..decky });
            fence(Ordering::Release);
            (&raw mut (*at).ip).write_volatile(decky.ip);
        }
    }

    /// Frees the line of the decky at `ip`, if it holds it.
    pub(crate) fn release(&self, ip: u32) {
        let at = self.decky(ip);
        // SAFETY: within the mapping.
        unsafe {
            if (&raw const (*at).ip).read_volatile() == ip {
                (&raw mut (*at).ip).write_volatile(0);
            }
        }
    }
}

impl Drop for DeckyLines {
    fn drop(&mut self) {
        // SAFETY: mapped in `map`, not used after this.
        let _ = unsafe { munmap(self.lines.cast(), self.len.get()) };
    }
}
