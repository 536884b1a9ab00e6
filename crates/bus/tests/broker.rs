//! The broker over real UNIX sockets in a temporary directory.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a failure is the test failing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use decnet_bus::broker::Limits;
use decnet_bus::{Broker, Bus, BusClient, BusError, Delivery};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(10);

/// A broker running on a socket in its own temporary directory.
struct Running {
    _dir: tempfile::TempDir,
    path: PathBuf,
    bus: Bus,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    async fn start(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.sock");
        let bus = Bus::new();
        let broker = Broker::bind(bus.clone(), &path).await.unwrap().with_limits(limits);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(broker.run(async {
            let _ = stopped.await;
        }));
        Self {
            _dir: dir,
            path,
            bus,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        timeout(PATIENCE, &mut self.task).await.unwrap().unwrap();
    }

    /// Requests are not acknowledged: wait until the broker has subscribed.
    async fn wait_for_subscribers(&self, n: usize) {
        let started = Instant::now();
        while self.bus.stats().subscribers != n {
            assert!(started.elapsed() < PATIENCE, "no subscription after {PATIENCE:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn next(client: &mut BusClient) -> Delivery {
    timeout(PATIENCE, client.next()).await.unwrap().unwrap().unwrap()
}

fn topic_and_payload(delivery: Delivery) -> (String, Value) {
    match delivery {
        Delivery::Message(m) => (m.topic.clone(), m.payload.clone()),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A raw connection, for what `BusClient` would never send.
struct Raw {
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Raw {
    async fn connect(path: &Path) -> Self {
        let (read, write) = UnixStream::connect(path).await.unwrap().into_split();
        Self {
            read: BufReader::new(read),
            write,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    async fn reply(&mut self) -> Value {
        let mut line = String::new();
        timeout(PATIENCE, self.read.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

#[tokio::test]
async fn clients_subscribe_and_publish_through_the_socket() {
    let broker = Running::start(Limits::default()).await;
    let mode = std::fs::metadata(&broker.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);

    let mut follower = BusClient::connect(&broker.path).await.unwrap();
    follower.subscribe("event.*.ssh.>").await.unwrap();
    broker.wait_for_subscribers(1).await;

    broker.bus.publish("event.d1.ssh.connect", json!({"n": 1}));
    broker.bus.publish("event.d1.http.request", json!({"n": 2}));
    let mut publisher = BusClient::connect(&broker.path).await.unwrap();
    publisher.publish("attacker.observed", json!({"n": 3})).await.unwrap();
    publisher
        .publish("event.d2.ssh.auth_attempt", json!({"n": 4}))
        .await
        .unwrap();

    assert_eq!(
        topic_and_payload(next(&mut follower).await),
        ("event.d1.ssh.connect".to_string(), json!({"n": 1}))
    );
    assert_eq!(
        topic_and_payload(next(&mut follower).await),
        ("event.d2.ssh.auth_attempt".to_string(), json!({"n": 4}))
    );

    // Unsubscribing stops deliveries; a second pattern adds to the first.
    follower.subscribe("attacker.>").await.unwrap();
    follower.unsubscribe("event.*.ssh.>").await.unwrap();
    publisher.publish("attacker.observed", json!({"n": 5})).await.unwrap();
    publisher
        .publish("event.d2.ssh.command", json!({"n": 6}))
        .await
        .unwrap();
    publisher
        .publish("attacker.session.started", json!({"n": 7}))
        .await
        .unwrap();
    assert_eq!(topic_and_payload(next(&mut follower).await).1, json!({"n": 5}));
    assert_eq!(topic_and_payload(next(&mut follower).await).1, json!({"n": 7}));

    // Bad input is refused by the client before it is sent.
    assert!(matches!(
        follower.subscribe("a.>.b").await,
        Err(BusError::BadPattern { .. })
    ));
    assert!(matches!(
        publisher.publish("a.*", json!(null)).await,
        Err(BusError::BadTopic { .. })
    ));

    let path = broker.path.clone();
    broker.stop().await;
    assert!(!path.exists(), "the socket file outlived the broker");
    assert!(timeout(PATIENCE, follower.next()).await.unwrap().unwrap().is_none());
}

#[tokio::test]
async fn bad_requests_get_an_error_and_the_connection_goes_on() {
    let broker = Running::start(Limits::default()).await;
    let mut raw = Raw::connect(&broker.path).await;

    raw.send(b"{this is not json\n").await;
    let reply = raw.reply().await;
    assert_eq!(reply["op"], "error");
    assert!(
        reply["message"].as_str().unwrap().starts_with("malformed request"),
        "{reply}"
    );

    raw.send(br#"{"op":"dance"}"#).await;
    raw.send(b"\n\n").await;
    assert_eq!(raw.reply().await["op"], "error");

    raw.send(br#"{"op":"pub","topic":"a..b","payload":1}"#).await;
    raw.send(b"\n").await;
    let reply = raw.reply().await;
    assert_eq!(
        reply["message"],
        "bad topic \"a..b\": token 2 is empty (two dots in a row, or a dot at an end)"
    );

    // Over 1 MiB without a newline: refused, skipped, and the next line works.
    let mut long = br#"{"op":"pub","topic":"x","payload":""#.to_vec();
    long.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    long.extend(b"\"}\n");
    raw.send(&long).await;
    let reply = raw.reply().await;
    assert_eq!(reply["op"], "error");
    assert!(reply["message"].as_str().unwrap().contains("longer than"), "{reply}");

    raw.send(b"{\"op\":\"sub\",\"pattern\":\"t.*\"}\r\n").await;
    broker.wait_for_subscribers(1).await;
    broker.bus.publish("t.x", json!([1, 2]));
    assert_eq!(
        raw.reply().await,
        json!({"op": "msg", "topic": "t.x", "payload": [1, 2]})
    );

    // A BusClient is told about refusals too, and carries on.
    let mut client = BusClient::connect(&broker.path).await.unwrap();
    client
        .publish("t.y", json!({"big": "x".repeat(2 * 1024 * 1024)}))
        .await
        .unwrap_err();
    client.unsubscribe("never.subscribed").await.unwrap();
    client.subscribe("t.>").await.unwrap();
    broker.wait_for_subscribers(2).await;
    client.publish("t.y", json!("ok")).await.unwrap();
    assert_eq!(topic_and_payload(next(&mut client).await).1, json!("ok"));
    assert_eq!(raw.reply().await["payload"], "ok");
    broker.stop().await;
}

// Several threads, so the broker really runs while we publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_lags_without_blocking_publishers() {
    let broker = Running::start(Limits::default()).await;
    let mut client = BusClient::connect(&broker.path).await.unwrap();
    client.subscribe(">").await.unwrap();
    broker.wait_for_subscribers(1).await;

    const COUNT: u64 = 100_000;
    let started = Instant::now();
    for n in 0..COUNT {
        broker.bus.publish("event.d1.ssh.command", json!(n));
    }
    assert!(started.elapsed() < PATIENCE, "publishing took {:?}", started.elapsed());

    // Everything is either received, in order, or reported missed.
    let (mut received, mut missed, mut lag_notices) = (0u64, 0u64, 0u64);
    let mut last: Option<u64> = None;
    while received + missed < COUNT {
        match next(&mut client).await {
            Delivery::Message(m) => {
                let n = m.payload.as_u64().unwrap();
                assert!(last.is_none_or(|last| n > last), "{n} after {last:?}");
                last = Some(n);
                received += 1;
            }
            Delivery::Lagged { missed: m } => {
                missed += m;
                lag_notices += 1;
            }
        }
    }
    assert_eq!(received + missed, COUNT);
    assert!(lag_notices >= 1 && missed > 0, "received {received}, missed {missed}");
    assert_eq!(broker.bus.stats().lagged, missed);
    broker.stop().await;
}

#[tokio::test]
async fn clients_and_their_patterns_are_limited() {
    let limits = Limits {
        max_clients: 1,
        max_patterns: 2,
        ..Limits::default()
    };
    let broker = Running::start(limits).await;
    let mut first = BusClient::connect(&broker.path).await.unwrap();
    first.subscribe("a.>").await.unwrap();
    broker.wait_for_subscribers(1).await;

    let mut second = BusClient::connect(&broker.path).await.unwrap();
    match timeout(PATIENCE, second.next()).await.unwrap() {
        Err(BusError::Refused { message, .. }) => assert_eq!(message, "too many clients (limit 1)"),
        other => panic!("{other:?}"),
    }

    first.subscribe("b.>").await.unwrap();
    first.subscribe("a.>").await.unwrap(); // already there: no new pattern
    first.subscribe("c.>").await.unwrap();
    match timeout(PATIENCE, first.next()).await.unwrap() {
        Err(err @ BusError::Refused { .. }) => {
            assert!(
                err.to_string()
                    .ends_with("refused a request: too many subscriptions (limit 2)"),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
    broker.bus.publish("c.x", json!(1));
    broker.bus.publish("b.x", json!(2));
    assert_eq!(topic_and_payload(next(&mut first).await).1, json!(2));
    broker.stop().await;
}

#[tokio::test]
async fn binding_replaces_a_stale_socket_but_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sock");

    // A stale socket, as a crash leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let broker = Broker::bind(Bus::new(), &path).await.unwrap();

    // A live one is another engine's.
    match Broker::bind(Bus::new(), &path).await {
        Err(err @ BusError::Listen { .. }) => assert!(err.to_string().contains("another engine"), "{err}"),
        other => panic!("{other:?}"),
    }
    drop(broker);
    assert!(!path.exists());

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    assert!(Broker::bind(Bus::new(), &file).await.is_err());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[tokio::test]
async fn connecting_to_no_broker_says_where_and_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sock");
    let err = BusClient::connect(&path).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot connect to the bus at {}: ", path.display())),
        "{text}"
    );
    assert!(text.ends_with(": is the engine running?"), "{text}");
}
