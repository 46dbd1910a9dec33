//! The agent as a Placement client (`[pci] report_in_placement = true`): the reporter thread
//! of `pcitrack_placement` fed after every reconcile and every change of device state, the
//! provider uuids kept in the state database, and what `/v1/health`, `/metrics` and
//! `GET /v1/placement` say about it. The rules (which providers, which changes) are the
//! crate's; this file only wires them to the agent.
//!
//! Nothing here blocks the agent: [`Reporting::submit`] hands the input to the reporter's
//! channel (the latest wins) and returns; Placement down, slow or refusing shows in the
//! status, never in discovery, the local API or claims.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pcitrack_devspec::Entry;
use pcitrack_placement::{
    Auth, Change, ClientConfig, KeystonePassword, PciView, PlacementClient, ProviderTree,
    ReportInput, ReportStatus, ReporterHandle,
};
use pcitrack_tracker::TrackedDevice;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::agent::lock;
use crate::config::{Config, PlacementSection};
use crate::store::provider_uuids::{self, Kept};

/// The client settings `[placement]` gives. Call only on a checked section
/// ([`PlacementSection::check`]): a missing field is an empty string here.
pub fn client_config(p: &PlacementSection) -> ClientConfig {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let auth = match p.auth_type.as_deref() {
        Some("password") => Auth::Password(KeystonePassword {
            auth_url: text(&p.auth_url),
            username: text(&p.username),
            password: text(&p.password),
            project_name: text(&p.project_name),
            user_domain_name: text(&p.user_domain_name),
            project_domain_name: text(&p.project_domain_name),
            region_name: p.region_name.clone(),
            valid_interfaces: p.valid_interfaces(),
        }),
        _ => Auth::Token(text(&p.token)),
    };
    ClientConfig {
        auth,
        endpoint_override: p.endpoint_url().map(String::from),
        timeout: p.timeout(),
    }
}

/// The reporter and what the agent keeps for it.
pub struct Reporting {
    handle: ReporterHandle,
    /// The root provider's name (`[placement] host` at start).
    host: String,
    adopt_root: bool,
    /// The uuids kept in the database, as the reporter last gave them.
    kept: Arc<Mutex<Kept>>,
    /// The `[placement]` section in force (a change takes effect at the next start).
    section: PlacementSection,
}

impl Reporting {
    /// Starts the reporter when `config` reports to Placement: loads the kept uuids from
    /// `db` and spawns the reporter thread, which keeps the uuids it generates there.
    /// Nothing is sent before the first [`Reporting::submit`].
    ///
    /// # Errors
    ///
    /// The kept uuids cannot be read from the database.
    pub fn start(config: &Config) -> anyhow::Result<Option<Reporting>> {
        if !config.pci.report_in_placement {
            return Ok(None);
        }
        let section = config.placement.clone();
        let host = section.host_name();
        let db: PathBuf = config.db();
        let kept = Arc::new(Mutex::new(provider_uuids::load(&db, &host)?));
        let client = PlacementClient::new(client_config(&section));
        let persist = {
            let kept = kept.clone();
            let host = host.clone();
            Box::new(move |providers: &BTreeMap<_, Uuid>, root: Uuid| {
                if let Err(e) = provider_uuids::save(&db, &host, providers, root) {
                    tracing::error!(
                        error = %format!("{e:#}"),
                        "cannot keep the Placement provider uuids; they stay in memory until the next start"
                    );
                }
                let mut kept = lock(&kept);
                kept.providers
                    .extend(providers.iter().map(|(a, u)| (*a, *u)));
                kept.root = Some(root);
            })
        };
        let handle = ReporterHandle::spawn(client, persist);
        tracing::info!(root = %host, "reporting PCI devices to Placement");
        Ok(Some(Reporting {
            handle,
            host,
            adopt_root: section.adopt_root,
            kept,
            section,
        }))
    }

    /// The reporter.
    pub fn handle(&self) -> &ReporterHandle {
        &self.handle
    }

    /// Whether `config` asks for another reporter than this one (takes effect at the next
    /// start).
    pub fn differs(&self, config: &Config) -> bool {
        !config.pci.report_in_placement || config.placement != self.section
    }

