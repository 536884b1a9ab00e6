//! The event pipeline's benchmark (run by `cargo xtask bench events`, which
//! prints the figures against the targets). Prints one JSON object:
//! - `file_per_s`: events/s formatted as JSON + RFC 5424 and written to the
//!   local log, on one core;
//! - `ingest_per_s`: events/s ingested from decnet.json into SQLite;
//! - `sqlite_floor_per_s`: the peer, the same events inserted as bare rows;
//! - `latency_ms`: emit → row committed, at a steady rate, percentiles.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // A benchmark: failing loudly is right.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use decnet_events::file::{FileLog, FileLogConfig};
use decnet_events::{Credential, Event, Kind, Pipeline};
use decnet_store::{Ingester, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const FILE_EVENTS: usize = 1_000_000;
const INGEST_EVENTS: usize = 200_000;
const RATE: u64 = 10_000;
const LATENCY_SECS: u64 = 10;

/// Event `n` of a typical internet-facing fleet's stream: 5000 sources
/// taking turns over 64 deckies and 5 services, sessions of 10 events
/// (connect, requests, login attempts, commands, disconnect), a credential
/// in every fifth event.
fn event(n: usize) -> Event {
    thread_local! {
        static SESSION: std::cell::Cell<uuid::Uuid> = std::cell::Cell::new(uuid::Uuid::now_v7());
    }
    let s = n / 10;
    if n.is_multiple_of(10) {
        SESSION.set(uuid::Uuid::now_v7());
    }
    let kind = match n % 10 {
        0 => Kind::Connect,
        9 => Kind::Disconnect,
        k if k % 5 == 2 => Kind::AuthAttempt,
        k if k % 2 == 1 => Kind::Request,
        _ => Kind::Command,
    };
    let source = s % 5000;
    let mut e = Event::new(
        &format!("decky-{:03}", s % 64),
        ["ssh", "http", "smb", "rdp", "mysql"][s % 5],
        kind,
        Ipv4Addr::new(198, 51, (source / 250) as u8, (source % 250) as u8).into(),
        40_000 + (s % 20_000) as u16,
    );
    e.session = Some(SESSION.get());
    e.fields
        .insert("path".into(), json!(format!("/wp-login.php?id={}", n % 997)));
    e.fields
        .insert("user_agent".into(), json!("Mozilla/5.0 (compatible; scanner/1.0)"));
    e.fields.insert("attempt".into(), json!(n % 5));
    if kind == Kind::AuthAttempt {
        e.credential = Some(Credential::plaintext(
            Some("root"),
            format!("pass{}", n % 500).as_bytes(),
        ));
    }
    e
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // `bench_events ingest`: only the ingestion figure (for profiling).
    if std::env::args().nth(1).as_deref() == Some("ingest") {
        println!("{}", json!({ "ingest_per_s": ingest(dir.path()) }));
        return;
    }
    let file_per_s = file_sink(dir.path());
    // `bench_events file`: only the first figure (for profiling).
    if std::env::args().nth(1).as_deref() == Some("file") {
        println!("{}", json!({ "file_per_s": file_per_s }));
        return;
    }
    let ingest_per_s = ingest(dir.path());
    let sqlite_floor_per_s = bare_sqlite(dir.path());
    let latency = latency(&dir.path().join("latency"));
    println!(
        "{}",
        json!({
            "file_per_s": file_per_s,
            "ingest_per_s": ingest_per_s,
            "sqlite_floor_per_s": sqlite_floor_per_s,
            "latency_ms": latency,
            "latency_rate": RATE,
        })
    );
}

/// Format + write on this thread alone.
fn file_sink(dir: &std::path::Path) -> f64 {
    let config = FileLogConfig {
        dir: dir.join("file"),
        max_bytes: 4 * 1024 * 1024 * 1024,
        keep: 2,
    };
    let mut log = FileLog::open(&config, Arc::default()).unwrap();
    let events: Vec<Arc<Event>> = (0..1000).map(|n| Arc::new(event(n))).collect();
    let started = Instant::now();
    for _ in 0..FILE_EVENTS / events.len() {
        log.write_batch(&events).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    // Its gigabyte would otherwise be written back during the next figure.
    drop(log);
    std::fs::remove_dir_all(dir.join("file")).unwrap();
    settle();
    (FILE_EVENTS / events.len() * events.len()) as f64 / secs
}

/// Flushes dirty pages of the set-up, so that the kernel's writeback does
/// not run during (and count against) what is timed next.
fn settle() {
    let synced = std::process::Command::new("sync").status().unwrap();
    assert!(synced.success());
}

/// A decnet.json of `INGEST_EVENTS` distinct events, ingested from scratch.
fn ingest(dir: &std::path::Path) -> f64 {
    let logs = dir.join("ingest");
    let mut log = FileLog::open(&FileLogConfig::new(&logs), Arc::default()).unwrap();
    for chunk in (0..INGEST_EVENTS).collect::<Vec<_>>().chunks(1024) {
        let batch: Vec<Arc<Event>> = chunk.iter().map(|n| Arc::new(event(*n))).collect();
        log.write_batch(&batch).unwrap();
    }
    if std::env::var_os("SETUPONLY").is_some() {
        return 1.0;
    }
    drop(log);
    settle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open_sqlite(&dir.join("ingest.db")).await.unwrap();
        let mut ingester = Ingester::new(store.clone(), &logs);
        let started = Instant::now();
        let cpu = cpu_secs();
        let n = ingester.catch_up().await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        if std::env::var_os("CPU").is_some() {
            eprintln!("cpu {:.2}s wall {:.2}s", cpu_secs() - cpu, secs);
        }
        assert_eq!(n, INGEST_EVENTS);
        store.close().await;
        n as f64 / secs
    })
}

