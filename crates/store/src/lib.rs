//! The store: events, attackers, credentials, sessions and the fleet in SQL.
//!
//! [`Store`] is what callers use, whatever the database; SQLite
//! (`<state-dir>/decnet.db`, WAL) is the default and, for now, the only
//! backend. Each backend keeps all its SQL in one module and its migrations
//! in `migrations/<backend>/`, so PostgreSQL and MySQL can be added without
//! touching callers.
//!
//! The [`Ingester`] fills the store from the engine's JSON event log,
//! exactly once: rows and the log offset they came from are committed in one
//! transaction, and events are keyed by their id, so a replay after
//! `kill -9` inserts nothing twice and skips nothing.

#![forbid(unsafe_code)]

mod error;
pub mod ingest;
mod record;
mod sqlite;
mod summary;

use std::path::{Path, PathBuf};

use decnet_events::Event;
use uuid::Uuid;

pub use error::StoreError;
pub use ingest::{IngestCounters, IngestStats, Ingester};
pub use record::{Attacker, CredentialFilter, CredentialRecord, EventFilter, FleetDecky, IngestOffset, SessionRecord};

/// The database file in the state directory.
pub const SQLITE_FILE: &str = "decnet.db";

/// A handle on the database; cheap to clone (clones share the connections).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
}

impl Store {
    /// Opens the store a URL names: `sqlite://PATH`, `sqlite:PATH` or a bare
    /// path. PostgreSQL and MySQL URLs are recognised, and refused until
    /// those backends exist.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        match parse_url(url)? {
            Location::Sqlite(path) => Self::open_sqlite(&path).await,
        }
    }

    /// Opens (creating it and its directory if need be) a SQLite database and
    /// brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::Sqlite::open(path).await?),
        })
    }

    /// Opens an existing SQLite database for reading only, as the CLI's views
    /// do while the engine writes. It must exist and have this version's schema.
    pub async fn open_sqlite_read_only(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::Sqlite::open_read_only(path).await?),
        })
    }

    /// Where the database is, for messages.
    pub fn location(&self) -> &str {
        match &self.backend {
            Backend::Sqlite(db) => db.location(),
        }
    }

    /// Closes the connections, waiting for those in use.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(db) => db.close().await,
        }
    }

    /// Stores events, and the offset they were read up to, in one transaction.
    /// Events already stored (by id) are skipped and change no aggregate, so
    /// replaying a batch is harmless. Returns how many were new.
    pub async fn ingest(&self, events: &[Event], offset: Option<&IngestOffset>) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.ingest(events, offset).await,
        }
    }

    /// Encodes events for [`Store::ingest_prepared`]. Only CPU work, so the
    /// ingester does it on its reading thread, beside the previous batch's
    /// transaction.
    pub(crate) fn prepare(&self, events: Vec<Event>) -> PreparedEvents {
        match &self.backend {
            Backend::Sqlite(_) => PreparedEvents::Sqlite(sqlite::Prepared::new(events)),
        }
    }

    /// [`Store::ingest`] of prepared events.
    pub(crate) async fn ingest_prepared(
        &self,
        batch: PreparedEvents,
        offset: Option<&IngestOffset>,
    ) -> Result<usize, StoreError> {
        match (&self.backend, batch) {
            (Backend::Sqlite(db), PreparedEvents::Sqlite(batch)) => db.ingest_prepared(batch, offset).await,
        }
    }

    /// Where ingestion of `source` got to.
    pub async fn ingest_offset(&self, source: &str) -> Result<Option<IngestOffset>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.ingest_offset(source).await,
        }
    }

    /// Events matching the filter, oldest first, in the order they were stored.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.events(filter).await,
        }
    }

    /// How many events are stored.
    pub async fn count_events(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.count_events().await,
        }
    }

    /// Every stored event's id, in the order stored.
    pub async fn event_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.event_ids().await,
        }
    }

    /// The most recently seen attackers, most recent first.
    pub async fn attackers(&self, limit: u32) -> Result<Vec<Attacker>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.attackers(limit).await,
        }
    }

    /// Credentials matching the filter, most recently tried first.
    pub async fn credentials(&self, filter: &CredentialFilter) -> Result<Vec<CredentialRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.credentials(filter).await,
        }
    }

    /// The most recently started sessions, most recent first.
    pub async fn sessions(&self, limit: u32) -> Result<Vec<SessionRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.sessions(limit).await,
        }
    }

    /// Replaces the stored fleet with these deckies.
    pub async fn sync_fleet(&self, deckies: &[FleetDecky]) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.sync_fleet(deckies).await,
        }
    }

    /// The stored fleet, by name.
    pub async fn fleet(&self) -> Result<Vec<FleetDecky>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => db.fleet().await,
        }
    }
}

/// Events encoded for one backend by [`Store::prepare`].
#[derive(Debug)]
pub(crate) enum PreparedEvents {
    Sqlite(sqlite::Prepared),
}

/// What a store URL names.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    Sqlite(PathBuf),
}

fn parse_url(url: &str) -> Result<Location, StoreError> {
    let unsupported = |backend: &str| StoreError::Unsupported {
        url: url.to_string(),
        backend: backend.to_string(),
    };
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return Ok(Location::Sqlite(PathBuf::from(path)));
    }
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => Err(unsupported("PostgreSQL")),
        Some("mysql" | "mariadb") => Err(unsupported("MySQL")),
        Some(other) => Err(unsupported(other)),
        None => Ok(Location::Sqlite(PathBuf::from(url))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_sqlite_or_say_what_is_missing() {
        let sqlite = |p: &str| Ok::<_, ()>(Location::Sqlite(PathBuf::from(p)));
        assert_eq!(
            parse_url("sqlite:///var/lib/decnet/decnet.db").map_err(|_| ()),
            sqlite("/var/lib/decnet/decnet.db")
        );
        assert_eq!(
            parse_url("sqlite:state/decnet.db").map_err(|_| ()),
            sqlite("state/decnet.db")
        );
        assert_eq!(parse_url("/tmp/x.db").map_err(|_| ()), sqlite("/tmp/x.db"));
        let err = parse_url("postgres://u@h/db").unwrap_err().to_string();
        assert!(err.contains("PostgreSQL backend is not built yet"), "{err}");
        let err = parse_url("mysql://u@h/db").unwrap_err().to_string();
        assert!(err.contains("MySQL backend is not built yet"), "{err}");
    }
}
