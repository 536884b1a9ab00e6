//! The command-line grammar.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use decnet_core::fleet::{CliFleet, Mode};
use decnet_engine::EngineConfig;

#[derive(Debug, Parser)]
#[command(
    name = "decnet",
    version,
    about = "DECNET: a native honeynet of fake LAN hosts (deckies)",
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command shares.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Persistent state: desired fleet, fleet seed, lab.
    #[arg(
        long,
        global = true,
        env = "DECNET_STATE_DIR",
        default_value = "/var/lib/decnet",
        value_name = "DIR"
    )]
    pub(crate) state_dir: PathBuf,
    /// Runtime files: the engine's control socket, PID and lock files.
    #[arg(
        long,
        global = true,
        env = "DECNET_RUN_DIR",
        default_value = "/run/decnet",
        value_name = "DIR"
    )]
    pub(crate) run_dir: PathBuf,
    /// Event logs (decnet.json) and the engine's own log.
    #[arg(
        long,
        global = true,
        env = "DECNET_LOG_DIR",
        default_value = "/var/log/decnet",
        value_name = "DIR"
    )]
    pub(crate) log_dir: PathBuf,
    /// Load personas from this directory instead of the copy built into the binary.
    #[arg(long, global = true, env = "DECNET_PERSONAS", value_name = "DIR")]
    pub(crate) personas: Option<PathBuf>,
    /// Instance name: prefixes every namespace and link this instance creates.
    #[arg(
        long,
        global = true,
        env = "DECNET_PREFIX",
        default_value = "decnet",
        value_name = "NAME"
    )]
    pub(crate) prefix: String,
}

