//! What the control API says: engine and fleet status, deploy and teardown
//! reports. Shared by the engine and its clients (the CLI, later the REST API).

use std::net::Ipv4Addr;

use decnet_bus::BusStats;
use decnet_core::catalogue::Port;
use decnet_core::fleet::MacAddr;
use decnet_events::PipelineStats;
use decnet_store::IngestStats;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineStatus {
    /// Whether an engine answered (false: this is read from the state files).
    pub running: bool,
    pub pid: Option<u32>,
    pub version: String,
    pub uptime_secs: u64,
    pub prefix: String,
    pub interface: Option<String>,
    pub subnet: Option<String>,
    pub hairpin: Option<HairpinStatus>,
    pub events: PipelineStats,
    /// The bus's counters (`None` without an engine).
    #[serde(default)]
    pub bus: Option<BusStats>,
    /// The store's ingester (`None` without an engine, or if the store failed to open).
    #[serde(default)]
    pub store: Option<IngestStats>,
    pub deckies: Vec<DeckyStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HairpinStatus {
    pub name: String,
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeckyStatus {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub hostname: String,
    pub os_family: String,
    /// The OS personality; empty for a fleet deployed before personalities.
    #[serde(default)]
    pub personality: String,
    /// Whether its packets carry the personality (running deckies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shaping: Option<ShapingState>,
    pub distro: String,
    pub netns: String,
    #[serde(flatten)]
    pub state: DeckyState,
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ShapingState {
    Shaped,
    Unshaped { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeckyState {
    /// Namespace up, services bound.
    Running,
    /// It could not be built; the reason says why.
    Failed { reason: String },
    /// No engine runs; the namespace exists (its ports are closed).
    Stopped,
    /// No engine runs and the namespace is gone.
    Missing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub slug: String,
    /// The emulator serving it; `None`: no protocol emulator yet, so the ports
    /// accept, read and log, and answer nothing.
    pub emulator: Option<String>,
    pub ports: Vec<PortStatus>,
    pub connections: u64,
    pub active: u64,
    pub rejected: u64,
    pub events: u64,
    pub panics: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortStatus {
    pub port: Port,
    #[serde(flatten)]
    pub state: PortState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PortState {
    Listening,
    Failed { reason: String },
}

/// What a deploy did, per decky.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeployReport {
    pub created: Vec<String>,
    pub adopted: Vec<String>,
    pub recreated: Vec<String>,
    pub rebound: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    pub failed: Vec<Failure>,
    /// Problems that did not stop the deckies (the host hairpin could not be
    /// made, a host limit could not be raised …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub decky: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TeardownRequest {
    pub all: bool,
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TeardownReport {
    pub removed: Vec<String>,
    pub hairpin_removed: bool,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    /// `bad_input`: the request was wrong (exit 2); `runtime`: it failed.
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    BadInput,
    Runtime,
}
