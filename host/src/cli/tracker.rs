//! The tracker's commands: `sync`, `devices`, `pools`, `claim`, `allocate`, `free`. They
//! work directly on the database file; every operation is one transaction, so they are
//! safe next to a running agent using the same file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use pcitrack_model::{DevType, DeviceStatus};
use pcitrack_tracker::{AliasTable, DeviceFilter, PciRequest, SqliteStore, Tracker};
use serde::Serialize;

use super::output::{Format, table};
use super::source::{DeviceSource, read_devices};
use crate::config::Config;

/// Where the database is.
#[derive(Debug, Args)]
pub struct DbArg {
    /// Database file (default: the configuration's, else `<state_dir>/pcitrack.db`).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
}

impl DbArg {
    fn open(&self, config: &Config) -> anyhow::Result<Tracker<SqliteStore>> {
        let path = self.db.clone().unwrap_or_else(|| config.db());
        open_tracker(&path)
    }
}

/// Opens (creating if needed) the database at `path`.
pub fn open_tracker(path: &Path) -> anyhow::Result<Tracker<SqliteStore>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Tracker::open(path).with_context(|| format!("opening the database {}", path.display()))
}

/// `pcitrack sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    source: DeviceSource,
    #[command(flatten)]
    db: DbArg,
    /// Policies directory (default: the configuration's).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Runs one discover, evaluate, reconcile pass.
pub fn sync(args: SyncArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let devices = read_devices(&args.source, config)?;
    let dir = args
        .policies
        .clone()
        .unwrap_or_else(|| config.policies_dir());
    let policies = crate::policies::load(config, Some(&dir))?;
    for e in &policies.loaded.errors {
        eprintln!("pcitrack: policy refused, left out of the chain: {e}");
    }
    if policies
        .loaded
        .errors
        .iter()
        .any(|e| matches!(e, pcitrack_runtime::LoadError::ConfigRefused { .. }))
    {
        bail!("the configuration was refused by a policy; nothing was synced");
    }
    let mut tracker = args.db.open(config)?;
    let report =
        crate::pipeline::sync(&mut tracker, &policies.loaded.set, &devices).context("sync")?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            println!(
                "synced {} devices: {} added, {} updated, {} deleted, {} kept, {} repaired, {} deferred",
                devices.len(),
                report.added.len(),
                report.updated.len(),
                report.deleted.len(),
                report.kept.len(),
                report.repaired.len(),
                report.deferred.len()
            );
            for a in &report.deleted {
                println!("deleted  {a}");
            }
            for (a, why) in &report.kept {
                println!("kept     {a}: {why}");
            }
            for r in &report.repaired {
                println!("repaired {}: {} -> {}", r.address, r.from, r.to);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pcitrack devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    db: DbArg,
    /// Only devices with this status.
    #[arg(long)]
    status: Option<DeviceStatus>,
    /// Only devices held by this instance.
    #[arg(long)]
    instance: Option<String>,
    /// Only devices of this type (type-PCI, type-PF, type-VF, vdpa).
    #[arg(long = "type")]
    dev_type: Option<DevType>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Serialize)]
struct DeviceRow {
    address: String,
    status: DeviceStatus,
    dev_type: DevType,
    vendor_id: String,
    product_id: String,
    parent_addr: Option<String>,
    instance_uuid: Option<String>,
    numa_node: Option<u32>,
    tags: std::collections::BTreeMap<String, String>,
    remote_managed: bool,
}