impl Global {
    pub(crate) fn engine_config(&self) -> Result<EngineConfig, crate::BadInput> {
        EngineConfig::check_prefix(&self.prefix).map_err(|m| crate::BadInput(format!("--prefix: {m}")))?;
        Ok(EngineConfig {
            state_dir: self.state_dir.clone(),
            run_dir: self.run_dir.clone(),
            log_dir: self.log_dir.clone(),
            prefix: self.prefix.clone(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the services deckies can run, with their ports and persona keys.
    Services(ListArgs),
    /// List the Linux distributions deckies can imitate.
    Distros(ListArgs),
    /// List machine archetypes (services + OS family + distros in one slug).
    Archetypes(ListArgs),
    /// List OS personalities: the TCP/IP stacks deckies show to scanners (`--os-personality`, INI `os_personality`).
    Personalities(ListArgs),
    /// Deploy deckies (with --dry-run: print the plan and change nothing).
    Deploy(Box<DeployArgs>),
    /// Show every decky, its services and ports, and the engine's health.
    Status(ListArgs),
    /// Remove deckies: one (--id) or all of them (--all).
    Teardown(TeardownArgs),
    /// Events from the store, newest last; --follow streams new ones live.
    Logs(LogsArgs),
    /// Source addresses that touched a decky, with what they did.
    Attackers(AttackersArgs),
    /// Credentials attackers tried, deduplicated, with attempt counts.
    Creds(CredsArgs),
    /// The engine process.
    #[command(subcommand)]
    Engine(EngineCommand),
    /// A private lab LAN on this machine, with an attacker namespace.
    #[command(subcommand)]
    Lab(LabCommand),
    /// OS fingerprints of the deckies, as scanners see them.
    #[command(subcommand)]
    Fingerprint(FingerprintCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum FingerprintCommand {
    /// Run `nmap -O` from the lab's attacker namespace against each running
    /// decky and compare nmap's verdict with its OS personality; exits 1 when
    /// an exact personality is not named in every round.
    Check(FingerprintCheckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FingerprintCheckArgs {
    /// Only this decky.
    #[arg(long, value_name = "NAME")]
    pub(crate) decky: Option<String>,
    /// How many times to run nmap against each decky.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) rounds: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Keep printing new events as they happen (needs the engine).
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Only this decky's events.
    #[arg(long, value_name = "NAME")]
    pub(crate) decky: Option<String>,
    /// Only this service's events (e.g. ssh).
    #[arg(long, value_name = "SLUG")]
    pub(crate) service: Option<String>,
    /// Only events of this kind (e.g. auth_attempt, command, request).
    #[arg(long, value_name = "KIND")]
    pub(crate) kind: Option<String>,
    /// Only events from this source address.
    #[arg(long, value_name = "IP")]
    pub(crate) src: Option<String>,
    /// Only events since a time (2026-11-23T10:00:00Z) or for a duration back (15m, 2h, 7d).
    #[arg(long, value_name = "WHEN")]
    pub(crate) since: Option<String>,
    /// How many past events to show.
    #[arg(short = 'n', long, default_value_t = 50, value_name = "N")]
    pub(crate) limit: u32,
    /// One JSON event per line.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AttackersArgs {
    /// How many, most recently seen first.
    #[arg(short = 'n', long, default_value_t = 100, value_name = "N")]
    pub(crate) limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CredsArgs {
    /// Only credentials tried on this decky.
    #[arg(long, value_name = "NAME")]
    pub(crate) decky: Option<String>,
    /// Only credentials tried on this service.
    #[arg(long, value_name = "SLUG")]
    pub(crate) service: Option<String>,
    /// Only credentials from this source address.
    #[arg(long, value_name = "IP")]
    pub(crate) src: Option<String>,
    /// How many, most recently tried first.
    #[arg(short = 'n', long, default_value_t = 100, value_name = "N")]
    pub(crate) limit: u32,
    /// Only hashcat input lines (challenge-response captures), for offline cracking.
    #[arg(long, conflicts_with = "json")]
    pub(crate) hashcat: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EngineCommand {
    /// Run the engine in the foreground (what systemd starts; `deploy` starts one when none runs).
    Run,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LabCommand {
    /// Create the lab LAN (if needed) and deploy a fleet on it (default: the built-in lab fleet).
    Up(Box<LabUpArgs>),
    /// Run a command in the attacker namespace, e.g. `decnet lab exec -- nmap -n -sV 10.213.0.0/24`.
    Exec {
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Open a shell in the attacker namespace.
    Shell,
    /// Remove the lab's deckies, its LAN and its attacker namespace, and stop the engine.
    Down,
}

#[derive(Debug, Args)]
pub(crate) struct LabUpArgs {
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    /// Prefix length of the lab's subnet, when the lab is created (a /24 holds
    /// 252 deckies; a /21, 2044).
    #[arg(long, value_name = "LEN", default_value_t = 24, value_parser = clap::value_parser!(u8).range(16..=28))]
    pub(crate) lan_prefix: u8,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct TeardownArgs {
    /// Remove every decky, the hairpin and the desired fleet.
    #[arg(long)]
    pub(crate) all: bool,
    /// Remove one decky.
    #[arg(long, value_name = "NAME")]
    pub(crate) id: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ModeArg {
    Unihost,
    Swarm,
}

/// What to deploy (shared by `deploy` and `lab up`).
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    /// Fleet description (INI). Flags override its [general] section.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Number of deckies (without --config).
    #[arg(short = 'n', long, value_name = "N")]
    pub(crate) deckies: Option<u32>,
    /// Services for every decky, e.g. ssh,http.
    #[arg(long, value_name = "SLUGS")]
    pub(crate) services: Option<String>,
    /// Give each decky 1-3 random services.
    #[arg(long)]
    pub(crate) randomize_services: bool,
    /// Distros, cycled over the deckies, e.g. debian,rocky9.
    #[arg(long, value_name = "SLUGS")]
    pub(crate) distro: Option<String>,
    /// Give each decky a random distro.
    #[arg(long)]
    pub(crate) randomize_distros: bool,
    /// Machine archetype: sets services, OS family and distros.
    #[arg(short = 'a', long, value_name = "SLUG")]
    pub(crate) archetype: Option<String>,
    /// OS family (TCP/IP personality): linux, windows, windows_server, bsd, embedded, cisco.
    #[arg(long = "nmap-os", value_name = "FAMILY")]
    pub(crate) nmap_os: Option<String>,
    /// OS personality (TCP/IP stack) of every decky lacking its own (`decnet personalities`).
    #[arg(long = "os-personality", value_name = "SLUG")]
    pub(crate) os_personality: Option<String>,
    /// First address to hand out.
    #[arg(long, value_name = "IP")]
    pub(crate) ip_start: Option<String>,
    /// Remote syslog receiver: host:port (UDP), or tcp:// or tls:// host:port.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) log_target: Option<String>,
    /// Also write the event log (RFC 5424) to this file.
    #[arg(long, value_name = "PATH")]
    pub(crate) log_file: Option<PathBuf>,
    /// For a tls:// log target: the CA that signed the receiver's certificate (PEM).
    #[arg(long, value_name = "PEM")]
    pub(crate) log_tls_ca: Option<PathBuf>,
    /// For mutual TLS: our client certificate (PEM).
    #[arg(long, value_name = "PEM", requires = "log_tls_key")]
    pub(crate) log_tls_cert: Option<PathBuf>,
    /// For mutual TLS: the client certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "log_tls_cert")]
    pub(crate) log_tls_key: Option<PathBuf>,
    /// Allow a plaintext (udp:// or tcp://) log target on another host.
    #[arg(long)]
    pub(crate) insecure_syslog: bool,
    /// Fleet seed: any text; pins MACs, hostnames and every seeded choice.
    #[arg(long, env = "DECNET_SEED", value_name = "TEXT", hide_env_values = true)]
    pub(crate) seed: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    /// Host NIC the deckies attach to (default: the default route's).
    #[arg(short = 'i', long, value_name = "IFACE")]
    pub(crate) interface: Option<String>,
    /// LAN subnet, e.g. 192.168.1.0/24 (default: the interface's).
    #[arg(long, value_name = "CIDR")]
    pub(crate) subnet: Option<String>,
    /// Gateway of the subnet (default: the default route's, else the first address).
    #[arg(long, value_name = "IP")]
    pub(crate) gateway: Option<String>,
    /// Use IPvlan L2 links (the host's MAC) instead of macvlan.
    #[arg(long)]
    pub(crate) ipvlan: bool,
    /// unihost: every decky on this host; swarm: sharded over sensors.
    #[arg(short = 'm', long, value_enum, default_value = "unihost")]
    pub(crate) mode: ModeArg,
    /// Print the plan and change nothing (needs no root).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print JSON (the plan with --dry-run, else the deploy report).
    #[arg(long)]
    pub(crate) json: bool,
}

impl FleetArgs {
    /// The fleet flags, without any network flag.
    pub(crate) fn fleet_flags(&self) -> CliFleet {
        CliFleet {
            deckies: self.deckies,
            services: self.services.clone(),
            randomize_services: self.randomize_services,
            distro: self.distro.clone(),
            randomize_distros: self.randomize_distros,
            archetype: self.archetype.clone(),
            nmap_os: self.nmap_os.clone(),
            os_personality: self.os_personality.clone(),
            ip_start: self.ip_start.clone(),
            log_target: self.log_target.clone(),
            log_file: self.log_file.clone(),
            log_tls_ca: self.log_tls_ca.clone(),
            log_tls_cert: self.log_tls_cert.clone(),
            log_tls_key: self.log_tls_key.clone(),
            insecure_syslog: self.insecure_syslog,
            seed: self.seed.clone(),
            ..CliFleet::default()
        }
    }
}

impl DeployArgs {
    pub(crate) fn fleet_flags(&self) -> CliFleet {
        CliFleet {
            interface: self.interface.clone(),
            subnet: self.subnet.clone(),
            gateway: self.gateway.clone(),
            ipvlan: self.ipvlan,
            mode: match self.mode {
                ModeArg::Unihost => Mode::Unihost,
                ModeArg::Swarm => Mode::Swarm,
            },
            ..self.fleet.fleet_flags()
        }
    }
}
