//! The ingester against logs written by the real file sink.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use decnet_events::Event;
use decnet_events::file::JSON_LOG;
use decnet_store::Ingester;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::util::{file_log, open, workload, write};

fn ids(events: &[Event]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

fn append(dir: &std::path::Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(dir.join(JSON_LOG)).unwrap();
    f.write_all(bytes).unwrap();
}

#[tokio::test]
async fn follows_the_log_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    let store = open(dir.path(), "decnet.db").await;
    let mut ingester = Ingester::new(store.clone(), &logs);
    assert_eq!(ingester.catch_up().await.unwrap(), 0, "no log yet");

    // About 30 events per file, so each round below rotates several times.
    let mut log = file_log(&logs, 16 * 1024);
    let events = workload(1500);
    let mut written = 0;
    for (round, chunk) in events.chunks(150).enumerate() {
        for batch in chunk.chunks(7) {
            write(&mut log, batch);
        }
        written += chunk.len();
        if round % 2 == 1 {
            ingester.catch_up().await.unwrap();
            assert_eq!(store.count_events().await.unwrap(), written as u64);
        }
    }
    assert!(logs.join(format!("{JSON_LOG}.7")).exists());
    ingester.catch_up().await.unwrap();
    assert_eq!(store.event_ids().await.unwrap(), ids(&events));
    let stats = ingester.counters().stats();
    assert_eq!((stats.ingested, stats.skipped_lines, stats.lag_bytes), (1500, 0, 0));
}

#[tokio::test]
async fn a_partial_line_waits_and_an_invalid_one_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let events = workload(4);
    let mut log = file_log(dir.path(), 1 << 20);
    write(&mut log, &events[..1]);
    // A line torn by a crash, completed with a newline on restart.
    append(dir.path(), b"{\"id\":\"0190\n");
    write(&mut log, &events[1..2]);
    let line = serde_json::to_string(&events[2]).unwrap();
    let (head, tail) = line.split_at(line.len() / 2);
    append(dir.path(), head.as_bytes());

    let mut ingester = Ingester::new(store.clone(), dir.path());
    assert_eq!(ingester.catch_up().await.unwrap(), 2);
    assert_eq!(ingester.counters().stats().skipped_lines, 1);
    assert!(ingester.counters().stats().lag_bytes > 0);
    assert_eq!(ingester.catch_up().await.unwrap(), 0);

    append(dir.path(), format!("{tail}\n").as_bytes());
    assert_eq!(ingester.catch_up().await.unwrap(), 1);
    assert_eq!(store.event_ids().await.unwrap(), ids(&events[..3]));
    assert_eq!(ingester.counters().stats().skipped_lines, 1);

    // A new ingester resumes from the stored offset: the invalid line before
    // it is not read (or counted) again.
    drop(log);
    let mut log = file_log(dir.path(), 1 << 20);
    write(&mut log, &events[3..]);
    let mut restarted = Ingester::new(store.clone(), dir.path());
    assert_eq!(restarted.catch_up().await.unwrap(), 1);
    let stats = restarted.counters().stats();
    assert_eq!((stats.ingested, stats.skipped_lines, stats.batches), (1, 0, 1));
    assert_eq!(store.event_ids().await.unwrap(), ids(&events));
}

#[tokio::test]
async fn a_restart_after_rotation_finishes_the_rotated_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let events = workload(200);
    let mut log = file_log(dir.path(), 16 * 1024);
    write(&mut log, &events[..10]);
    Ingester::new(store.clone(), dir.path()).catch_up().await.unwrap();
    // decnet.json, partly ingested, becomes decnet.json.N; newer files follow.
    for batch in events[10..].chunks(10) {
        write(&mut log, batch);
    }
    assert!(dir.path().join(format!("{JSON_LOG}.3")).exists());
    let mut ingester = Ingester::new(store.clone(), dir.path());
    assert_eq!(ingester.catch_up().await.unwrap(), 190);
    assert_eq!(store.event_ids().await.unwrap(), ids(&events));
}

#[tokio::test]
async fn a_file_rotated_away_entirely_is_reported_and_the_rest_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let events = workload(2000);
    let mut log = file_log(dir.path(), 16 * 1024);
    write(&mut log, &events[..10]);
    let mut ingester = Ingester::new(store.clone(), dir.path());
    ingester.catch_up().await.unwrap();
    // Far more than 7 rotations: the file ingestion was in is deleted.
    for batch in events[10..].chunks(10) {
        write(&mut log, batch);
    }
    let kept: Vec<Event> = (1..=7)
        .rev()
        .map(|n| dir.path().join(format!("{JSON_LOG}.{n}")))
        .chain([dir.path().join(JSON_LOG)])
        .flat_map(|p| {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Event>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(kept.len() < 1990);
    ingester.catch_up().await.unwrap();
    let mut expected = ids(&events[..10]);
    expected.extend(ids(&kept));
    assert_eq!(store.event_ids().await.unwrap(), expected);
}

#[tokio::test]
async fn run_ingests_on_wake_and_finishes_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let mut log = file_log(dir.path(), 1 << 20);
    let events = workload(300);
    let ingester = Ingester::new(store.clone(), dir.path());
    let counters = ingester.counters();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ingester.run(log.written(), shutdown.clone()));

    write(&mut log, &events[..100]);
    log.written().notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counters.stats().ingested < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ingested: {:?}",
            counters.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Written just before shutdown: the last catch-up takes it.
    write(&mut log, &events[100..]);
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(store.event_ids().await.unwrap(), ids(&events));
    assert_eq!(Arc::strong_count(&counters), 1);
}
