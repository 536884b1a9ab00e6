//! What can go wrong, naming the store and the operation.

use std::io;
use std::path::PathBuf;

/// An error of the store or of the ingester.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A database operation failed.
    #[error("store {location}: {op}: {source}")]
    Database {
        location: String,
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("store {location}: migrating the schema: {source}")]
    Migrate {
        location: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A read-only open found no database.
    #[error("no store at {}: has the engine run?", path.display())]
    Missing { path: PathBuf },
    /// The database was made by a different version of DECNET.
    #[error(
        "store {location} has schema version {found}, this DECNET reads version {expected} (an engine of this version migrates it)"
    )]
    Schema {
        location: String,
        found: i64,
        expected: i64,
    },
    /// A URL names a backend this build does not have.
    #[error("store {url}: the {backend} backend is not built yet (only SQLite is)")]
    Unsupported { url: String, backend: String },
    /// A stored row does not decode (written by a newer DECNET, or edited by hand).
    #[error("store {location}: {op}: invalid stored {what}: {detail}")]
    Corrupt {
        location: String,
        op: &'static str,
        what: &'static str,
        detail: String,
    },
    /// An `after` cursor names an event the store does not have.
    #[error("store {location}: no event {id}")]
    UnknownEvent { location: String, id: uuid::Uuid },
    /// Reading the event log, or preparing the store's directory, failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
