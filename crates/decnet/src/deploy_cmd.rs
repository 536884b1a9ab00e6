//! `decnet deploy`: plan the fleet from flags or an INI file; with `--dry-run`,
//! print the plan and touch nothing.

use std::io::{self, Write};
use std::process::ExitCode;

use decnet_core::fleet::{self, FleetRequest, FleetSpec, PlanOptions, SeedSource};
use decnet_core::host::HostFacts;
use decnet_core::persona::PersonaValue;
use decnet_core::seed::FleetSeed;
use decnet_core::{Catalogue, ini};

use crate::BadInput;
use crate::catalogue_cmd::{self, ports};
use crate::cli::{DeployArgs, Global};
use crate::output::{Table, print_json};

pub(crate) fn deploy(global: &Global, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let catalogue = catalogue_cmd::load(global)?;
    let spec = plan(global, args, &catalogue)?;
    for warning in &spec.warnings {
        eprintln!("warning: {warning}");
    }
    if !args.dry_run {
        anyhow::bail!(
            "deploying needs the decky engine, which this build does not include yet; use --dry-run to see the plan"
        );
    }
    if args.json {
        print_json(&spec)?;
    } else {
        print_plan(&spec, global)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags (+ INI) → request → resolved fleet.
pub(crate) fn plan(global: &Global, args: &DeployArgs, catalogue: &Catalogue) -> anyhow::Result<FleetSpec> {
    let doc = match &args.config {
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| BadInput(format!("{name}: cannot read: {e}")))?;
            Some(ini::parse(&text, &name)?)
        }
        None => None,
    };
    let request = FleetRequest::build(&args.fleet_flags(), doc.as_ref(), catalogue)?;
    let options = PlanOptions {
        installation_seed: FleetSeed::read_installation(&global.state_dir)?,
        reserved: Vec::new(),
    };
    Ok(fleet::plan(&request, catalogue, &HostFacts::detect(), &options)?)
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
