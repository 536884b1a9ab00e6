//! `decnet services | distros | archetypes | personalities`: the persona catalogue as tables or JSON.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use decnet_core::Catalogue;
use decnet_core::catalogue::Port;

use crate::cli::{Global, ListArgs};
use crate::output::{Table, print_json};

/// The catalogue built into the binary, or the one in `--personas DIR`.
pub(crate) fn load(global: &Global) -> anyhow::Result<Catalogue> {
    match &global.personas {
        Some(dir) => Catalogue::load_dir(dir).with_context(|| format!("loading personas from {}", dir.display())),
        None => Ok(Catalogue::embedded()?),
    }
}

pub(crate) fn services(global: &Global, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let catalogue = load(global)?;
    if args.json {
        print_json(&catalogue.services().collect::<Vec<_>>())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(vec!["SLUG", "PORTS", "PERSONA KEYS", "DESCRIPTION"]);
    for s in catalogue.services() {
        let keys: Vec<&str> = s.keys.keys().map(String::as_str).collect();
        table.row(vec![
            s.slug.clone(),
            ports(&s.ports),
            keys.join(","),
            s.description.clone(),
        ]);
    }
    table.print(&mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn distros(global: &Global, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let catalogue = load(global)?;
    if args.json {
        print_json(&catalogue.distros())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(vec!["SLUG", "DISPLAY NAME", "KERNEL", "SHELL", "HOSTNAMES", "IMAGE"]);
    for d in catalogue.distros() {
        let style = catalogue
            .hostname_style(&d.hostname_style)
            .map_or("", |s| s.pattern.as_str());
        table.row(vec![
            d.slug.clone(),
            d.display_name.clone(),
            d.kernel.release.clone(),
            d.shell.clone(),
            style.to_string(),
            d.image.clone(),
        ]);
    }
    table.print(&mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn archetypes(global: &Global, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let catalogue = load(global)?;
    if args.json {
        print_json(&catalogue.archetypes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(vec!["SLUG", "SERVICES", "OS FAMILY", "DISTROS", "DESCRIPTION"]);
    for a in catalogue.archetypes() {
        table.row(vec![
            a.slug.clone(),
            a.services.join(","),
            a.os_family.clone(),
            a.distros.join(","),
            a.description.clone(),
        ]);
    }
    let mut out = io::stdout().lock();
    table.print(&mut out)?;
    writeln!(out)?;
    writeln!(
        out,
        "OS families: {}",
        catalogue
            .families()
            .map(|f| f.slug.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn personalities(global: &Global, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let catalogue = load(global)?;
    if args.json {
        print_json(&catalogue.personalities().collect::<Vec<_>>())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(vec![
        "SLUG",
        "DISPLAY NAME",
        "FAMILY",
        "EXACT",
        "NMAP 7.93 SAYS",
        "DESCRIPTION",
    ]);
    for p in catalogue.personalities() {
        table.row(vec![
            p.slug.clone(),
            p.display_name.clone(),
            p.family.clone(),
            if p.exact { "yes" } else { "best effort" }.to_string(),
            p.nmap_references.join("; "),
            p.description.clone(),
        ]);
    }
    table.print(&mut io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// `22,443/tls,161/udp`: TCP is the default and goes unsaid.
pub(crate) fn ports(ports: &[Port]) -> String {
    ports
        .iter()
        .map(|p| match (p.transport, p.tls) {
            (decnet_core::catalogue::Transport::Udp, _) => format!("{}/udp", p.number),
            (_, true) => format!("{}/tls", p.number),
            _ => p.number.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}
