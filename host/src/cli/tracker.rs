//! The tracker's commands: `sync`, `devices`, `pools`, `claim`, `allocate`, `free`.
//!
//! `devices` to `free` talk to the running agent when one answers (on `--socket`, or on the
//! default socket when it is there), and otherwise work directly on the database file. Both
//! paths run the same code (`crate::ops`) and print the same way; every operation is one
//! transaction, so the direct path is safe next to a running agent using the same file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use pcitrack_model::{DevType, DeviceStatus};
use pcitrack_tracker::{ClaimedDevice, FreeReport, SqliteStore, Tracker};

use super::output::{Format, out, outln, table, write_json};
use super::source::{DeviceSource, read_devices};
use crate::client::Client;
use crate::config::Config;
use crate::ops::{self, ClaimRequest, DeviceRow, DevicesQuery, InstanceRequest, PoolRow};
use crate::store::open_tracker;

/// Where the database is (for `sync`, which always works on the file).
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

/// Whom to ask: the running agent, or the database file.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Talk to the agent on this unix socket (default: the agent's default socket when an
    /// agent answers there).
    #[arg(long, value_name = "PATH", conflicts_with = "db")]
    pub socket: Option<PathBuf>,
    /// Work directly on this database file instead of asking the agent.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
}

/// The running agent, or the database file.
enum Target {
    Agent(Client),
    Direct(Box<Tracker<SqliteStore>>),
}

impl TargetArgs {
    fn resolve(&self, config: &Config) -> anyhow::Result<Target> {
        if let Some(socket) = &self.socket {
            return Ok(Target::Agent(Client::new(socket)));
        }
        if self.db.is_none() {
            let client = Client::new(config.socket());
            if client.reachable() {
                return Ok(Target::Agent(client));
            }
        }
        let path = self.db.clone().unwrap_or_else(|| config.db());
        Ok(Target::Direct(Box::new(open_tracker(&path)?)))
    }
}

/// The query string of a devices query (absent filters are left out).
fn query_string(q: &DevicesQuery) -> anyhow::Result<String> {
    let encoded = serde_urlencoded::to_string(q).context("encoding the filters")?;
    Ok(if encoded.is_empty() {
        String::new()
    } else {
        format!("?{encoded}")
    })
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
    let set = policies
        .loaded
        .set
        .with_node_sockets(super::source::read_node_sockets(&args.source, config));
    let report = crate::pipeline::sync(&mut tracker, &set, &devices).context("sync")?;
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            outln!(
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
                outln!("deleted  {a}");
            }
            for (a, why) in &report.kept {
                outln!("kept     {a}: {why}");
            }
            for r in &report.repaired {
                outln!("repaired {}: {} -> {}", r.address, r.from, r.to);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pcitrack devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Only devices with this status.
    #[arg(long)]
    status: Option<DeviceStatus>,
    /// Only devices held by this instance.
    #[arg(long)]
    instance: Option<String>,
    /// Only devices of this type (type-PCI, type-PF, type-VF, vdpa).
    #[arg(long = "type")]
    dev_type: Option<DevType>,
    /// Only this vendor id (4 hex digits).
    #[arg(long)]
    vendor_id: Option<String>,
    /// Only this product id (4 hex digits).
    #[arg(long)]
    product_id: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Lists tracked devices.
pub fn devices(args: DevicesArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let query = DevicesQuery {
        status: args.status,
        instance: args.instance,
        dev_type: args.dev_type,
        vendor_id: args.vendor_id,
        product_id: args.product_id,
    };
    let rows: Vec<DeviceRow> = match args.target.resolve(config)? {
        Target::Agent(c) => c
            .get(&format!("/v1/devices{}", query_string(&query)?))?
            .json()?,
        Target::Direct(mut t) => ops::devices(&mut t, &query)?,
    };
    match args.format {
        Format::Json => write_json(&rows)?,
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.address.clone(),
                        if r.reserved {
                            format!("{} (reserved)", r.status)
                        } else {
                            r.status.to_string()
                        },
                        r.dev_type.to_string(),
                        format!("{}:{}", r.vendor_id, r.product_id),
                        r.parent_addr.clone().unwrap_or_else(|| "-".into()),
                        r.instance_uuid.clone().unwrap_or_else(|| "-".into()),
                        r.tags
                            .iter()
                            .map(|(k, v)| format!("{k}={}", ops::tag_cell(v)))
                            .collect::<Vec<_>>()
                            .join(","),
                    ]
                })
                .collect();
            out!(
                "{}",
                table(
                    &[
                        "ADDRESS", "STATUS", "TYPE", "IDS", "PARENT", "INSTANCE", "TAGS"
                    ],
                    &cells
                )
            );
            outln!("{} devices", rows.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pcitrack pools`.
#[derive(Debug, Args)]
pub struct PoolsArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Lists the pools of free devices.
pub fn pools(args: PoolsArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let pools: Vec<PoolRow> = match args.target.resolve(config)? {
        Target::Agent(c) => c.get("/v1/pools")?.json()?,
        Target::Direct(mut t) => ops::pools(&mut t)?,
    };
    match args.format {
        Format::Json => write_json(&pools)?,
        Format::Table => {
            let cells: Vec<Vec<String>> = pools
                .iter()
                .map(|p| {
                    vec![
                        p.count.to_string(),
                        p.reserved.to_string(),
                        p.key.to_string(),
                    ]
                })
                .collect();
            out!("{}", table(&["COUNT", "RESERVED", "POOL"], &cells));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pcitrack claim`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["spec", "alias", "requests", "placement_consumer"])))]
