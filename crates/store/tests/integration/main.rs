//! The store's integration tests: real SQLite files in temporary directories.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a failure is the test failing.

mod crash;
mod ingester;
mod store;
mod util;