/// Lists tracked devices.
pub fn devices(args: DevicesArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let mut tracker = args.db.open(config)?;
    let filter = DeviceFilter {
        status: args.status,
        instance: args.instance,
        dev_type: args.dev_type,
    };
    let rows: Vec<DeviceRow> = tracker
        .devices(&filter)?
        .into_iter()
        .map(|t| DeviceRow {
            address: t.profile.device.address.to_string(),
            status: t.status,
            dev_type: t.profile.device.dev_type,
            vendor_id: format!("{:04x}", t.profile.device.vendor_id),
            product_id: format!("{:04x}", t.profile.device.product_id),
            parent_addr: t.profile.device.parent_addr.map(|a| a.to_string()),
            instance_uuid: t.instance_uuid,
            numa_node: t.profile.device.numa_node,
            tags: t.profile.tags,
            remote_managed: t.profile.remote_managed,
        })
        .collect();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.address.clone(),
                        r.status.to_string(),
                        r.dev_type.to_string(),
                        format!("{}:{}", r.vendor_id, r.product_id),
                        r.parent_addr.clone().unwrap_or_else(|| "-".into()),
                        r.instance_uuid.clone().unwrap_or_else(|| "-".into()),
                        r.tags
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(","),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "ADDRESS", "STATUS", "TYPE", "IDS", "PARENT", "INSTANCE", "TAGS"
                    ],
                    &cells
                )
            );
            println!("{} devices", rows.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pcitrack pools`.
#[derive(Debug, Args)]
pub struct PoolsArgs {
    #[command(flatten)]
    db: DbArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Lists the pools of free devices.
pub fn pools(args: PoolsArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let mut tracker = args.db.open(config)?;
    let pools = tracker.pools()?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&pools)?),
        Format::Table => {
            let cells: Vec<Vec<String>> = pools
                .pools()
                .iter()
                .map(|p| {
                    vec![
                        p.count.to_string(),
                        serde_json::to_string(&p.key).unwrap_or_default(),
                    ]
                })
                .collect();
            print!("{}", table(&["COUNT", "POOL"], &cells));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pcitrack claim`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["spec", "alias"])))]
pub struct ClaimArgs {
    #[command(flatten)]
    db: DbArg,
    /// The instance the devices are for.
    #[arg(long)]
    instance: String,
    /// A request spec as JSON: an object or a list of objects with vendor_id, product_id,
    /// dev_type and tags (physical_network, remote_managed, ...).
    #[arg(long)]
    spec: Option<String>,
    /// An alias from the configuration's `[pci] alias`.
    #[arg(long)]
    alias: Option<String>,
    /// How many devices.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Claims devices for an instance: all of them or none.
pub fn claim(args: ClaimArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let request = match (&args.spec, &args.alias) {
        (Some(spec), _) => PciRequest::from_spec_json(spec, args.count).context("--spec")?,
        (None, Some(alias)) => AliasTable::parse(&config.pci.alias)
            .context("[pci] alias in the configuration")?
            .request(alias, args.count, None)
            .with_context(|| format!("--alias {alias}"))?,
        (None, None) => unreachable!("clap requires one"),
    };
    let mut tracker = args.db.open(config)?;
    let claimed = tracker.claim(&args.instance, &[request], None)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&claimed)?),
        Format::Table => {
            for c in &claimed {
                println!(
                    "claimed {} ({} {:04x}:{:04x}) for {}",
                    c.address, c.dev_type, c.vendor_id, c.product_id, args.instance
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pcitrack allocate` and `pcitrack free`.
#[derive(Debug, Args)]
pub struct InstanceArgs {
    #[command(flatten)]
    db: DbArg,
    /// The instance.
    #[arg(long)]
    instance: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Allocates what an instance claimed.
pub fn allocate(args: InstanceArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let mut tracker = args.db.open(config)?;
    let allocated = tracker.allocate(&args.instance)?;
    if allocated.is_empty() {
        bail!(
            "instance {} has no claimed devices to allocate",
            args.instance
        );
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&allocated)?),
        Format::Table => allocated
            .iter()
            .for_each(|a| println!("allocated {a} to {}", args.instance)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Frees everything an instance holds.
pub fn free(args: InstanceArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let mut tracker = args.db.open(config)?;
    let report = tracker.free(&args.instance)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            report.freed.iter().for_each(|a| println!("freed {a}"));
            report
                .deleted
                .iter()
                .for_each(|a| println!("deleted {a} (no longer reported)"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