/// The peer: the same events stored the least SQLite can do it on this
/// machine (one table keyed by id, the JSON as the only other column,
/// batches as big as the ingester's in one transaction, WAL), for the ratio.
fn bare_sqlite(dir: &std::path::Path) -> f64 {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::{ConnectOptions, Connection, QueryBuilder};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut db = SqliteConnectOptions::new()
            .filename(dir.join("bare.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE e (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&mut db)
            .await
            .unwrap();
        let lines: Vec<(String, String)> = (0..INGEST_EVENTS)
            .map(|n| {
                let e = event(n);
                (e.id.to_string(), serde_json::to_string(&e).unwrap())
            })
            .collect();
        settle();
        let started = Instant::now();
        for batch in lines.chunks(decnet_store::ingest::BATCH_LINES) {
            let mut tx = db.begin().await.unwrap();
            for rows in batch.chunks(250) {
                let mut q = QueryBuilder::new("INSERT INTO e (id, body) ");
                q.push_values(rows, |mut b, (id, body)| {
                    b.push_bind(id.as_str()).push_bind(body.as_str());
                });
                q.build().execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        INGEST_EVENTS as f64 / started.elapsed().as_secs_f64()
    })
}

/// Emits at `RATE` events/s through the engine's path (pipeline → file log →
/// ingester → SQLite) and times each event from emit to commit. Events are
/// committed in emission order, so watching the ingester's counter tells
/// when each one landed (to within the 1 ms poll).
fn latency(dir: &std::path::Path) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pipeline = Pipeline::new();
        let counters = Arc::default();
        let file = FileLog::open(&FileLogConfig::new(dir), Arc::clone(&counters)).unwrap();
        let written = file.written();
        pipeline.add_sink_with_counters("file", file, 65_536, counters);
        let store = Store::open_sqlite(&dir.join("decnet.db")).await.unwrap();
        let ingester = Ingester::new(store.clone(), dir);
        let ingested = ingester.counters();
        let stop = CancellationToken::new();
        let task = tokio::spawn(ingester.run(written, stop.clone()));

        let total = (RATE * LATENCY_SECS) as usize;
        let emitter = pipeline.emitter();
        let emitting = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut sent = Vec::with_capacity(total);
            for n in 0..total {
                let due = started + Duration::from_secs_f64(n as f64 / RATE as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                sent.push(Instant::now());
                emitter.emit(event(n));
            }
            sent
        });
        let mut committed = Vec::with_capacity(total);
        while committed.len() < total {
            let now_done = ingested.ingested.load(Ordering::Relaxed) as usize;
            let at = Instant::now();
            while committed.len() < now_done.min(total) {
                committed.push(at);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let sent = emitting.await.unwrap();
        let mut ms: Vec<f64> = sent
            .iter()
            .zip(&committed)
            .map(|(s, c)| c.saturating_duration_since(*s).as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
        stop.cancel();
        task.await.unwrap();
        pipeline.shutdown().await;
        store.close().await;
        json!({ "p50": pct(0.50), "p99": pct(0.99), "max": ms[ms.len() - 1] })
    })
}

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
