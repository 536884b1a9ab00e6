//! The emulators this engine can run, by service slug. Services without one
//! are served by the fallback (accept, read, log, close).

use std::collections::BTreeMap;
use std::sync::Arc;

use decnet_emu_sdk::Emulator;

#[derive(Default, Clone)]
pub struct Registry {
    emulators: BTreeMap<&'static str, Arc<dyn Emulator>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, emulator: Arc<dyn Emulator>) {
        self.emulators.insert(emulator.slug(), emulator);
    }

    pub fn get(&self, slug: &str) -> Option<Arc<dyn Emulator>> {
        self.emulators.get(slug).cloned()
    }

    /// Slugs that have a protocol emulator.
    pub fn slugs(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.emulators.keys().copied()
    }
}