    /// Hands the reporter what Placement should hold now: the tracked devices under
    /// `config`'s device_spec. Returns at once.
    pub fn submit(&self, config: &Config, devices: Vec<TrackedDevice>) {
        let kept = lock(&self.kept).clone();
        self.handle.submit(ReportInput {
            host: self.host.clone(),
            device_spec: config
                .pci
                .device_spec
                .iter()
                .map(|s| Entry::Json(s.clone()))
                .collect(),
            devices,
            known_uuids: kept.providers,
            root_uuid: kept.root,
            adopt_root: self.adopt_root,
        });
    }

    /// The reporting state for `/v1/health`.
    pub fn status(&self) -> StatusRow {
        StatusRow::from(&self.handle.status())
    }

    /// What the agent reports, what Placement holds now and the differences. Reads Placement:
    /// call it on a blocking thread.
    pub fn show(&self) -> PlacementShow {
        let status = self.status();
        let view = self.handle.last_view();
        let (tree, placement_error) = match self.handle.client().read_tree(&self.host) {
            Ok(tree) => (Some(tree.unwrap_or_default()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let root_uuid = tree
            .as_ref()
            .and_then(|t| t.by_name(&self.host).map(|r| r.uuid))
            .or(lock(&self.kept).root);
        let differences = match (&view, &tree) {
            (Some(view), Some(tree)) => {
                differences(view, root_uuid.unwrap_or_else(Uuid::nil), tree)
            }
            _ => Vec::new(),
        };
        let in_step = view.is_some() && tree.is_some() && differences.is_empty();
        PlacementShow {
            enabled: true,
            root_name: Some(self.host.clone()),
            root_uuid,
            status: Some(status),
            reported: view.as_deref().map(reported_rows),
            placement: tree.as_ref().map(|t| held_rows(t, &self.host)),
            placement_error,
            differences,
            in_step,
        }
    }

    /// Stops the reporter thread.
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }
}

/// The reporting state, as `/v1/health` shows it under `placement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusRow {
    /// Whether the agent reports to Placement (`[pci] report_in_placement`).
    pub enabled: bool,
    /// `starting`, `in_step`, `pending` (changes not yet accepted) or `refused` (the agent
    /// will not report: the reason is in `last_error`).
    pub state: Option<String>,
    /// When Placement last accepted a report (or confirmed nothing had to change), Unix
    /// seconds.
    pub last_success: Option<u64>,
    /// When the reporter last tried, Unix seconds.
    pub last_attempt: Option<u64>,
    /// Changes waiting to be accepted by Placement.
    pub pending_changes: u32,
    /// Why the last attempt failed (cleared by a success).
    pub last_error: Option<String>,
}

impl StatusRow {
    /// Reporting is off.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Whether Placement is behind or refused: `/v1/health` says `degraded` (its `ok` stays
    /// true: the host serves its devices locally all the same).
    pub fn degraded(&self) -> bool {
        self.enabled && (self.state.as_deref() == Some("refused") || self.last_error.is_some())
    }
}

impl From<&ReportStatus> for StatusRow {
    fn from(s: &ReportStatus) -> Self {
        Self {
            enabled: true,
            state: Some(s.state.as_str().to_string()),
            last_success: s.last_success,
            last_attempt: s.last_attempt,
            pending_changes: s.pending_changes,
            last_error: s.last_error.clone(),
        }
    }
}

/// One inventory, as reported or as held. Fields the agent leaves to Placement are `None`
/// on the reported side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryRow {
    /// Units.
    pub total: u32,
    /// Units that may not be allocated (`None`: Placement's value is left alone).
    pub reserved: Option<u32>,
    /// The largest allocation.
    pub max_unit: u32,
    /// The smallest allocation (held side only).
    pub min_unit: Option<u32>,
    /// Allocation granularity (held side only).
    pub step_size: Option<u32>,
    /// Overcommit factor (held side only).
    pub allocation_ratio: Option<f64>,
}

/// One resource provider, as the agent reports it or as Placement holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderRow {
    /// Its name (`<host>_<ADDRESS>`; the root's is the host).
    pub name: String,
    /// Its uuid.
    pub uuid: Uuid,
    /// Its parent (held side; `None` for the root).
    pub parent_uuid: Option<Uuid>,
    /// Inventories by resource class.
    pub inventories: BTreeMap<String, InventoryRow>,
    /// Traits, sorted.
    pub traits: Vec<String>,
    /// Units allocated by resource class (held side).
    pub usages: BTreeMap<String, u32>,
    /// The devices behind it (reported side).
    pub devices: Vec<String>,
}

