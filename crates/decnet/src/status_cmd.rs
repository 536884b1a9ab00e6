//! `decnet status` and `decnet teardown`: through the engine when one runs,
//! from the state files (and, for teardown, directly) when none does.

use std::io::{self, Write};
use std::process::ExitCode;

use decnet_core::catalogue::Transport;
use decnet_engine::offline;
use decnet_engine::status::{DeckyState, EngineStatus, PortState, ShapingState, TeardownRequest};

use crate::cli::{Global, ListArgs, TeardownArgs};
use crate::engine_cmd;
use crate::output::{Table, print_json};

pub(crate) fn status(global: &Global, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let config = global.engine_config()?;
    let status = engine_cmd::client_runtime()?.block_on(async {
        match engine_cmd::running(&config).await? {
            Some(client) => anyhow::Ok(client.status().await?),
            None => Ok(offline::status(&config)?),
        }
    })?;
    if args.json {
        print_json(&status)?;
    } else {
        print_status(&status)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn teardown(global: &Global, args: &TeardownArgs) -> anyhow::Result<ExitCode> {
    let config = global.engine_config()?;
    let request = TeardownRequest {
        all: args.all,
        id: args.id.clone(),
    };
    let report = engine_cmd::client_runtime()?.block_on(async {
        match engine_cmd::running(&config).await? {
            Some(client) => anyhow::Ok(client.teardown(&request).await?),
            None => Ok(offline::teardown(&config, &request)?),
        }
    })?;
    let mut out = io::stdout().lock();
    if report.removed.is_empty() {
        writeln!(out, "Nothing to remove.")?;
    } else {
        writeln!(out, "Removed: {}", report.removed.join(", "))?;
    }
    if report.hairpin_removed {
        writeln!(out, "Removed the host hairpin {}.", config.hairpin_name())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_status(status: &EngineStatus) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    let engine = match status.pid {
        Some(pid) if status.running => format!("running (pid {pid}, up {}s)", status.uptime_secs),
        _ => "not running".into(),
    };
    writeln!(
        out,
        "Engine: {engine}; instance {}; interface {}; subnet {}{}",
        status.prefix,
        status.interface.as_deref().unwrap_or("-"),
        status.subnet.as_deref().unwrap_or("-"),
        status
            .hairpin
            .as_ref()
            .map(|h| format!("; hairpin {} {}", h.name, h.ip))
            .unwrap_or_default()
    )?;
    let e = &status.events;
    let sinks: Vec<String> = e
        .sinks
        .iter()
        .map(|s| {
            let mut line = format!("{} {} delivered", s.name, s.delivered);
            if s.spooled > 0 {
                line += &format!(", {} spooled", s.spooled);
            }
            if s.dropped + s.failed > 0 {
                line += &format!(
                    ", {} LOST ({} shed, {} failed)",
                    s.dropped + s.failed,
                    s.dropped,
                    s.failed
                );
            }
            line
        })
        .collect();
    writeln!(out, "Events: {} emitted; {}", e.emitted, sinks.join("; "))?;
    if status.deckies.is_empty() {
        writeln!(out, "No deckies.")?;
        return Ok(());
    }
    writeln!(out)?;
    let mut table = Table::new(vec![
        "NAME",
        "IP",
        "MAC",
        "OS",
        "PERSONALITY",
        "STATE",
        "CONNS",
        "EVENTS",
        "SERVICES",
    ]);
    let mut problems = Vec::new();
    let mut fallback = false;
    for d in &status.deckies {
        let state = match &d.state {
            DeckyState::Running => "running".to_string(),
            DeckyState::Stopped => "stopped".to_string(),
            DeckyState::Missing => "missing".to_string(),
            DeckyState::Failed { reason } => {
                problems.push(format!("{}: {reason}", d.name));
                "FAILED".to_string()
            }
        };
        let mut services = Vec::new();
        for s in &d.services {
            let marker = if s.emulator.is_none() {
                fallback = true;
                "*"
            } else {
                ""
            };
            let ports: Vec<String> = s
                .ports
                .iter()
                .map(|p| {
                    let number = match p.port.transport {
                        Transport::Udp => format!("{}/udp", p.port.number),
                        Transport::Tcp => p.port.number.to_string(),
                    };
                    match &p.state {
                        PortState::Listening => number,
                        PortState::Failed { reason } => {
                            problems.push(format!("{} {} {}: {reason}", d.name, s.slug, p.port));
                            format!("{number}!")
                        }
                    }
                })
                .collect();
            services.push(format!("{}{marker}:{}", s.slug, ports.join(",")));
        }
        // `!`: its packets show Linux's stack, not the personality.
        let personality = match &d.shaping {
            Some(ShapingState::Unshaped { reason }) => {
                problems.push(format!("{}: not shaped to its OS personality: {reason}", d.name));
                format!("{}!", d.personality)
            }
            _ => d.personality.clone(),
        };
        table.row(vec![
            d.name.clone(),
            d.ip.to_string(),
            d.mac.to_string(),
            d.os_family.clone(),
            personality,
            state,
            d.services.iter().map(|s| s.connections).sum::<u64>().to_string(),
            d.services.iter().map(|s| s.events).sum::<u64>().to_string(),
            services.join(" "),
        ]);
    }
    table.print(&mut out)?;
    if fallback {
        writeln!(
            out,
            "\n* no protocol emulator yet: the port accepts, reads and logs, and answers nothing."
        )?;
    }
    if !problems.is_empty() {
        writeln!(out, "\nProblems:")?;
        for p in problems {
            writeln!(out, "  {p}")?;
        }
    }
    Ok(())
}
