//! `decnet`: the command line. Each command parses its flags into a library type
//! and calls into a library crate; this file only dispatches and reports errors.

#![forbid(unsafe_code)]

mod catalogue_cmd;
mod cli;
mod deploy_cmd;
mod engine_cmd;
mod fingerprint_cmd;
mod lab_cmd;
mod output;
mod status_cmd;
mod store_cmd;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use decnet_core::{CatalogueError, ConfigError};
use decnet_engine::ClientError;

use crate::cli::{Cli, Command, EngineCommand, FingerprintCommand, LabCommand};

fn main() -> ExitCode {
    if let Err(err) = load_env_files() {
        eprintln!("decnet: {err:#}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Services(args) => catalogue_cmd::services(g, &args),
        Command::Distros(args) => catalogue_cmd::distros(g, &args),
        Command::Archetypes(args) => catalogue_cmd::archetypes(g, &args),
        Command::Personalities(args) => catalogue_cmd::personalities(g, &args),
        Command::Deploy(args) => deploy_cmd::deploy(g, &args),
        Command::Status(args) => status_cmd::status(g, &args),
        Command::Teardown(args) => status_cmd::teardown(g, &args),
        Command::Logs(args) => store_cmd::logs(g, &args),
        Command::Attackers(args) => store_cmd::attackers(g, &args),
        Command::Creds(args) => store_cmd::creds(g, &args),
        Command::Engine(EngineCommand::Run) => engine_cmd::run(g),
        Command::Lab(LabCommand::Up(args)) => lab_cmd::up(g, &args),
        Command::Lab(LabCommand::Exec { command }) => lab_cmd::exec(g, &command),
        Command::Lab(LabCommand::Shell) => lab_cmd::shell(g),
        Command::Lab(LabCommand::Down) => lab_cmd::down(g),
        Command::Fingerprint(FingerprintCommand::Check(args)) => fingerprint_cmd::check(g, &args),
    }
}

/// Bad input the operator must fix; exits 2 like clap's usage errors.
#[derive(Debug)]
pub(crate) struct BadInput(pub(crate) String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Prints the error once, with its causes, and picks the exit status: 2 for bad
/// input, 0 for a closed pipe (`decnet … | head`), 1 for everything else.
fn report(err: &anyhow::Error) -> ExitCode {
    let broken_pipe = err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    eprintln!("decnet: {err:#}");
    let bad_input = err.chain().any(|c| {
        c.downcast_ref::<ConfigError>().is_some()
            || c.downcast_ref::<CatalogueError>().is_some()
            || c.downcast_ref::<BadInput>().is_some()
            || matches!(c.downcast_ref::<ClientError>(), Some(ClientError::Rejected(_)))
    });
    ExitCode::from(if bad_input { 2 } else { 1 })
}

/// Loads `.env.local` then `.env` from the working directory, as the original
/// did; variables already in the environment win, then `.env.local`, then `.env`.
fn load_env_files() -> anyhow::Result<()> {
    for name in [".env.local", ".env"] {
        match dotenvy::from_filename(name) {
            Ok(_) => {}
            Err(dotenvy::Error::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!(BadInput(format!("{name}: {e}"))),
        }
    }
    Ok(())
}
