//! The SQLite backend: every statement the store runs on SQLite is here.
//!
//! Writes go through multi-row statements of a few fixed sizes (so they stay
//! prepared), inside one `BEGIN IMMEDIATE` transaction per ingested batch.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use decnet_events::{Credential, Event, Fields, Severity};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::query_builder::Separated;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, AssertSqlSafe, ConnectOptions, QueryBuilder, Row, SqlSafeStr};
use uuid::Uuid;

use crate::StoreError;
use crate::record::{
    Attacker, CredentialFilter, CredentialRecord, EventFilter, FleetDecky, IngestOffset, SessionRecord,
};
use crate::summary::{Span, Summary, from_micros, micros, outcome_from_name, outcome_name};

/// The migrations, embedded. Listed by hand rather than with `sqlx::migrate!`,
/// which needs sqlx's `macros` feature and with it a second build of SQLite.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        "event_ranges",
        include_str!("../migrations/sqlite/0002_event_ranges.sql"),
    ),
];

/// Rows per multi-row statement at most. Smaller batches use power-of-two
/// sizes, so a handful of prepared statements serve any batch. The widest row
/// (credentials, 16 columns) stays far below SQLite's 32766 parameters.
const MAX_ROWS: usize = 256;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The columns of `events` that `event_ranges` finds events by.
const RANGE_FIELDS: [&str; 2] = ["decky", "src_ip"];

const EVENT_COLUMNS: &str =
    "id, time, decky, service, kind, severity, src_ip, src_port, session, fields, credential, message";

/// Copies the WAL into the database every second, beside the writers (a
/// passive checkpoint never blocks them), until the pool closes.
async fn checkpoint(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(message = "Checkpointing the store failed.", %error);
        }
    }
}

/// How often the WAL is copied into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// A SQLite database and its connections.
#[derive(Debug, Clone)]
pub(crate) struct Sqlite {
    pool: SqlitePool,
    location: Arc<str>,
}

