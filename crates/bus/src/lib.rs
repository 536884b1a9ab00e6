//! The bus: topic pub/sub with NATS-style wildcards. The engine publishes
//! every event and its derived facts (a session started, a credential was
//! captured …) on a [`Bus`]; intelligence workers, the API and
//! `decnet logs --follow` subscribe with [`topic::Pattern`]s, in process or,
//! through the [`broker`]'s UNIX socket, from other processes ([`client`]).
//!
//! A slow subscriber never slows a publisher: each subscription has a bounded
//! queue, and what does not fit is counted and reported to it as
//! [`Delivery::Lagged`], in the place where the gap is.

#![forbid(unsafe_code)]

pub mod broker;
mod bus;
pub mod client;
mod lines;
mod sink;
pub mod topic;
mod wire;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use broker::Broker;
pub use bus::{Bus, BusStats, Subscription};
pub use client::BusClient;
pub use sink::{BusSink, MAX_SEEN_IPS};
pub use topic::{Pattern, Topic, TopicError};

/// A published message. Subscribers share one copy of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// A valid topic (see [`Topic`]).
    pub topic: String,
    /// Any JSON; on `event.>` topics, a `decnet_events::Event`.
    pub payload: serde_json::Value,
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The next message, in publication order.
    Message(Arc<Message>),
    /// `missed` messages that matched were dropped here because the
    /// subscriber's queue was full.
    Lagged { missed: u64 },
}

/// Everything that can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A topic that is not valid, and why.
    #[error("bad topic {topic:?}: {reason}")]
    BadTopic { topic: String, reason: TopicError },
    /// A pattern that is not valid, and why.
    #[error("bad pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: TopicError },
    /// The broker could not create its socket.
    #[error("cannot listen on the bus socket {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No broker answers at `path`.
    #[error("cannot connect to the bus at {path}: {source}: is the engine running?")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An established connection to the broker failed.
    #[error("bus connection to {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The broker sent a line this client does not understand.
    #[error("the bus at {path} sent something unexpected: {reason}")]
    Protocol { path: PathBuf, reason: String },
    /// The broker answered a request with an error.
    #[error("the bus at {path} refused a request: {message}")]
    Refused { path: PathBuf, message: String },
    /// A message too large for one line of the socket protocol.
    #[error("the message is {got} bytes as JSON, more than the bus's limit of {limit}")]
    TooLarge { limit: usize, got: usize },
}
