//! DECNET's domain model: the persona catalogue, fleet specifications built from
//! command-line flags or INI files, IP and MAC allocation, and per-decky seeds.
//!
//! Everything here is pure (no root, no network changes): `decnet deploy --dry-run`
//! is this crate plus printing.

#![forbid(unsafe_code)]

pub mod catalogue;
pub mod error;
pub mod fleet;
pub mod host;
pub mod ini;
pub mod persona;
pub mod seed;

pub use catalogue::Catalogue;
pub use error::{CatalogueError, ConfigError};
