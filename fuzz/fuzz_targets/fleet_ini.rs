//! Any text as a fleet file: parsing, reading and planning never panic.
#![no_main]

use decnet_core::fleet::{self, CliFleet, FleetRequest, PlanOptions};
use decnet_core::host::HostFacts;
use decnet_core::{Catalogue, ini};
use libfuzzer_sys::fuzz_target;

static CATALOGUE: std::sync::LazyLock<Catalogue> =
    std::sync::LazyLock::new(|| Catalogue::embedded().expect("the embedded catalogue loads"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let catalogue = &*CATALOGUE;
    if let Ok(doc) = ini::parse(text, "fuzz.ini")
        && let Ok(request) = FleetRequest::build(&CliFleet::default(), Some(&doc), catalogue)
    {
        let _ = fleet::plan(&request, catalogue, &HostFacts::default(), &PlanOptions::default());
    }
});
