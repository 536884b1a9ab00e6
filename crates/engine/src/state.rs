//! The desired fleet, persisted so that a restarted engine (even after
//! `kill -9`) knows what to serve. Written atomically: a crash leaves the old
//! file or the new one, never half of one.

use std::io::{self, Write};
use std::path::Path;

use decnet_core::fleet::FleetSpec;

/// Reads the desired fleet; `None` when there is none.
pub fn load(path: &Path) -> io::Result<Option<FleetSpec>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Saves the desired fleet (or removes the file for `None`).
pub fn save(path: &Path, fleet: Option<&FleetSpec>) -> io::Result<()> {
    let Some(fleet) = fleet else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut out = io::BufWriter::new(std::fs::File::create(&tmp)?);
    serde_json::to_writer_pretty(&mut out, fleet)?;
    out.write_all(b"\n")?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
