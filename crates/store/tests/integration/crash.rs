//! `kill -9` at random moments: this test binary runs itself as the child
//! that ingests, kills it several times, and checks that after a last catch-up
//! every logged event is stored exactly once, with the aggregates a clean
//! ingest gives.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use decnet_store::{Ingester, Store};

use crate::util::{aggregates, file_log, open, workload, write};

const CHILD: &str = "DECNET_STORE_CRASH_CHILD";

/// The child: ingests the log in `$DECNET_STORE_CRASH_CHILD` until done or
/// killed. Without the variable (a normal test run) it does nothing.
#[tokio::test]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD).map(PathBuf::from) else {
        return;
    };
    let store = Store::open_sqlite(&dir.join("decnet.db")).await.unwrap();
    Ingester::new(store, &dir.join("log")).catch_up().await.unwrap();
}

fn spawn_child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["crash::crash_child", "--exact", "--test-threads=1"])
        .env(CHILD, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn killed_at_random_moments_it_stores_every_event_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Enough for several of the ingester's transactions (up to
    // `BATCH_LINES` each), so a kill can land between two of them.
    let events = workload(6 * decnet_store::ingest::BATCH_LINES as u64);
    let mut log = file_log(&dir.path().join("log"), 4 << 20);
    for batch in events.chunks(100) {
        write(&mut log, batch);
    }
    drop(log);

    let started = Instant::now();
    let clean = runtime.block_on(async {
        let clean = open(dir.path(), "clean.db").await;
        for chunk in events.chunks(5000) {
            clean.ingest(chunk, None).await.unwrap();
        }
        clean
    });
    let window = started.elapsed().as_millis() as u64 + 50;

    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}, window {window} ms");
    let mut midway = 0;
    let mut stored = 0;
    for _ in 0..6 {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = spawn_child(dir.path());
        // Somewhere in the time the rest of the log takes (plus start-up).
        let delay = 10 + seed % (50 + window * (events.len() as u64 - stored) / events.len() as u64);
        std::thread::sleep(Duration::from_millis(delay));
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        stored = runtime.block_on(async {
            match Store::open_sqlite_read_only(&dir.path().join("decnet.db")).await {
                Ok(store) => store.count_events().await.unwrap(),
                Err(_) => 0, // killed before the schema was in place
            }
        });
        eprintln!("after {delay} ms: killed {killed}, {stored} events stored");
        midway += usize::from(killed && stored > 0 && stored < events.len() as u64);
    }
    assert!(midway > 0, "no child was killed midway through the log");

    runtime.block_on(async {
        let store = open(dir.path(), "decnet.db").await;
        Ingester::new(store.clone(), &dir.path().join("log"))
            .catch_up()
            .await
            .unwrap();
        let expected: Vec<_> = events.iter().map(|e| e.id).collect();
        let stored = store.event_ids().await.unwrap();
        if stored != expected {
            let position = |id| expected.iter().position(|e| *e == id);
            let first = stored.iter().zip(&expected).position(|(a, b)| a != b);
            panic!(
                "{} stored, {} logged; first difference at {first:?}: stored {:?} is logged at {:?}",
                stored.len(),
                expected.len(),
                first.map(|i| stored[i]),
                first.map(|i| position(stored[i])),
            );
        }
        assert_eq!(aggregates(&store).await, aggregates(&clean).await);
    });
}
