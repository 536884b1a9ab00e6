//! The control API in-process, on a UNIX socket in a temporary directory: big
//! deploy requests are read whole, and the engine re-checks a fleet it is
//! given before touching anything. Needs no root (nothing reaches the network).

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a failure is the test failing.

use std::sync::Arc;

use decnet_core::Catalogue;
use decnet_core::fleet::{self, CliFleet, FleetRequest, FleetSpec, PlanOptions};
use decnet_core::host::HostFacts;
use decnet_emu_sdk::Limits;
use decnet_engine::{Engine, EngineConfig, Registry, control};
use decnet_events::Emitter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

fn fleet(n: u32) -> FleetSpec {
    let cat = Catalogue::embedded().unwrap();
    let flags = CliFleet {
        deckies: Some(n),
        services: Some("ssh,http".into()),
        subnet: Some("10.0.0.0/16".into()),
        interface: Some("nosuch0".into()),
        seed: Some("s".into()),
        ..CliFleet::default()
    };
    let request = FleetRequest::build(&flags, None, &cat).unwrap();
    fleet::plan(&request, &cat, &HostFacts::default(), &PlanOptions::default()).unwrap()
}

/// An engine serving the control API at `<dir>/engine.sock`.
fn serve(dir: &std::path::Path) -> std::path::PathBuf {
    let config = EngineConfig {
        state_dir: dir.join("state"),
        run_dir: dir.join("run"),
        log_dir: dir.join("log"),
        prefix: "dtc".into(),
    };
    let (emitter, _events) = Emitter::channel(16);
    let engine = Arc::new(Engine::new(config, Registry::new(), emitter, Limits::default()));
    let socket = dir.join("engine.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        axum::serve(listener, control::router(engine, CancellationToken::new()))
            .await
            .unwrap()
    });
    socket
}

/// POSTs `body` to `path`; returns the status code and the body.
async fn post(socket: &std::path::Path, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn big_fleets_are_read_and_rechecked_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = serve(dir.path());
    let mut spec = fleet(3);
    spec.deckies[2].name = spec.deckies[0].name.clone();
    let mut body = serde_json::to_vec(&spec).unwrap();
    // Well past axum's default limit of 2 MB (as a fleet of thousands is).
    body.resize(5 * 1024 * 1024, b' ');
    let (status, answer) = post(&socket, "/v1/deploy", &body).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("two deckies are named `decky-01`"), "{answer}");

    let mut spec = fleet(3);
    spec.deckies[1].ip = spec.deckies[0].ip;
    let (status, answer) = post(&socket, "/v1/deploy", &serde_json::to_vec(&spec).unwrap()).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("both have address"), "{answer}");

    let mut spec = fleet(3);
    spec.deckies[2].mac = spec.deckies[1].mac;
    let (status, answer) = post(&socket, "/v1/deploy", &serde_json::to_vec(&spec).unwrap()).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("both have MAC"), "{answer}");
    assert!(!dir.path().join("state/fleet.json").exists(), "nothing may be saved");
}