pub struct ClaimArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The instance the devices are for (with --placement-consumer: default the consumer).
    #[arg(long, required_unless_present = "placement_consumer")]
    instance: Option<String>,
    /// A Placement consumer's UUID: claim exactly the devices Placement allocated to it on
    /// this host's providers, all or none (asks the running agent, which must report to
    /// Placement; refused, naming the over-allocation, when fewer are free here).
    #[arg(long, value_name = "UUID", conflicts_with_all = ["count", "numa_cells", "numa_policy"])]
    placement_consumer: Option<String>,
    /// A request spec as JSON: an object or a list of objects (alternatives) with vendor_id,
    /// product_id, dev_type and tags (physical_network, remote_managed, ...).
    #[arg(long)]
    spec: Option<String>,
    /// An alias from the configuration's `[pci] alias`, or a flavor's
    /// `pci_passthrough:alias` value (`a:1,b:2`: one request per item).
    #[arg(long)]
    alias: Option<String>,
    /// Several requests as a JSON list: `[{"alias": "a", "count": 2}, {"spec": {...},
    /// "request_id": "..."}]`.
    #[arg(long)]
    requests: Option<String>,
    /// How many devices, for --spec or one alias name (default 1).
    #[arg(long)]
    count: Option<u32>,
    /// The request id, for --spec or one alias name (default: a generated UUID).
    #[arg(long)]
    request_id: Option<String>,
    /// The instance's NUMA cells: the host NUMA nodes its guest cells sit on (`0,1`).
    #[arg(long, value_delimiter = ',')]
    numa_cells: Vec<u32>,
    /// The PCI NUMA affinity policy, overriding the aliases' (the flavor's
    /// `hw:pci_numa_affinity_policy`): required, legacy, preferred or socket.
    #[arg(long)]
    numa_policy: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Claims devices for an instance: all of them or none.
