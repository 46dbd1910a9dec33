//! `pcitrack discover`: the host's PCI devices, as sysfs describes them.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::output::Format;
use crate::config::Config;

/// `pcitrack discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Root of the sysfs tree (default: the configuration's, else /sys).
    #[arg(long, value_name = "DIR")]
    sysfs_root: Option<PathBuf>,
    /// Output format: `table` (like `lspci -nn`, with SR-IOV relations and a summary) or
    /// `json` (one record per device, Nova's field names, sorted by address).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Scans and prints. Devices that could not be read are skipped with a warning naming them
/// on stderr; the exit code stays 0 so that one bad device does not hide the others.
pub fn discover(args: DiscoverArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let root = args.sysfs_root.unwrap_or_else(|| config.sysfs_root());
    let report = pcitrack_discovery::scan(&root);
    super::source::warn_skipped(&report);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report.devices)?),
        Format::Table => print!("{}", pcitrack_discovery::render_table(&report)),
    }
    Ok(ExitCode::SUCCESS)
}
