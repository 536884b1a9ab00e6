//! Events: every attacker interaction becomes an [`Event`]. Emulators emit them
//! through an [`Emitter`]; the [`pipeline`] carries them to the sinks — the
//! local log ([`file`]), remote syslog ([`syslog`]), the bus — without ever
//! dropping one silently. [`rfc5424`] is the line format of the logs.

#![forbid(unsafe_code)]

mod event;
pub mod file;
pub mod json;
mod kind;
pub mod pipeline;
pub mod rfc5424;
mod spool;
pub mod syslog;

pub use event::{Credential, Event, Fields, Outcome, SecretKind, Severity, limits};
pub use kind::{Kind, UnknownKind};
pub use pipeline::{Emitter, Pipeline, PipelineStats, Sink, SinkCounters, SinkStats};
pub use spool::Spool;
