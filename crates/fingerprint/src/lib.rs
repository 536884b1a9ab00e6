//! OS personalities on the wire. A decky's [`Shaping`](decnet_core::catalogue::Shaping)
//! becomes a record the eBPF programs of `ebpf/personality` read ([`record`]),
//! and the [`Shaper`] attaches those programs inside each decky's namespace.

pub mod check;
mod decky_lines;
mod record;
mod shaper;

pub use self::record::{record, shapes_anything};
pub use self::shaper::{Shaper, ShaperError};
