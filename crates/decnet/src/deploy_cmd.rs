//! `decnet deploy`: plan the fleet from flags or an INI file; with `--dry-run`,
//! print the plan and touch nothing; else hand it to the engine.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;

use decnet_core::fleet::{self, CliFleet, FleetRequest, FleetSpec, PlanOptions, SeedSource};
use decnet_core::host::HostFacts;
use decnet_core::persona::PersonaValue;
use decnet_core::seed::FleetSeed;
use decnet_core::{Catalogue, ini};
use decnet_engine::status::DeployReport;

use crate::BadInput;
use crate::catalogue_cmd::{self, ports};
use crate::cli::{DeployArgs, Global};
use crate::output::{Table, print_json};
use crate::{engine_cmd, status_cmd};

pub(crate) fn deploy(global: &Global, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let catalogue = catalogue_cmd::load(global)?;
    if args.dry_run {
        let seed = FleetSeed::read_installation(&global.state_dir)?;
        let spec = plan(
            args.fleet.config.as_deref(),
            &args.fleet_flags(),
            &catalogue,
            seed,
            Vec::new(),
        )?;
        warn(&spec);
        if args.json {
            print_json(&spec)?;
        } else {
            print_plan(&spec, global)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config = global.engine_config()?;
    decnet_net::require_network_admin()?;
    let seed = FleetSeed::ensure_installation(&global.state_dir)?;
    let spec = plan(
        args.fleet.config.as_deref(),
        &args.fleet_flags(),
        &catalogue,
        Some(seed),
        Vec::new(),
    )?;
    warn(&spec);
    let (report, status) = engine_cmd::deploy(global, &config, &spec)?;
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report)?;
        status_cmd::print_status(&status)?;
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// INI (if any) + flags → a resolved fleet.
pub(crate) fn plan(
    config: Option<&Path>,
    flags: &CliFleet,
    catalogue: &Catalogue,
    installation_seed: Option<FleetSeed>,
    reserved: Vec<Ipv4Addr>,
) -> anyhow::Result<FleetSpec> {
    let doc = match config {
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| BadInput(format!("{name}: cannot read: {e}")))?;
            Some(ini::parse(&text, &name)?)
        }
        None => None,
    };
    plan_document(doc.as_ref(), flags, catalogue, installation_seed, reserved)
}

/// A parsed INI document (if any) + flags → a resolved fleet.
pub(crate) fn plan_document(
    doc: Option<&ini::IniDocument>,
    flags: &CliFleet,
    catalogue: &Catalogue,
    installation_seed: Option<FleetSeed>,
    reserved: Vec<Ipv4Addr>,
) -> anyhow::Result<FleetSpec> {
    let request = FleetRequest::build(flags, doc, catalogue)?;
    let options = PlanOptions {
        installation_seed,
        reserved,
    };
    Ok(fleet::plan(&request, catalogue, &HostFacts::detect(), &options)?)
}

pub(crate) fn warn(spec: &FleetSpec) {
    for warning in &spec.warnings {
        eprintln!("warning: {warning}");
    }
}

pub(crate) fn print_report(report: &DeployReport) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    let parts = [
        ("created", report.created.len()),
        ("adopted", report.adopted.len()),
        ("recreated", report.recreated.len()),
        ("re-bound", report.rebound.len()),
        ("removed", report.removed.len()),
        ("unchanged", report.unchanged.len()),
        ("failed", report.failed.len()),
    ];
    let summary: Vec<String> = parts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(w, n)| format!("{n} {w}"))
        .collect();
    writeln!(
        out,
        "Deployed: {}",
        if summary.is_empty() {
            "nothing to do".into()
        } else {
            summary.join(", ")
        }
    )?;
    for failure in &report.failed {
        writeln!(out, "  {}: {}", failure.decky, failure.reason)?;
    }
    for warning in &report.warnings {
        writeln!(out, "  warning: {warning}")?;
    }
    writeln!(out)?;
    Ok(())
}

fn print_plan(spec: &FleetSpec, global: &Global) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "Fleet: {} deckies on {} (gateway {}, interface {}, {}, {})",
        spec.deckies.len(),
        spec.subnet,
        spec.gateway,
        spec.interface.as_deref().unwrap_or("-"),
        spec.driver,
        spec.mode
    )?;
    if let Some(target) = &spec.log_target {
        writeln!(out, "Syslog: {target}")?;
    }
    if spec.seed_source == SeedSource::Placeholder {
        writeln!(
            out,
            "Seed: none yet ({} has no fleet.seed): MACs, hostnames and seeded choices below are placeholders; \
             the first deploy creates a random seed (pin one with --seed)",
            global.state_dir.display()
        )?;
    }
    writeln!(out)?;
    let mut table = Table::new(vec!["NAME", "IP", "MAC", "HOSTNAME", "DISTRO", "OS", "SERVICES"]);
    for d in &spec.deckies {
        let services: Vec<String> = d
            .services
            .iter()
            .map(|s| format!("{}({})", s.slug, ports(&s.ports)))
            .collect();
        table.row(vec![
            d.name.clone(),
            d.ip.to_string(),
            d.mac.to_string(),
            d.hostname.clone(),
            d.distro.clone(),
            d.os_family.clone(),
            services.join(" "),
        ]);
    }
    table.print(&mut out)?;
    writeln!(out)?;
    let mut personas = Table::new(vec!["DECKY", "SERVICE", "PERSONA"]);
    for d in &spec.deckies {
        for s in &d.services {
            let config: Vec<String> = s.persona.iter().map(|(k, v)| format!("{k}={}", quoted(v))).collect();
            let mut text = config.join(" ");
            if let Some(custom) = &s.custom {
                text = format!("image={} exec={:?} {text}", custom.image, custom.exec.join(" "));
            }
            personas.row(vec![d.name.clone(), s.slug.clone(), text]);
        }
    }
    personas.print(&mut out)?;
    Ok(())
}

fn quoted(value: &PersonaValue) -> String {
    let text = value.display();
    if text.is_empty() || text.contains([' ', '"', '\n']) {
        format!("{text:?}")
    } else {
        text
    }
}
