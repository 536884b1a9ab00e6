//! End-to-end tests: the real `decnet` binary builds a lab LAN, deploys
//! deckies on it, and the tools an attacker uses (ping, nc, tftp, nmap …) run
//! against them from the lab's attacker namespace. Every test makes its own
//! lab with a unique prefix and removes it, even when it fails. They need
//! root; under `CI=true` a missing privilege fails instead of skipping.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a failure is the test failing.

mod support;

mod engine;
mod errors;
mod fingerprint;
mod fingerprint_check;
mod floods;
mod lifecycle;
mod p0f;
mod ssh;
mod ssh_peer;
mod store;
mod syslog;
mod telnet;
mod tftp;