pub fn claim(args: ClaimArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let requests = match &args.requests {
        Some(text) => {
            serde_json::from_str(text).context("--requests is not a JSON list of requests")?
        }
        None => Vec::new(),
    };
    let numa_policy = args
        .numa_policy
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("--numa-policy")?;
    let instance = args
        .instance
        .clone()
        .or_else(|| args.placement_consumer.clone())
        .unwrap_or_default();
    let req = ClaimRequest {
        instance: args.instance.unwrap_or_default(),
        placement_consumer: args.placement_consumer,
        spec: args.spec.map(serde_json::Value::String),
        alias: args.alias,
        count: args.count,
        request_id: args.request_id,
        requests,
        numa_cells: args.numa_cells,
        numa_policy,
    };
    let claimed: Vec<ClaimedDevice> = match args.target.resolve(config)? {
        Target::Agent(c) => c.claim(&req)?,
        Target::Direct(mut t) => {
            // Read only when the claim has a NUMA context to honour.
            let cells = if req.numa_cells.is_empty() {
                Vec::new()
            } else {
                ops::host_cells(&pcitrack_discovery::numa_topology(&config.sysfs_root()))
            };
            ops::claim(&mut t, &req, config.aliases(), &cells)?
        }
    };
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&claimed)?),
        Format::Table => {
            for c in &claimed {
                let numa = c.numa_node.map_or("-".to_string(), |n| n.to_string());
                outln!(
                    "claimed {} ({} {}:{}, NUMA node {numa}, managed {}) for {}, request {}",
                    c.address,
                    c.dev_type,
                    c.vendor_id,
                    c.product_id,
                    c.managed,
                    instance.trim(),
                    c.request_id.as_deref().unwrap_or("-")
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
    target: TargetArgs,
    /// The instance.
    #[arg(long)]
    instance: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Allocates what an instance claimed.
pub fn allocate(args: InstanceArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let req = InstanceRequest {
        instance: args.instance.clone(),
    };
    let allocated: Vec<String> = match args.target.resolve(config)? {
        Target::Agent(c) => c.post("/v1/allocate", &req)?.json()?,
        Target::Direct(mut t) => ops::allocate(&mut t, &req)?,
    };
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&allocated)?),
        Format::Table => {
            for a in &allocated {
                outln!("allocated {a} to {}", args.instance);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Frees everything an instance holds.
pub fn free(args: InstanceArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let req = InstanceRequest {
        instance: args.instance.clone(),
    };
    let report: FreeReport = match args.target.resolve(config)? {
        Target::Agent(c) => c.post("/v1/free", &req)?.json()?,
        Target::Direct(mut t) => ops::free(&mut t, &req)?,
    };
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            for a in &report.freed {
                outln!("freed {a}");
            }
            for a in &report.deleted {
                outln!("deleted {a} (no longer reported)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pcitrack release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The reserved device's PCI address (e.g. 0000:81:00.0).
    address: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Releases a reserved one-time-use device.
pub fn release(args: ReleaseArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let req = ops::ReleaseRequest {
        address: args.address.clone(),
    };
    let device: DeviceRow = match args.target.resolve(config)? {
        Target::Agent(c) => c.post("/v1/release", &req)?.json()?,
        Target::Direct(mut t) => ops::release(&mut t, &req)?,
    };
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&device)?),
        Format::Table => outln!("released {} ({})", device.address, device.status),
    }
    Ok(ExitCode::SUCCESS)
}

/// `pcitrack check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    db: DbArg,
}

/// Checks a database file: SQLite's integrity check, then the tracker's invariants. Works on
/// the file directly (safe next to a running agent: it only reads, in one transaction).
pub fn check(args: CheckArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let path = args.db.db.clone().unwrap_or_else(|| config.db());
    if !path.exists() {
        bail!("no database at {}", path.display());
    }
    let mut tracker = args.db.open(config)?;
    let report = ops::check(&mut tracker)?;
    if !report.integrity.is_empty() {
        bail!(
            "{}: SQLite integrity check failed: {}",
            path.display(),
            report.integrity.join("; ")
        );
    }
    if let Some(e) = &report.invariant {
        bail!("{}: invariant violated: {e}", path.display());
    }
    let n = report.devices;
    outln!(
        "{}: ok ({n} devices; integrity check and invariants pass)",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
