//! Events: every attacker interaction becomes an [`Event`]. Emulators emit them
//! through an [`Emitter`]; the [`pipeline`] carries them to the sinks without
//! ever dropping one silently.

#![forbid(unsafe_code)]

mod event;
mod kind;
pub mod pipeline;

pub use event::{Credential, Event, Fields, SecretKind};
pub use kind::Kind;
pub use pipeline::{Emitter, Pipeline, PipelineStats};
