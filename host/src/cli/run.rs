//! `pcitrack run`: the agent. Flags override the configuration file, also across reloads;
//! they are declared once, with their effect, in [`crate::config::Overrides`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Overrides;
use crate::daemon;

/// `pcitrack run`.
#[derive(Debug, Args)]
#[command(after_help = "\
Without a configuration file the agent reads /sys, runs the embedded policies, and keeps its \
database, API socket and compiled-policy cache in the state directory: [agent] state_dir or \
--state-dir, else $STATE_DIRECTORY (systemd's StateDirectory=), else /var/lib/pcitrack when \
running as root, else $XDG_STATE_HOME/pcitrack or ~/.local/state/pcitrack. Drop policy files \
(*.wasm) into the policies directory to extend or replace the defaults; they are loaded within \
milliseconds, and one that fails to load is reported while the previous version keeps serving. \
SIGHUP reloads the configuration. Under systemd (Type=notify) the agent reports READY=1 once \
it has reconciled and its API listens, STOPPING=1 on SIGTERM, and pings the watchdog when \
WatchdogSec= is set.")]
pub struct RunArgs {
    /// The settings the command line overrides.
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(args: RunArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    daemon::run(config, args.overrides)?;
    Ok(ExitCode::SUCCESS)
}
