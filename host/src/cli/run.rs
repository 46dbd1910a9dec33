//! `pcitrack run`: the agent. Flags override the configuration file, also across reloads.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::daemon::{self, Overrides};

/// `pcitrack run`.
#[derive(Debug, Args)]
#[command(after_help = "\
Without a configuration file the agent reads /sys, runs the embedded policies, and keeps its \
database, API socket and compiled-policy cache in the state directory (/var/lib/pcitrack for \
root). Drop policy files (*.wasm) into the policies directory to extend or replace the \
defaults; they are loaded within milliseconds, and one that fails to load is reported while \
the previous version keeps serving. SIGHUP reloads the configuration.")]
pub struct RunArgs {
    /// Root of the sysfs tree (default /sys).
    #[arg(long, value_name = "DIR")]
    sysfs_root: Option<PathBuf>,
    /// Policies directory (default <state_dir>/policies).
    #[arg(long, value_name = "DIR")]
    policies_dir: Option<PathBuf>,
    /// State directory: database, socket, cache.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Database file (default <state_dir>/pcitrack.db).
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// API unix socket (default <state_dir>/pcitrack.sock), mode 0600.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also serve the API on TCP at this address (needs [api] token in the configuration).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Seconds between full resyncs (default 300).
    #[arg(long, value_name = "SECS")]
    resync_interval: Option<u64>,
    /// Also take uevents from this unix datagram socket (a relay from a host, or tests).
    #[arg(long, value_name = "PATH")]
    uevent_relay: Option<PathBuf>,
    /// Do not subscribe to the kernel's uevents (rely on the relay and the periodic resync).
    #[arg(long)]
    no_netlink: bool,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(args: RunArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        sysfs_root: args.sysfs_root,
        policies_dir: args.policies_dir,
        state_dir: args.state_dir,
        db: args.db,
        resync_interval_secs: args.resync_interval,
        uevent_relay: args.uevent_relay,
        no_netlink: args.no_netlink,
        socket: args.socket,
        listen: args.listen,
    };
    daemon::run(config, overrides)?;
    Ok(ExitCode::SUCCESS)
}
