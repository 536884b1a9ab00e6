//! What the engine tells others about itself: on the bus, `decky.{name}.state`
//! when a decky appears, changes state or goes away, and
//! `system.engine.health` every few seconds; in the store, the fleet as it
//! is. Watching the status from outside the deploy path keeps the engine's
//! core free of bus and store calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::{Bus, topic};
use decnet_store::{FleetDecky, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Engine;
use crate::status::{DeckyState, DeckyStatus};

/// How often decky states are compared.
const WATCH: Duration = Duration::from_secs(1);
/// How often health is published (in watch ticks).
const HEALTH_EVERY: u32 = 10;

/// Publishes until `shutdown`.
pub(crate) async fn run(engine: Arc<Engine>, bus: Bus, store: Option<Store>, shutdown: CancellationToken) {
    let mut known: BTreeMap<String, DeckyState> = BTreeMap::new();
    // The fleet as last written to the store.
    let mut stored: Option<Vec<FleetDecky>> = None;
    let mut tick = tokio::time::interval(WATCH);
    let mut ticks: u32 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let status = engine.status().await;
        let mut seen = BTreeMap::new();
        for decky in &status.deckies {
            if known.get(&decky.name) != Some(&decky.state) {
                // `{"state": "running"}` or `{"state": "failed", "reason": …}`, with who.
                let mut payload = serde_json::to_value(&decky.state).unwrap_or_default();
                payload["decky"] = json!(decky.name);
                payload["ip"] = json!(decky.ip);
                payload["mac"] = json!(decky.mac);
                bus.publish(topic::decky_state(&decky.name).as_str(), payload);
            }
            seen.insert(decky.name.clone(), decky.state.clone());
        }
        for gone in known.keys().filter(|name| !seen.contains_key(*name)) {
            bus.publish(
                topic::decky_state(gone).as_str(),
                json!({ "decky": gone, "state": "removed" }),
            );
        }
        let fleet: Vec<FleetDecky> = status.deckies.iter().map(fleet_decky).collect();
        if let Some(store) = &store
            && stored.as_ref() != Some(&fleet)
        {
            match store.sync_fleet(&fleet).await {
                Ok(()) => stored = Some(fleet),
                // Tried again next tick.
                Err(error) => tracing::warn!(message = "Recording the fleet in the store failed.", %error),
            }
        }
        known = seen;
        if ticks.is_multiple_of(HEALTH_EVERY) {
            let running = status.deckies.iter().filter(|d| d.state == DeckyState::Running).count();
            bus.publish(
                topic::system_health("engine").as_str(),
                json!({
                    "pid": status.pid,
                    "uptime_secs": status.uptime_secs,
                    "deckies": status.deckies.len(),
                    "running": running,
                    "events": status.events,
                    "bus": bus.stats(),
                }),
            );
        }
        ticks = ticks.wrapping_add(1);
    }
}

fn fleet_decky(d: &DeckyStatus) -> FleetDecky {
    FleetDecky {
        name: d.name.clone(),
        ip: d.ip.into(),
        mac: d.mac.to_string(),
        hostname: d.hostname.clone(),
        distro: d.distro.clone(),
        os_family: d.os_family.clone(),
        services: d.services.iter().map(|s| s.slug.clone()).collect(),
    }
}
