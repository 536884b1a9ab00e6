//! The DECNET engine: one long-running process that builds every decky's
//! network, hosts their services, persists the desired fleet, converges to it
//! (on deploy, teardown and start-up, adopting what survived a crash), and
//! answers the control API on a UNIX socket.

#![forbid(unsafe_code)]

mod announce;
pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
mod engine;
mod fallback;
pub mod hosting;
pub mod lab;
pub mod offline;
pub mod reconcile;
pub mod registry;
pub mod run;
pub mod sinks;
pub mod state;
pub mod status;

pub use client::{ClientError, EngineClient};
pub use config::{DEFAULT_PREFIX, EngineConfig};
pub use engine::{Engine, EngineError};
pub use registry::Registry;