impl Sqlite {
    /// Opens (creating it and its directory if need be) and migrates.
    pub(crate) async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                op: "creating the store's directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses no committed transaction on a process
            // crash, only on power loss, and then the offset rolls back too.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Statement journals of the multi-row upserts stay off the disk.
            .pragma("temp_store", "MEMORY")
            // 64 MiB of page cache (allocated as used) keeps the indexes' hot pages.
            .pragma("cache_size", "-65536")
            // No checkpoint in the committing connection (it stalls ingestion
            // for as long as it copies): a background task checkpoints instead.
            .pragma("wal_autocheckpoint", "0")
            .disable_statement_logging();
        let db = Self::connect(path, options, 4).await?;
        let migrator = Migrator::with_migrations(
            MIGRATIONS
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*name),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect(),
        );
        migrator.run(&db.pool).await.map_err(|source| StoreError::Migrate {
            location: db.location.to_string(),
            source,
        })?;
        tokio::spawn(checkpoint(db.pool.clone()));
        Ok(db)
    }

    /// Opens an existing database for reading only (the CLI's views).
    pub(crate) async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(BUSY_TIMEOUT)
            .disable_statement_logging();
        let db = Self::connect(path, options, 2).await?;
        let expected = MIGRATIONS.last().map_or(0, |m| m.0);
        // No migrations table at all reads as version 0.
        let found: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&db.pool)
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
        if found != expected {
            return Err(StoreError::Schema {
                location: db.location.to_string(),
                found,
                expected,
            });
        }
        Ok(db)
    }

    async fn connect(path: &Path, options: SqliteConnectOptions, connections: u32) -> Result<Self, StoreError> {
        let location: Arc<str> = path.display().to_string().into();
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Database {
                location: location.to_string(),
                op: "opening",
                source,
            })?;
        Ok(Self { pool, location })
    }

    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    fn fail(&self, op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Database {
            location: self.location.to_string(),
            op,
            source,
        }
    }

    fn corrupt(&self, op: &'static str, what: &'static str) -> impl Fn(String) -> StoreError + '_ {
        move |detail| StoreError::Corrupt {
            location: self.location.to_string(),
            op,
            what,
            detail,
        }
    }

    // === Writing ===

    pub(crate) async fn ingest(&self, events: &[Event], offset: Option<&IngestOffset>) -> Result<usize, StoreError> {
        self.ingest_prepared(Prepared::new(events.to_vec()), offset).await
    }

    /// Stores a prepared batch, and the offset it was read up to, in one
    /// transaction. The transaction only sends what [`Prepared::new`] encoded,
    /// so the write lock is held for SQLite's own work alone.
    pub(crate) async fn ingest_prepared(
        &self,
        batch: Prepared,
        offset: Option<&IngestOffset>,
    ) -> Result<usize, StoreError> {
        let op = "ingesting events";
        let Prepared {
            events,
            ids,
            inserts,
            aggregates,
            ranges,
        } = batch;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.fail(op))?;
        // New rows get a higher `seq` than any before (the write lock is ours).
        let before: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
            .fetch_one(&mut *tx)
            .await
            .map_err(self.fail(op))?;
        let mut inserted = 0;
        for statement in inserts {
            inserted += statement.execute(&mut tx).await.map_err(self.fail(op))?;
        }

        // Only new events count towards the aggregates: a replay adds nothing.
        let aggregates = if inserted == events.len() {
            aggregates
        } else if inserted == 0 {
            Vec::new()
        } else {
            let mut fresh: HashSet<String> = sqlx::query_scalar("SELECT id FROM events WHERE seq > ?")
                .bind(before)
                .fetch_all(&mut *tx)
                .await
                .map_err(self.fail(op))?
                .into_iter()
                .collect();
            // Taking each id out of the set counts an id repeated in the batch once.
            let new = events
                .iter()
                .zip(&ids)
                .filter(|(_, id)| fresh.remove(*id))
                .map(|(e, _)| e);
            aggregate_statements(&Summary::of(new))
        };
        for statement in aggregates {
            statement.execute(&mut tx).await.map_err(self.fail(op))?;
        }

        if inserted == events.len() {
            // All new: event i of the batch got seq `before + 1 + i`.
            let ranges = ranges.into_iter().map(|r| Range {
                first: r.first + before + 1,
                last: r.last + before + 1,
                ..r
            });
            for statement in range_statements(ranges.collect()) {
                statement.execute(&mut tx).await.map_err(self.fail(op))?;
            }
        } else if inserted > 0 {
            for field in RANGE_FIELDS {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO event_ranges (field, value, first_seq, last_seq)
                     SELECT '{field}', {field}, min(seq), max(seq) FROM events WHERE seq > ? GROUP BY {field}"
                )))
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(self.fail(op))?;
            }
        }
        if let Some(offset) = offset {
            sqlx::query(
                "INSERT INTO ingest_offsets (source, inode, byte_offset, head, updated) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (source) DO UPDATE SET inode = excluded.inode, byte_offset = excluded.byte_offset,
                     head = excluded.head, updated = excluded.updated",
            )
            .bind(offset.source.clone())
            .bind(offset.inode as i64)
            .bind(offset.offset as i64)
            .bind(offset.head.clone())
            .bind(micros(SystemTime::now()))
            .execute(&mut *tx)
            .await
            .map_err(self.fail("storing the ingest offset"))?;
        }
        tx.commit().await.map_err(self.fail(op))?;
        Ok(inserted)
    }

    pub(crate) async fn sync_fleet(&self, deckies: &[FleetDecky]) -> Result<(), StoreError> {
        let op = "syncing the fleet";
        let now = micros(SystemTime::now());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.fail(op))?;
        insert_rows(
            &mut tx,
            "INSERT INTO fleet_deckies (name, ip, mac, hostname, distro, os_family, services, updated) ",
            // `updated` moves only when something changed.
            " ON CONFLICT (name) DO UPDATE SET ip = excluded.ip, mac = excluded.mac, hostname = excluded.hostname,
                 distro = excluded.distro, os_family = excluded.os_family, services = excluded.services,
                 updated = excluded.updated
             WHERE ip IS NOT excluded.ip OR mac IS NOT excluded.mac OR hostname IS NOT excluded.hostname
                 OR distro IS NOT excluded.distro OR os_family IS NOT excluded.os_family
                 OR services IS NOT excluded.services",
            deckies,
            |b, d| {
                b.push_bind(d.name.clone())
                    .push_bind(d.ip.to_string())
                    .push_bind(d.mac.clone())
                    .push_bind(d.hostname.clone())
                    .push_bind(d.distro.clone())
                    .push_bind(d.os_family.clone())
                    .push_bind(json(&d.services))
                    .push_bind(now);
            },
        )
        .await
        .map_err(self.fail(op))?;
        let names: Vec<&str> = deckies.iter().map(|d| d.name.as_str()).collect();
        sqlx::query("DELETE FROM fleet_deckies WHERE name NOT IN (SELECT value FROM json_each(?))")
            .bind(json(&names))
            .execute(&mut *tx)
            .await
            .map_err(self.fail(op))?;
        tx.commit().await.map_err(self.fail(op))
    }

    // === Reading ===

    pub(crate) async fn ingest_offset(&self, source: &str) -> Result<Option<IngestOffset>, StoreError> {
        let row = sqlx::query("SELECT inode, byte_offset, head FROM ingest_offsets WHERE source = ?")
            .bind(source.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.fail("reading the ingest offset"))?;
        row.map(|row| {
            Ok(IngestOffset {
                source: source.to_string(),
                inode: row.try_get::<i64, _>(0)? as u64,
                offset: row.try_get::<i64, _>(1)? as u64,
                head: row.try_get(2)?,
            })
        })
        .transpose()
        .map_err(self.fail("reading the ingest offset"))
    }

    pub(crate) async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let op = "reading events";
        // One attacker's or decky's events: walk its ranges (see migration
        // 0002), in the order of `seq`, which the ranges share for one value.
        let range = match (&filter.src_ip, &filter.decky) {
            (Some(ip), _) => Some(("src_ip", ip.to_string())),
            (None, Some(decky)) => Some(("decky", decky.clone())),
            (None, None) => None,
        };
        let mut q = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM "));
        if let Some((field, value)) = &range {
            // CROSS JOIN keeps the ranges the outer loop, so ORDER BY needs no sort.
            q.push("event_ranges CROSS JOIN events ON seq BETWEEN first_seq AND last_seq WHERE field = ")
                .push_bind(*field)
                .push(" AND value = ")
                .push_bind(value.clone());
        } else {
            q.push("events WHERE true");
        }
        let (oldest_first, newest_first) = match range {
            Some(_) => ("first_seq, seq", "first_seq DESC, seq DESC"),
            None => ("seq", "seq DESC"),
        };
        if let Some(decky) = &filter.decky {
            q.push(" AND decky = ").push_bind(decky.clone());
        }
        if let Some(service) = &filter.service {
            q.push(" AND service = ").push_bind(service.clone());
        }
        if let Some(kind) = filter.kind {
            q.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(ip) = filter.src_ip {
            q.push(" AND src_ip = ").push_bind(ip.to_string());
        }
        if let Some(since) = filter.since {
            // The id bound lets the `id` index find the range (see the schema).
            q.push(" AND id >= ")
                .push_bind(v7_floor(since))
                .push(" AND time >= ")
                .push_bind(micros(since));
        }
        if let Some(after) = filter.after {
            let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM events WHERE id = ?")
                .bind(after.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(self.fail(op))?;
            let seq = seq.ok_or_else(|| StoreError::UnknownEvent {
                location: self.location.to_string(),
                id: after,
            })?;
            q.push(" AND seq > ").push_bind(seq);
            if range.is_some() {
                q.push(" AND last_seq > ").push_bind(seq);
            }
            q.push(" ORDER BY ").push(oldest_first);
        } else {
            q.push(" ORDER BY ").push(newest_first);
        }
        if let Some(limit) = filter.limit {
            q.push(" LIMIT ").push_bind(i64::from(limit));
        }
        let rows = q.build().fetch_all(&self.pool).await.map_err(self.fail(op))?;
        let mut events = rows
            .iter()
            .map(|row| self.event_from_row(row, op))
            .collect::<Result<Vec<_>, _>>()?;
        if filter.after.is_none() {
            events.reverse();
        }
        Ok(events)
    }

    fn event_from_row(&self, row: &SqliteRow, op: &'static str) -> Result<Event, StoreError> {
        let get = |e: sqlx::Error| e.to_string();
        let decode = || -> Result<Event, String> {
            let severity: i64 = row.try_get(5).map_err(get)?;
            let fields: Option<String> = row.try_get(9).map_err(get)?;
            let credential: Option<String> = row.try_get(10).map_err(get)?;
            let session: Option<String> = row.try_get(8).map_err(get)?;
            Ok(Event {
                id: parse_uuid(&row.try_get::<String, _>(0).map_err(get)?)?,
                time: from_micros(row.try_get(1).map_err(get)?),
                decky: row.try_get(2).map_err(get)?,
                service: row.try_get(3).map_err(get)?,
                kind: row
                    .try_get::<String, _>(4)
                    .map_err(get)?
                    .parse()
                    .map_err(|e| format!("{e}"))?,
                severity: u8::try_from(severity)
                    .ok()
                    .and_then(Severity::from_code)
                    .ok_or_else(|| format!("severity {severity}"))?,
                src_ip: parse_ip(&row.try_get::<String, _>(6).map_err(get)?)?,
                src_port: u16::try_from(row.try_get::<i64, _>(7).map_err(get)?).map_err(|e| e.to_string())?,
                session: session.as_deref().map(parse_uuid).transpose()?,
                fields: fields
                    .map(|f| serde_json::from_str::<Fields>(&f))
                    .transpose()
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default(),
                credential: credential
                    .map(|c| serde_json::from_str::<Credential>(&c))
                    .transpose()
                    .map_err(|e| e.to_string())?,
                message: row.try_get(11).map_err(get)?,
            })
        };
        decode().map_err(self.corrupt(op, "event"))
    }

    pub(crate) async fn count_events(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(self.fail("counting events"))?;
        Ok(n as u64)
    }

    pub(crate) async fn event_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        let op = "reading event ids";
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM events ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(self.fail(op))?;
        ids.iter()
            .map(|id| parse_uuid(id))
            .collect::<Result<_, _>>()
            .map_err(self.corrupt(op, "event id"))
    }

    pub(crate) async fn attackers(&self, limit: u32) -> Result<Vec<Attacker>, StoreError> {
        let op = "reading attackers";
        let rows = sqlx::query(
            "SELECT ip, first_seen, last_seen, events,
                 (SELECT count(*) FROM sessions s WHERE s.src_ip = a.ip),
                 (SELECT count(*) FROM credentials c WHERE c.src_ip = a.ip),
                 (SELECT json_group_array(service ORDER BY first_seen, service) FROM attacker_services s
                     WHERE s.ip = a.ip),
                 (SELECT json_group_array(decky ORDER BY first_seen, decky) FROM attacker_deckies d
                     WHERE d.ip = a.ip)
             FROM attackers a ORDER BY last_seen DESC, ip LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.fail(op))?;
        rows.iter()
            .map(|row| {
                let get = |e: sqlx::Error| e.to_string();
                let list = |i: usize| -> Result<Vec<String>, String> {
                    serde_json::from_str(&row.try_get::<String, _>(i).map_err(get)?).map_err(|e| e.to_string())
                };
                Ok(Attacker {
                    ip: parse_ip(&row.try_get::<String, _>(0).map_err(get)?)?,
                    first_seen: from_micros(row.try_get(1).map_err(get)?),
                    last_seen: from_micros(row.try_get(2).map_err(get)?),
                    events: row.try_get::<i64, _>(3).map_err(get)? as u64,
                    sessions: row.try_get::<i64, _>(4).map_err(get)? as u64,
                    credentials: row.try_get::<i64, _>(5).map_err(get)? as u64,
                    services: list(6)?,
                    deckies: list(7)?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(self.corrupt(op, "attacker"))
    }

    pub(crate) async fn credentials(&self, filter: &CredentialFilter) -> Result<Vec<CredentialRecord>, StoreError> {
        let op = "reading credentials";
        let mut q = QueryBuilder::new(
            "SELECT src_ip, decky, service, secret_kind, principal, secret, challenge, last_outcome,
                 secret_printable, secret_sha256, hashcat, attempts, first_seen, last_seen
             FROM credentials WHERE true",
        );
        if let Some(decky) = &filter.decky {
            q.push(" AND decky = ").push_bind(decky.clone());
        }
        if let Some(service) = &filter.service {
            q.push(" AND service = ").push_bind(service.clone());
        }
        if let Some(ip) = filter.src_ip {
            q.push(" AND src_ip = ").push_bind(ip.to_string());
        }
        q.push(" ORDER BY last_seen DESC, id DESC");
        if let Some(limit) = filter.limit {
            q.push(" LIMIT ").push_bind(i64::from(limit));
        }
        let rows = q.build().fetch_all(&self.pool).await.map_err(self.fail(op))?;
        rows.iter()
            .map(|row| {
                let get = |e: sqlx::Error| e.to_string();
                let outcome: Option<String> = row.try_get(7).map_err(get)?;
                Ok(CredentialRecord {
                    src_ip: parse_ip(&row.try_get::<String, _>(0).map_err(get)?)?,
                    decky: row.try_get(1).map_err(get)?,
                    service: row.try_get(2).map_err(get)?,
                    credential: Credential {
                        secret_kind: row.try_get::<String, _>(3).map_err(get)?.parse()?,
                        principal: row.try_get(4).map_err(get)?,
                        secret: row.try_get(5).map_err(get)?,
                        challenge: row.try_get(6).map_err(get)?,
                        outcome: outcome.as_deref().and_then(outcome_from_name),
                    },
                    secret_printable: row.try_get(8).map_err(get)?,
                    secret_sha256: row.try_get(9).map_err(get)?,
                    hashcat: row.try_get(10).map_err(get)?,
                    attempts: row.try_get::<i64, _>(11).map_err(get)? as u64,
                    first_seen: from_micros(row.try_get(12).map_err(get)?),
                    last_seen: from_micros(row.try_get(13).map_err(get)?),
                })
            })
            .collect::<Result<_, String>>()
            .map_err(self.corrupt(op, "credential"))
    }

    pub(crate) async fn sessions(&self, limit: u32) -> Result<Vec<SessionRecord>, StoreError> {
        let op = "reading sessions";
        let rows = sqlx::query(
            "SELECT id, decky, service, src_ip, src_port, started, ended, events FROM sessions
             ORDER BY started DESC, id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.fail(op))?;
        rows.iter()
            .map(|row| {
                let get = |e: sqlx::Error| e.to_string();
                Ok(SessionRecord {
                    id: parse_uuid(&row.try_get::<String, _>(0).map_err(get)?)?,
                    decky: row.try_get(1).map_err(get)?,
                    service: row.try_get(2).map_err(get)?,
                    src_ip: parse_ip(&row.try_get::<String, _>(3).map_err(get)?)?,
                    src_port: u16::try_from(row.try_get::<i64, _>(4).map_err(get)?).map_err(|e| e.to_string())?,
                    started: from_micros(row.try_get(5).map_err(get)?),
                    ended: row.try_get::<Option<i64>, _>(6).map_err(get)?.map(from_micros),
                    events: row.try_get::<i64, _>(7).map_err(get)? as u64,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(self.corrupt(op, "session"))
    }

    pub(crate) async fn fleet(&self) -> Result<Vec<FleetDecky>, StoreError> {
        let op = "reading the fleet";
        let rows =
            sqlx::query("SELECT name, ip, mac, hostname, distro, os_family, services FROM fleet_deckies ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(self.fail(op))?;
        rows.iter()
            .map(|row| {
                let get = |e: sqlx::Error| e.to_string();
                Ok(FleetDecky {
                    name: row.try_get(0).map_err(get)?,
                    ip: parse_ip(&row.try_get::<String, _>(1).map_err(get)?)?,
                    mac: row.try_get(2).map_err(get)?,
                    hostname: row.try_get(3).map_err(get)?,
                    distro: row.try_get(4).map_err(get)?,
                    os_family: row.try_get(5).map_err(get)?,
                    services: serde_json::from_str(&row.try_get::<String, _>(6).map_err(get)?)
                        .map_err(|e| e.to_string())?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(self.corrupt(op, "decky"))
    }
}

/// A batch of events encoded for SQLite: the inserts of the events, and the
/// upserts of their aggregates for when every event is new (the usual case).
/// Building it is CPU work only, so the ingester does it on the thread that
/// reads the log while the previous batch's transaction runs.
#[derive(Debug)]
pub(crate) struct Prepared {
    events: Vec<Event>,
    /// Each event's id as stored.
    ids: Vec<String>,
    inserts: Vec<Statement>,
    aggregates: Vec<Statement>,
    /// The batch's ranges, by position in it.
    ranges: Vec<Range>,
}

/// Where one decky's or source address's events are in a batch (positions
/// in it) or in the store (`seq`): a row of `event_ranges`.
#[derive(Debug)]
struct Range {
    field: &'static str,
    value: String,
    first: i64,
    last: i64,
}

/// The ranges of a batch's events, by position in the batch.
fn ranges(events: &[Event]) -> Vec<Range> {
    let mut ranges = Vec::new();
    ranges_by(events, "decky", |e| e.decky.as_str(), str::to_string, &mut ranges);
    ranges_by(events, "src_ip", |e| e.src_ip, |ip| ip.to_string(), &mut ranges);
    ranges
}

fn ranges_by<'a, K: Eq + Hash + Copy>(
    events: &'a [Event],
    field: &'static str,
    key: impl Fn(&'a Event) -> K,
    text: impl Fn(K) -> String,
    ranges: &mut Vec<Range>,
) {
    let mut seen: HashMap<K, usize> = HashMap::new();
    for (at, event) in (0_i64..).zip(events) {
        let k = key(event);
        match seen.entry(k) {
            Entry::Occupied(i) => ranges[*i.get()].last = at,
            Entry::Vacant(slot) => {
                slot.insert(ranges.len());
                ranges.push(Range {
                    field,
                    value: text(k),
                    first: at,
                    last: at,
                });
            }
        }
    }
}

fn range_statements(ranges: Vec<Range>) -> Vec<Statement> {
    values(
        "INSERT INTO event_ranges (field, value, first_seq, last_seq) ",
        "",
        4,
        ranges,
        |args, r| {
            add(args, r.field);
            add(args, r.value);
            add(args, r.first);
            add(args, r.last);
        },
    )
}

impl Prepared {
    pub(crate) fn new(events: Vec<Event>) -> Self {
        let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let inserts = values(
            &format!("INSERT INTO events ({EVENT_COLUMNS}) "),
            " ON CONFLICT (id) DO NOTHING",
            12,
            events.iter().zip(&ids).collect(),
            |args, (event, id)| {
                add(args, id.clone());
                add(args, micros(event.time));
                add(args, event.decky.clone());
                add(args, event.service.clone());
                add(args, event.kind.as_str());
                add(args, i64::from(event.severity.code()));
                add(args, event.src_ip.to_string());
                add(args, i64::from(event.src_port));
                add(args, event.session.map(|s| s.to_string()));
                add(args, (!event.fields.is_empty()).then(|| json(&event.fields)));
                add(args, event.credential.as_ref().map(json));
                add(args, event.message.clone());
            },
        );
        let aggregates = aggregate_statements(&Summary::of(&events));
        let ranges = ranges(&events);
        Self {
            events,
            ids,
            inserts,
            aggregates,
            ranges,
        }
    }
}

/// A statement and its arguments, encoded ahead of the transaction that runs it.
#[derive(Debug)]
struct Statement {
    sql: String,
    args: SqliteArguments,
}

impl Statement {
    /// Runs it; returns the rows inserted or updated.
    async fn execute(self, conn: &mut SqliteConnection) -> Result<usize, sqlx::Error> {
        let done = sqlx::query_with(AssertSqlSafe(self.sql), self.args)
            .execute(conn)
            .await?;
        Ok(done.rows_affected() as usize)
    }
}

/// `head VALUES (?, …), (?, …) tail` over `rows`, in chunks of [`MAX_ROWS`]
/// and then powers of two, so that a handful of statements, each prepared
/// once, serve any batch.
fn values<T>(
    head: &str,
    tail: &str,
    columns: usize,
    rows: Vec<T>,
    bind: impl Fn(&mut SqliteArguments, T),
) -> Vec<Statement> {
    let mut statements = Vec::new();
    let mut rows = rows.into_iter();
    let mut left = rows.len();
    while left > 0 {
        let size = if left >= MAX_ROWS { MAX_ROWS } else { 1 << left.ilog2() };
        left -= size;
        let row = format!("({})", vec!["?"; columns].join(", "));
        let sql = format!("{head}VALUES {}{tail}", vec![row; size].join(", "));
        let mut args = SqliteArguments::default();
        args.reserve(size * columns, 0);
        for row in rows.by_ref().take(size) {
            bind(&mut args, row);
        }
        statements.push(Statement { sql, args });
    }
    statements
}

fn add<'q, T: sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(args: &mut SqliteArguments, value: T) {
    args.add(value)
        .expect("text, integers, blobs and NULL always encode for SQLite");
}

/// The upserts that add a summary of new events to the aggregate tables.
fn aggregate_statements(summary: &Summary<'_>) -> Vec<Statement> {
    let mut statements = values(
        "INSERT INTO sessions (id, decky, service, src_ip, src_port, started, ended, events) ",
        " ON CONFLICT (id) DO UPDATE SET
             started = min(started, excluded.started),
             ended = max(coalesce(ended, excluded.ended), coalesce(excluded.ended, ended)),
             events = events + excluded.events",
        8,
        summary.sessions.iter().collect(),
        |args, (id, s)| {
            add(args, id.to_string());
            add(args, s.decky.to_string());
            add(args, s.service.to_string());
            add(args, s.src_ip.to_string());
            add(args, i64::from(s.src_port));
            add(args, s.span.first);
            add(args, s.ended);
            add(args, s.span.count);
        },
    );

    statements.extend(values(
        "INSERT INTO credentials (src_ip, decky, service, secret_kind, principal, principal_key, secret_sha256,
             secret, secret_printable, challenge, hashcat, attempts, first_seen, last_seen, last_outcome,
             last_outcome_at) ",
        " ON CONFLICT (src_ip, decky, service, secret_kind, principal_key, secret_sha256) DO UPDATE SET
             attempts = attempts + excluded.attempts,
             first_seen = min(first_seen, excluded.first_seen),
             last_seen = max(last_seen, excluded.last_seen),
             last_outcome = CASE WHEN excluded.last_outcome_at >= coalesce(last_outcome_at, excluded.last_outcome_at)
                 THEN excluded.last_outcome ELSE last_outcome END,
             last_outcome_at = CASE WHEN excluded.last_outcome_at >= coalesce(last_outcome_at, excluded.last_outcome_at)
                 THEN excluded.last_outcome_at ELSE last_outcome_at END",
        16,
        summary.credentials.iter().collect(),
        |args, (k, c)| {
            add(args, k.src_ip.to_string());
            add(args, k.decky.to_string());
            add(args, k.service.to_string());
            add(args, k.secret_kind);
            add(args, c.credential.principal.clone());
            add(args, k.principal_key.to_string());
            add(args, k.secret_sha256.clone());
            add(args, c.credential.secret.clone());
            add(args, c.secret_printable.clone());
            add(args, c.credential.challenge.clone());
            add(args, c.hashcat.clone());
            add(args, c.span.count);
            add(args, c.span.first);
            add(args, c.span.last);
            add(args, c.last_outcome.map(|(_, o)| outcome_name(o)));
            add(args, c.last_outcome.map(|(t, _)| t));
        },
    ));

    // Attackers, and the services and deckies each touched: first and last seen, events.
    let attackers: Vec<SpanRow<'_>> = summary.attackers.iter().map(|(ip, span)| (*ip, None, *span)).collect();
    let services = summary
        .services
        .iter()
        .map(|((ip, s), span)| (*ip, Some(*s), *span))
        .collect();
    let deckies = summary
        .deckies
        .iter()
        .map(|((ip, d), span)| (*ip, Some(*d), *span))
        .collect();
    let tables = [
        ("attackers", "ip", attackers),
        ("attacker_services", "ip, service", services),
        ("attacker_deckies", "ip, decky", deckies),
    ];
    for (table, key, rows) in tables {
        let columns = if key == "ip" { 4 } else { 5 };
        statements.extend(values(
            &format!("INSERT INTO {table} ({key}, first_seen, last_seen, events) "),
            &format!(
                " ON CONFLICT ({key}) DO UPDATE SET
                     first_seen = min(first_seen, excluded.first_seen),
                     last_seen = max(last_seen, excluded.last_seen),
                     events = events + excluded.events"
            ),
            columns,
            rows,
            |args, (ip, name, span)| {
                add(args, ip.to_string());
                if let Some(name) = name {
                    add(args, name.to_string());
                }
                add(args, span.first);
                add(args, span.last);
                add(args, span.count);
            },
        ));
    }
    statements
}

/// An address, the service or decky it touched (none for the attacker's own
/// row), and when and how often.
type SpanRow<'a> = (IpAddr, Option<&'a str>, Span);

/// Runs `head VALUES (…), (…) tail` over `rows` in chunks; returns the rows
/// inserted or updated.
async fn insert_rows<T>(
    conn: &mut SqliteConnection,
    head: &str,
    tail: &str,
    rows: &[T],
    bind: impl Fn(&mut Separated<'_, sqlx::Sqlite, &'static str>, &T),
) -> Result<usize, sqlx::Error> {
    let mut affected = 0;
    let mut rest = rows;
    while !rest.is_empty() {
        let size = if rest.len() >= MAX_ROWS {
            MAX_ROWS
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, later) = rest.split_at(size);
        rest = later;
        let mut q = QueryBuilder::new(head);
        q.push_values(chunk, |mut b, row| bind(&mut b, row));
        q.push(tail);
        affected += q.build().execute(&mut *conn).await?.rows_affected() as usize;
    }
    Ok(affected)
}

/// The smallest UUIDv7 text of an event stamped at `since`, less a second
/// (an event's id is made a moment before its time is read).
fn v7_floor(since: SystemTime) -> String {
    let ms = (micros(since) / 1000 - 1000).max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    Uuid::from_bytes(bytes).to_string()
}

/// JSON text of a value that always serializes (string-keyed maps, lists, structs).
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("string-keyed JSON values, lists and plain structs always serialize")
}

fn parse_uuid(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text).map_err(|e| format!("uuid {text:?}: {e}"))
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|e| format!("address {text:?}: {e}"))
}