/// `GET /v1/placement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlacementShow {
    /// Whether the agent reports to Placement; when false, the rest is empty.
    pub enabled: bool,
    /// The root provider's name.
    pub root_name: Option<String>,
    /// The root provider's uuid, when known.
    pub root_uuid: Option<Uuid>,
    /// The reporting state.
    pub status: Option<StatusRow>,
    /// The providers the agent reports (its last view); `None` before the first one.
    pub reported: Option<Vec<ProviderRow>>,
    /// The providers of the host's tree in Placement now; `None` when it could not be read.
    pub placement: Option<Vec<ProviderRow>>,
    /// Why Placement could not be read.
    pub placement_error: Option<String>,
    /// The changes that would bring Placement to the reported view, one line each.
    pub differences: Vec<String>,
    /// Both sides read and no difference.
    pub in_step: bool,
}

impl PlacementShow {
    /// Reporting is off.
    pub fn disabled() -> Self {
        Self::default()
    }
}

fn reported_rows(view: &PciView) -> Vec<ProviderRow> {
    view.providers
        .iter()
        .map(|p| ProviderRow {
            name: p.name.clone(),
            uuid: p.uuid,
            parent_uuid: None,
            inventories: p
                .inventories
                .iter()
                .map(|(rc, i)| {
                    (
                        rc.clone(),
                        InventoryRow {
                            total: i.total,
                            reserved: i.reserved,
                            max_unit: i.max_unit,
                            min_unit: None,
                            step_size: None,
                            allocation_ratio: None,
                        },
                    )
                })
                .collect(),
            traits: p.traits.iter().cloned().collect(),
            usages: BTreeMap::new(),
            devices: p.devices.iter().map(|d| d.to_string()).collect(),
        })
        .collect()
}

/// The tree's providers, the root first, then by name.
fn held_rows(tree: &ProviderTree, root: &str) -> Vec<ProviderRow> {
    let mut providers: Vec<_> = tree.providers.iter().collect();
    providers.sort_by_key(|p| (p.name != root, p.name.clone()));
    providers
        .into_iter()
        .map(|p| ProviderRow {
            name: p.name.clone(),
            uuid: p.uuid,
            parent_uuid: p.parent_uuid,
            inventories: p
                .inventories
                .iter()
                .map(|(rc, i)| {
                    (
                        rc.clone(),
                        InventoryRow {
                            total: i.total,
                            reserved: Some(i.reserved),
                            max_unit: i.max_unit,
                            min_unit: Some(i.min_unit),
                            step_size: Some(i.step_size),
                            allocation_ratio: Some(i.allocation_ratio),
                        },
                    )
                })
                .collect(),
            traits: p.traits.iter().cloned().collect(),
            usages: p.usages.clone(),
            devices: Vec::new(),
        })
        .collect()
}

/// The crate's diff of the view against the tree, one line per change.
fn differences(view: &PciView, root_uuid: Uuid, tree: &ProviderTree) -> Vec<String> {
    pcitrack_placement::diff(view, root_uuid, tree)
        .iter()
        .map(describe)
        .collect()
}

fn describe(change: &Change) -> String {
    let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
    match change {
        Change::CreateResourceClass { name } => format!("create resource class {name}"),
        Change::CreateTrait { name } => format!("create trait {name}"),
        Change::CreateProvider { uuid, name, .. } => format!("create provider {name} ({uuid})"),
        Change::SetInventories {
            name, inventories, ..
        } => {
            let list: Vec<String> = inventories
                .iter()
                .map(|(rc, i)| {
                    format!(
                        "{rc} total={} reserved={} max_unit={}",
                        i.total, i.reserved, i.max_unit
                    )
                })
                .collect();
            format!("set inventories of {name}: {}", list.join("; "))
        }
        Change::SetTraits { name, traits, .. } => {
            format!("set traits of {name}: {}", join(traits))
        }
        Change::DeleteProvider { uuid, name } => format!("delete provider {name} ({uuid})"),
    }
}
