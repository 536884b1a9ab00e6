//! `decnet lab up | exec | shell | down`: DECNET's embedded default, a private
//! LAN on this machine with an attacker namespace, and a fleet deployed on it.

use std::io::{self, Write};
use std::process::{Child, Command, ExitCode};

use anyhow::Context as _;
use decnet_core::fleet::{CliFleet, FleetSpec};
use decnet_core::ini;
use decnet_core::seed::FleetSeed;
use decnet_engine::lab::{self, Lab};
use decnet_engine::offline;
use decnet_engine::status::TeardownRequest;
use decnet_net::Netns;

use crate::cli::{Global, LabUpArgs};
use crate::{BadInput, catalogue_cmd, deploy_cmd, engine_cmd, status_cmd};

/// The lab fleet compiled in, used when `lab up` is given no fleet.
const LAB_INI: &str = include_str!("../../../config/examples/lab.ini");

pub(crate) fn up(global: &Global, up: &LabUpArgs) -> anyhow::Result<ExitCode> {
    let args = &up.fleet;
    let config = global.engine_config()?;
    let catalogue = catalogue_cmd::load(global)?;
    decnet_net::require_network_admin()?;
    let plan_on = |lab: &Lab, seed: Option<FleetSeed>| -> anyhow::Result<FleetSpec> {
        let flags = CliFleet {
            interface: Some(lab.lan.clone()),
            subnet: Some(lab.subnet.to_string()),
            gateway: Some(lab.attacker_ip.to_string()),
            ..args.fleet_flags()
        };
        match (&args.config, args.deckies) {
            (None, None) => {
                let doc = ini::parse(LAB_INI, "lab.ini (built in)")?;
                deploy_cmd::plan_document(Some(&doc), &flags, &catalogue, seed, lab.reserved())
            }
            (path, _) => deploy_cmd::plan(path.as_deref(), &flags, &catalogue, seed, lab.reserved()),
        }
    };
    // Plan against the lab it will be first: a bad flag or fleet file then
    // fails before anything (LAN, namespace, seed) is created.
    plan_on(
        &lab::planned(&config, up.lan_prefix)?,
        FleetSeed::read_installation(&global.state_dir)?,
    )?;
    let lab = lab::ensure(&config, up.lan_prefix)?;
    let seed = FleetSeed::ensure_installation(&global.state_dir)?;
    let spec = plan_on(&lab, Some(seed))?;
    deploy_cmd::warn(&spec);
    let (report, status) = engine_cmd::deploy(global, &config, &spec)?;
    deploy_cmd::print_report(&report)?;
    status_cmd::print_status(&status)?;
    print_how_to(&lab, global)?;
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_how_to(lab: &Lab, global: &Global) -> anyhow::Result<()> {
    let me = if global.prefix == decnet_engine::DEFAULT_PREFIX {
        "decnet".to_string()
    } else {
        format!("decnet --prefix {}", global.prefix)
    };
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "\nLab LAN {} on `{}` (a veth; no real interface involved). The attacker is {} in namespace `{}`.",
        lab.subnet, lab.lan, lab.attacker_ip, lab.attacker_ns
    )?;
    writeln!(out, "Try:")?;
    writeln!(out, "  sudo {me} lab exec -- nmap -n -sV -T4 {}", lab.subnet)?;
    writeln!(out, "  sudo {me} lab shell")?;
    writeln!(out, "  sudo {me} status")?;
    writeln!(out, "  sudo {me} lab down")?;
    writeln!(out, "Events: {}", global.log_dir.join("decnet.json").display())?;
    Ok(())
}

pub(crate) fn exec(global: &Global, command: &[String]) -> anyhow::Result<ExitCode> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    run_in_attacker(global, cmd)
}

pub(crate) fn shell(global: &Global) -> anyhow::Result<ExitCode> {
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/bash".into());
    let mut cmd = Command::new(shell);
    cmd.env("PS1", "(decnet lab attacker) \\u@\\h:\\w\\$ ");
    run_in_attacker(global, cmd)
}

/// Runs `cmd` in the attacker namespace with this terminal, and exits with its status.
fn run_in_attacker(global: &Global, cmd: Command) -> anyhow::Result<ExitCode> {
    let config = global.engine_config()?;
    decnet_net::require_network_admin()?;
    let ns = attacker_namespace(&config)?;
    let status = spawn_in(&ns, cmd)?.wait()?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

/// The lab's attacker namespace, or why there is none.
pub(crate) fn attacker_namespace(config: &decnet_engine::EngineConfig) -> anyhow::Result<Netns> {
    let lab = lab::load(config)?.ok_or_else(|| BadInput("there is no lab; run `decnet lab up` first".into()))?;
    let ns = Netns::open(&lab.attacker_ns)?.ok_or_else(|| {
        BadInput(format!(
            "the lab's namespace {} is gone; run `decnet lab up`",
            lab.attacker_ns
        ))
    })?;
    Ok(ns)
}

/// Starts `cmd` inside `ns`.
pub(crate) fn spawn_in(ns: &Netns, mut cmd: Command) -> anyhow::Result<Child> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    // A child starts in the namespace of the thread that forks it: enter on a
    // thread of our own, spawn there.
    std::thread::scope(|s| {
        s.spawn(|| {
            let _guard = ns.enter()?;
            anyhow::Ok(cmd.spawn()?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
    })
    .with_context(|| format!("running {program} in {}", ns.name()))
}

pub(crate) fn down(global: &Global) -> anyhow::Result<ExitCode> {
    let config = global.engine_config()?;
    decnet_net::require_network_admin()?;
    let request = TeardownRequest { all: true, id: None };
    let removed = engine_cmd::client_runtime()?.block_on(async {
        match engine_cmd::running(&config).await? {
            Some(client) => {
                let report = client.teardown(&request).await?;
                client.shutdown().await?;
                wait_for_exit(&config).await;
                anyhow::Ok(report.removed)
            }
            None => Ok(offline::teardown(&config, &request)?.removed),
        }
    })?;
    let existed = lab::destroy(&config)?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "Lab down: {} deckies removed{}, engine stopped.",
        removed.len(),
        if existed {
            ", lab LAN and attacker namespace removed"
        } else {
            ""
        }
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Waits (up to 10 s) for the engine's socket to go away.
async fn wait_for_exit(config: &decnet_engine::EngineConfig) {
    for _ in 0..200 {
        if !config.socket_path().exists() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
