//! The command line: argument parsing and output only. Every rule lives in the library
//! crates; a command here reads its inputs, calls them, and prints (through `output::out!`
//! and `outln!`, so a closed pipe ends the command quietly; `print!` is refused here).
#![deny(clippy::print_stdout)]

mod discover;
mod output;
mod pci_names;
mod placement;
mod policy;
mod policy_test;
mod run;
mod source;
mod tracker;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

pub use output::{Format, StdoutClosed};

/// pcitrack: keeps the inventory of a host's PCI devices (SR-IOV PFs and VFs, plain PCI
/// devices) and hands them out to workloads, with its decisions made by sandboxed
/// WebAssembly policies.
#[derive(Debug, Parser)]
#[command(name = "pcitrack", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). Without one, every setting has its default.
    #[arg(long, global = true, env = "PCITRACK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr (default: the configuration's `[agent] log_format`, else text).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: follow the host's devices (sysfs and uevents), reload policies and
    /// configuration as they change, and serve the API until SIGTERM.
    Run(run::RunArgs),
    /// List the host's PCI devices as sysfs describes them (like lspci, plus SR-IOV
    /// relations, network interfaces and VPD).
    Discover(discover::DiscoverArgs),
    /// One pass: discover devices, evaluate the policies, reconcile the database; then exit.
    Sync(tracker::SyncArgs),
    /// List tracked devices.
    Devices(tracker::DevicesArgs),
    /// List the pools of free devices.
    Pools(tracker::PoolsArgs),
    /// Claim devices for an instance (all or nothing). Asks the running agent when one
    /// answers, else works on the database file.
    Claim(tracker::ClaimArgs),
    /// Allocate the devices an instance claimed.
    Allocate(tracker::InstanceArgs),
    /// Free every device an instance holds.
    Free(tracker::InstanceArgs),
    /// Release a reserved one-time-use device once it has been wiped: it returns to the
    /// pools.
    Release(tracker::ReleaseArgs),
    /// Check a database file: SQLite's integrity check and the tracker's invariants (after a
    /// crash, a restore, or a manual edit).
    Check(tracker::CheckArgs),
    /// Work with policies: check, list, evaluate, test, build.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// What the running agent reports to OpenStack Placement, beside what Placement holds.
    #[command(subcommand)]
    Placement(placement::PlacementCommand),
}

/// Sets up tracing on stderr; `RUST_LOG` filters (default `warn`, `info` for the agent).
pub fn init_logging(cli: &Cli) {
    let daemon = matches!(cli.command, Command::Run(_));
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // The file's setting, when the flag is absent; a bad file is reported by the command.
    let format = cli.log_format.unwrap_or_else(|| {
        let from_file = cli
            .config
            .as_ref()
            .and_then(|p| Config::load(p).ok())
            .and_then(|c| c.agent.log_format);
        match from_file.as_deref() {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    });
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Loads the configuration named on the command line, or the defaults.
pub(crate) fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::load(p).context("loading the configuration"),
        None => Ok(Config::default()),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Run(args) = cli.command {
        return run::run(args, cli.config);
    }
    // A one-shot command may read and write hundreds of megabytes once: its large blocks are
    // backed by huge pages, a fault per 2 MiB (the agent's stay glibc's: its footprint is
    // kept). Refused only if a block of 2 MiB was made already; glibc's serve then.
    if !crate::large_pages::advise_huge_pages() {
        tracing::debug!("large blocks stay glibc's: one was made before the command started");
    }
    let config = load_config(cli.config.as_ref())?;
    match cli.command {
        Command::Run(_) => unreachable!("handled above"),
        Command::Discover(args) => discover::discover(args, &config),
        Command::Sync(args) => tracker::sync(args, &config),
        Command::Devices(args) => tracker::devices(args, &config),
        Command::Pools(args) => tracker::pools(args, &config),
        Command::Claim(args) => tracker::claim(args, &config),
        Command::Allocate(args) => tracker::allocate(args, &config),
        Command::Free(args) => tracker::free(args, &config),
        Command::Release(args) => tracker::release(args, &config),
        Command::Check(args) => tracker::check(args, &config),
        Command::Policy(cmd) => policy::run(cmd, &config),
        Command::Placement(cmd) => placement::run(cmd, &config),
    }
}
