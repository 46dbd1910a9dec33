//! The agent's state and the things it does: reconcile, reload policies, reload its
//! configuration, and serve the tracker's operations. Everything the API, the watchers and
//! the uevent listeners do goes through here.
//!
//! Locking: one reconcile at a time (`reconcile_lock`, held from the scan to the commit so an
//! older scan can never be written after a newer one; it guards the inventory a uevent
//! burst's partial rescan is patched into); the tracker behind its own mutex, held
//! for one transaction at a time (claims and syncs interleave, and SQLite's write lock backs
//! it for other processes); policies in an `ArcSwap`, so an evaluation keeps the set it
//! started with while a reload swaps in the next one.
//!
//! Placement (`[pci] report_in_placement`): after every reconcile and every change of device
//! state, the tracked devices go to the reporter thread ([`super::placement::Reporting`]),
//! which never holds any of these locks.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwap;
use pcitrack_model::{Assessment, DevType, Device, DeviceStatus, PciAddress};
use pcitrack_runtime::PolicySet;
use pcitrack_tracker::{DeviceFilter, HostNumaCell, SqliteStore, TagSets, Tracker};
use serde::Serialize;

use super::metrics::Metrics;
use super::placement::{PlacementShow, Reporting, StatusRow};
use super::registry::{PoliciesReport, PolicyRegistry, RefreshReport};
use crate::config::{Config, ConfigError, Overrides};
use crate::ops::{HexId, TagsView, VerdictView};
use crate::pipeline::{RuntimeCleanup, evaluate, evaluate_some, patch, sync_some};

/// The outcome of one reconcile pass, as the API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileSummary {
    /// What started it (`start`, `uevent`, `timer`, `policy`, `config`, `api`).
    pub trigger: String,
    /// When it finished, in seconds since the Unix epoch.
    pub at: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// Devices sysfs reported (the whole inventory, after an incremental pass too).
    pub discovered: usize,
    /// Whether only the devices a uevent burst named, with their relatives, were re-read
    /// and reconciled (an incremental pass); otherwise the whole host was rescanned.
    pub incremental: bool,
    /// Devices read from sysfs in this pass (every device in a full rescan).
    pub reread: usize,
    /// Devices sysfs could not read (each was named in the log).
    pub skipped: usize,
    /// Devices the matchers made assignable.
    pub assignable: usize,
    /// Tracked devices added, updated, deleted, kept.
    pub added: usize,
    /// See `added`.
    pub updated: usize,
    /// See `added`.
    pub deleted: usize,
    /// See `added`.
    pub kept: usize,
}

/// The verdict rows of the last reconcile (`/v1/verdicts`), sorted by address: an
/// incremental pass copies the list and replaces the few rows it re-assessed, rather than
/// copying and re-parsing thousands of rows.
///
/// Kept compact (issue 14, memory): a row holds the few scalars the API writes and shares its
/// tags, deciding policy and reason with every other row that has the same ones (on an SR-IOV
/// host thousands of VFs have one tag set and a handful of reasons). Each row used to own
/// its strings and its tag map, ~0.7 KB per device (a `BTreeMap` node alone is 0.5 KB): 2.9 MB
/// of a 4112-device agent's heap. The JSON is `VerdictRow`'s, written by `VerdictView`.
#[derive(Default)]
pub struct Verdicts(Vec<KeptVerdict>);

/// One row of [`Verdicts`].
#[derive(Clone)]
struct KeptVerdict {
    address: PciAddress,
    vendor_id: u16,
    product_id: u16,
    dev_type: DevType,
    assignable: bool,
    remote_managed: bool,
    tags: Arc<BTreeMap<String, String>>,
    decided_by: Arc<str>,
    reason: Option<Arc<str>>,
}

/// One copy of each distinct text (deciding policy, reason) among the rows of one assessment.
#[derive(Default)]
struct Texts(HashSet<Arc<str>>);

impl Texts {
    fn share(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(shared.clone());
        shared
    }
}

impl Verdicts {
    fn of(assessed: &[Assessment]) -> Verdicts {
        let (mut tag_sets, mut texts) = (TagSets::default(), Texts::default());
        Verdicts(
            assessed
                .iter()
                .map(|a| KeptVerdict {
                    address: a.device.address,
                    vendor_id: a.device.vendor_id,
                    product_id: a.device.product_id,
                    dev_type: a.device.dev_type,
                    assignable: a.assignable,
                    remote_managed: a.remote_managed,
                    tags: tag_sets.share(&a.tags),
                    decided_by: texts.share(&a.decided_by),
                    reason: a.reason.as_deref().map(|r| texts.share(r)),
                })
                .collect(),
        )
    }
}

impl Serialize for Verdicts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| VerdictView {
            address: &r.address,
            vendor_id: HexId(r.vendor_id),
            product_id: HexId(r.product_id),
            dev_type: r.dev_type,
            assignable: r.assignable,
            tags: TagsView::Map(&r.tags),
            remote_managed: r.remote_managed,
            decided_by: &r.decided_by,
            reason: r.reason.as_deref(),
        }))
    }
}

/// The running agent.
pub struct Agent {
    config_path: Option<PathBuf>,
    overrides: Overrides,
    config: ArcSwap<Config>,
    policies: ArcSwap<PolicySet>,
    registry: Mutex<PolicyRegistry>,
    tracker: Mutex<Tracker<SqliteStore>>,
    /// One reconcile at a time; the inventory: the last full scan with the partial rescans
    /// since patched in, sorted by address (what the policies see in an incremental pass).
    reconcile_lock: Mutex<Vec<Device>>,
    verdicts: ArcSwap<Verdicts>,
    last_reconcile: Mutex<Option<ReconcileSummary>>,
    last_config_error: Mutex<Option<String>>,
    host_cells: ArcSwap<Vec<HostNumaCell>>,
    stopping: AtomicBool,
    /// The Placement reporter, when `[pci] report_in_placement` was on at start.
    placement: Option<Reporting>,
    /// The agent's counters.
    pub metrics: Metrics,
    started: Instant,
}

/// Locks one of the agent's mutexes, poisoned or not (also used by `placement.rs`).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves consistent data (the tracker rolls back).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Logs what a sync did, device by device.
fn log_sync(sync: &pcitrack_tracker::SyncReport) {
    for a in &sync.added {
        tracing::info!(device = %a, "device added");
    }
    for a in &sync.deleted {
        tracing::info!(device = %a, "device deleted");
    }
    for (a, why) in &sync.kept {
        tracing::debug!(device = %a, reason = %why, "unreported device kept");
    }
}

/// The phases of one reconcile pass and the milliseconds each took, logged at debug level
/// (`RUST_LOG=pcitrack::daemon::agent=debug`) as one `reconcile phases` line: where a pass's
/// time goes (the reconcile bench reads it), without a line per phase in the ordinary log.
struct Phases {
    last: Instant,
    spent: Vec<(&'static str, f64)>,
}

impl Phases {
    fn new(started: Instant) -> Phases {
        Phases {
            last: started,
            spent: Vec::with_capacity(8),
        }
    }

    /// Ends the phase `name`, begun when the previous one ended.
    fn end(&mut self, name: &'static str) {
        let now = Instant::now();
        self.spent
            .push((name, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }

    fn log(&self) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let phases: Vec<String> = self
                .spent
                .iter()
                .map(|(name, ms)| format!("{name}={ms:.3}"))
                .collect();
            tracing::debug!(phases = %phases.join(" "), "reconcile phases");
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Agent {
    /// Opens the database, loads the policies and reconciles once.
    pub fn start(config_path: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<Arc<Agent>> {
        let config = overrides
            .effective(config_path.as_deref())
            .context("loading the configuration")?;
        let state = config.state_dir();
        std::fs::create_dir_all(&state)
            .with_context(|| format!("creating the state directory {}", state.display()))?;
        let tracker = crate::store::open_tracker(&config.db())?;
        let mut registry =
            PolicyRegistry::new(&config, &config.policies_dir()).map_err(anyhow::Error::msg)?;
        let refresh = registry.refresh();
        let set = registry.set();
        let metrics = Metrics::default();
        metrics.reload("loaded", refresh.loaded.len() as u64);
        metrics.reload("refused", refresh.refused.len() as u64);
        let placement = Reporting::start(&config).context("starting the Placement reporter")?;
        let agent = Arc::new(Agent {
            config_path,
            overrides,
            config: ArcSwap::from_pointee(config),
            policies: ArcSwap::from_pointee(set),
            registry: Mutex::new(registry),
            tracker: Mutex::new(tracker),
            reconcile_lock: Mutex::new(Vec::new()),
            verdicts: ArcSwap::from_pointee(Verdicts::default()),
            last_reconcile: Mutex::new(None),
            last_config_error: Mutex::new(None),
            host_cells: ArcSwap::from_pointee(Vec::new()),
            stopping: AtomicBool::new(false),
            placement,
            metrics,
            started: Instant::now(),
        });
        agent.reconcile("start").context("the first reconcile")?;
        Ok(agent)
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Scans sysfs, evaluates the policies and brings the database in line. One at a time.
    pub fn reconcile(&self, trigger: &str) -> anyhow::Result<ReconcileSummary> {
        self.reconcile_with(trigger, None)
    }

    /// A uevent burst's incremental reconcile: re-reads only the devices `named` with their
    /// relatives (`pcitrack_discovery::rescan`), assesses them within the whole inventory
    /// and reconciles exactly those. Falls back to a full rescan when the partial one
    /// cannot read the device directory.
    pub fn reconcile_devices(
        &self,
        named: &BTreeSet<PciAddress>,
    ) -> anyhow::Result<ReconcileSummary> {
        self.reconcile_with("uevent", Some(named))
    }

    fn reconcile_with(
        &self,
        trigger: &str,
        named: Option<&BTreeSet<PciAddress>>,
    ) -> anyhow::Result<ReconcileSummary> {
        let mut inventory = lock(&self.reconcile_lock);
        if self.stopping() {
            anyhow::bail!("the agent is stopping");
        }
        let span = tracing::info_span!("reconcile", trigger);
        let _enter = span.enter();
        let started = Instant::now();
        let result = match named {
            Some(named) => self.reconcile_some(&mut inventory, named, started),
            None => self.reconcile_locked(&mut inventory, trigger, started),
        };
        match &result {
            Ok(s) => {
                self.metrics
                    .reconciled(trigger, started.elapsed().as_secs_f64());
                tracing::info!(
                    duration_ms = s.duration_ms,
                    incremental = s.incremental,
                    reread = s.reread,
                    discovered = s.discovered,
                    added = s.added,
                    updated = s.updated,
                    deleted = s.deleted,
                    "reconciled"
                );
                *lock(&self.last_reconcile) = Some(s.clone());
                // The periodic resync also re-reads Placement, so that what someone else
                // changed there (an inventory, a trait) is put right even on a quiet host: Nova
                // refreshes its provider cache on the same 300 s default
                // (`[compute] resource_provider_association_refresh`, nova/conf/compute.py).
                if trigger == "timer"
                    && let Some(reporter) = self.placement()
                {
                    reporter.resync();
                }
                self.report_placement();
            }
            Err(e) => {
                self.metrics.reconcile_failed();
                tracing::error!(error = %format!("{e:#}"), "reconcile failed; nothing changed");
            }
        }
        result
    }

    fn reconcile_locked(
        &self,
        inventory: &mut Vec<Device>,
        trigger: &str,
        started: Instant,
    ) -> anyhow::Result<ReconcileSummary> {
        let mut phases = Phases::new(started);
        let root = self.config().sysfs_root();
        let listing = root.join("bus/pci/devices");
        // An unreadable listing is not an empty host: deleting every device on a transient
        // error would be the worst possible answer.
        std::fs::read_dir(&listing)
            .with_context(|| format!("cannot list {}", listing.display()))?;
        let report = pcitrack_discovery::scan(&root);
        phases.end("scan");
        let topology = pcitrack_discovery::numa_topology(&root);
        self.host_cells
            .store(Arc::new(crate::ops::host_cells(&topology)));
        phases.end("topology");
        for s in &report.skipped {
            tracing::warn!(device = %s.entry, reason = %s.reason, "skipped an unreadable device");
        }
        let set = self.evaluation_set();
        let assessed = evaluate(&set, &report.devices);
        phases.end("evaluate");
        let sync = {
            let mut tracker = lock(&self.tracker);
            phases.end("tracker_lock");
            tracker
                .sync(&assessed, &RuntimeCleanup(&set))
                .context("writing the reconcile")?
        };
        phases.end("sync");
        log_sync(&sync);
        self.verdicts.store(Arc::new(Verdicts::of(&assessed)));
        phases.end("verdicts");
        phases.log();
        let summary = ReconcileSummary {
            trigger: trigger.to_string(),
            at: now_secs(),
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            discovered: report.devices.len(),
            incremental: false,
            reread: report.devices.len() + report.skipped.len(),
            skipped: report.skipped.len(),
            assignable: assessed.iter().filter(|a| a.assignable).count(),
            added: sync.added.len(),
            updated: sync.updated.len(),
            deleted: sync.deleted.len(),
            kept: sync.kept.len(),
        };
        *inventory = report.devices;
        Ok(summary)
    }

    /// The incremental pass of [`Agent::reconcile_devices`], under the reconcile lock.
    fn reconcile_some(
        &self,
        inventory: &mut Vec<Device>,
        named: &BTreeSet<PciAddress>,
        started: Instant,
    ) -> anyhow::Result<ReconcileSummary> {
        let mut phases = Phases::new(started);
        let root = self.config().sysfs_root();
        let rescan = match pcitrack_discovery::rescan(&root, inventory, named) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the devices a uevent named; full rescan");
                return self.reconcile_locked(inventory, "uevent", started);
            }
        };
        for s in &rescan.skipped {
            tracing::warn!(device = %s.entry, reason = %s.reason, "skipped an unreadable device");
        }
        phases.end("rescan");
        let scope = rescan.scope;
        let skipped = rescan.skipped.len();
        let reread = rescan.devices.len() + skipped;
        let devices = patch(
            std::mem::take(inventory),
            |d| d.address,
            &scope,
            rescan.devices,
        );
        phases.end("patch");
        let set = self.evaluation_set();
        let assessed = evaluate_some(&set, &devices, &scope);
        phases.end("evaluate");
        let result = {
            let mut tracker = lock(&self.tracker);
            phases.end("tracker_lock");
            sync_some(&mut tracker, &set, &assessed, &scope)
        };
        phases.end("sync");
        let discovered = devices.len();
        *inventory = devices;
        let sync = match result {
            Ok(done) => done,
            Err(e) => {
                // The inventory has the re-read devices but the database does not: only a
                // full pass brings both in line again.
                tracing::error!(error = %e, "writing the incremental reconcile failed; full rescan");
                return self.reconcile_locked(inventory, "uevent", started);
            }
        };
        log_sync(&sync);
        let rows = patch(
            self.verdicts.load().0.clone(),
            |r| r.address,
            &scope,
            Verdicts::of(&assessed).0,
        );
        let assignable = rows.iter().filter(|r| r.assignable).count();
        self.verdicts.store(Arc::new(Verdicts(rows)));
        phases.end("verdicts");
        phases.log();
        Ok(ReconcileSummary {
            trigger: "uevent".to_string(),
            at: now_secs(),
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            discovered,
            incremental: true,
            reread,
            skipped,
            assignable,
            added: sync.added.len(),
            updated: sync.updated.len(),
            deleted: sync.deleted.len(),
            kept: sync.kept.len(),
        })
    }

    /// Looks at the policies directory again and swaps in what changed; reconciles when a
    /// matcher or tagger changed, since devices may have become assignable or not.
    pub fn refresh_policies(&self) -> RefreshReport {
        let report = {
            let mut registry = lock(&self.registry);
            let report = registry.refresh();
            if !report.kinds.is_empty() {
                self.policies.store(Arc::new(registry.set()));
            }
            report
        };
        self.metrics.reload("loaded", report.loaded.len() as u64);
        self.metrics.reload("refused", report.refused.len() as u64);
        if report.affects_assessment() {
            let _ = self.reconcile("policy");
        }
        report
    }

    /// Reads the configuration again. A configuration that does not parse, that Nova's rules
    /// refuse (a bad `[pci] alias` entry), or that a policy refuses, is not taken: the last
    /// good one stays (claims keep using its aliases), the error is kept for `/v1/health`
    /// (`config_error`, `ok: false`) and counted by reason in the metrics.
    ///
    /// # Errors
    ///
    /// Why the new configuration was refused.
    pub fn reload_config(&self) -> anyhow::Result<()> {
        let result = self.try_reload_config();
        match &result {
            Ok(()) => {
                self.metrics.reload("config-loaded", 1);
                *lock(&self.last_config_error) = None;
                tracing::info!("configuration reloaded");
                let _ = self.reconcile("config");
            }
            Err(e) => {
                self.metrics.reload("config-refused", 1);
                let reason = e
                    .downcast_ref::<ConfigError>()
                    .map_or("policy", ConfigError::reason);
                self.metrics.config_reload_failed(reason);
                let text = format!("{e:#}");
                tracing::error!(error = %text, "configuration refused; the last good one stays");
                *lock(&self.last_config_error) = Some(text);
            }
        }
        result
    }

    fn try_reload_config(&self) -> anyhow::Result<()> {
        let config = self.overrides.effective(self.config_path.as_deref())?;
        let old = self.config();
        let placement_changed = match &self.placement {
            Some(r) => r.differs(&config),
            None => config.pci.report_in_placement,
        };
        if placement_changed {
            tracing::warn!(
                setting = "[pci] report_in_placement / [placement]",
                "changed; takes effect at the next start"
            );
        }
        for (what, a, b) in [
            ("[agent] db", old.db(), config.db()),
            ("[api] socket", old.socket(), config.socket()),
        ] {
            if a != b {
                tracing::warn!(setting = what, "changed; takes effect at the next start");
            }
        }
        let mut registry =
            PolicyRegistry::new(&config, &config.policies_dir()).map_err(anyhow::Error::msg)?;
        registry.refresh();
        if let Some(e) = registry.config_refusals().first() {
            anyhow::bail!("a policy refused the new configuration: {e}");
        }
        let set = registry.set();
        *lock(&self.registry) = registry;
        self.policies.store(Arc::new(set));
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// The Placement reporter, when the agent reports to Placement.
    pub fn placement(&self) -> Option<&pcitrack_placement::ReporterHandle> {
        self.placement.as_ref().map(Reporting::handle)
    }

    /// Hands the reporter what Placement should hold now (after a reconcile, an allocation,
    /// a free or a release: anything that changes the devices or their reservation). Returns
    /// at once; the reporter sends nothing when nothing changed.
    pub fn report_placement(&self) {
        let Some(reporting) = &self.placement else {
            return;
        };
        match self.with_tracker(|t| t.devices(&DeviceFilter::default())) {
            Ok(devices) => reporting.submit(&self.config(), devices),
            Err(e) => tracing::error!(error = %e, "cannot read the devices to report to Placement"),
        }
    }

    /// The reporting state (`enabled: false` when the agent does not report).
    pub fn placement_status(&self) -> StatusRow {
        self.placement
            .as_ref()
            .map_or_else(StatusRow::disabled, Reporting::status)
    }

    /// What the agent reports, what Placement holds, and the differences. Reads Placement:
    /// call it on a blocking thread.
    pub fn placement_show(&self) -> PlacementShow {
        self.placement
            .as_ref()
            .map_or_else(PlacementShow::disabled, Reporting::show)
    }

    /// Runs `f` on the tracker, one transaction at a time.
    pub fn with_tracker<R>(&self, f: impl FnOnce(&mut Tracker<SqliteStore>) -> R) -> R {
        f(&mut lock(&self.tracker))
    }

    /// The effective chains and every policy's status.
    pub fn policies_report(&self) -> PoliciesReport {
        lock(&self.registry).report()
    }

    /// The chains to evaluate with: the effective policy set, with the host's NUMA node
    /// sockets from the last full scan for the policies' device facts
    /// (`host.get-device-facts`, contract 0.1.1).
    fn evaluation_set(&self) -> PolicySet {
        self.policies
            .load()
            .with_node_sockets(crate::pipeline::node_sockets(&self.host_cells()))
    }

    /// The host's NUMA cells and their sockets, as read at the last start or rescan.
    pub fn host_cells(&self) -> Arc<Vec<HostNumaCell>> {
        self.host_cells.load_full()
    }

    /// The verdicts of the last reconcile.
    pub fn verdicts(&self) -> Arc<Verdicts> {
        self.verdicts.load_full()
    }

    /// Reserved devices (used one-time-use devices waiting for release), for metrics.
    pub fn reserved_devices(&self) -> i64 {
        self.with_tracker(|t| t.devices(&DeviceFilter::default()))
            .map(|d| d.iter().filter(|d| d.reserved).count() as i64)
            .unwrap_or_default()
    }

    /// Devices by status, for metrics.
    pub fn devices_by_status(&self) -> Vec<(String, i64)> {
        let devices = self
            .with_tracker(|t| t.devices(&DeviceFilter::default()))
            .unwrap_or_default();
        let mut counts: std::collections::BTreeMap<String, i64> = [
            DeviceStatus::Available,
            DeviceStatus::Claimed,
            DeviceStatus::Allocated,
            DeviceStatus::Unavailable,
            DeviceStatus::Unclaimable,
        ]
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
        for d in devices {
            *counts.entry(d.status.to_string()).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// Health: up, with the last reconcile, the last refused configuration, and the policy
    /// files whose newest version was refused (names, and each one's reason). While the
    /// newest configuration is refused (the agent runs on the last good one), `ok` is false,
    /// `status` is `degraded` and `config_error` says why. While Placement refuses the report
    /// or cannot be reached, `status` is `degraded` but `ok` stays true: the host serves its
    /// devices locally all the same, and a load balancer reading `ok` must not take it out
    /// for a fleet-level problem; `placement` says what is behind.
    pub fn health(&self) -> serde_json::Value {
        let report = self.policies_report();
        let refused: Vec<(&str, &str)> = report
            .policies
            .iter()
            .filter_map(|p| {
                p.refused
                    .as_ref()
                    .map(|r| (p.name.as_str(), r.error.as_str()))
            })
            .collect();
        let names: Vec<&str> = refused.iter().map(|(name, _)| *name).collect();
        let errors: Vec<serde_json::Value> = refused
            .iter()
            .map(|(name, error)| serde_json::json!({ "policy": name, "error": error }))
            .collect();
        let config_error = lock(&self.last_config_error).clone();
        let ok = config_error.is_none();
        let placement = self.placement_status();
        let degraded = !ok || placement.degraded();
        serde_json::json!({
            "status": if degraded { "degraded" } else { "ok" },
            "ok": ok,
            "uptime_secs": self.started.elapsed().as_secs(),
            "last_reconcile": *lock(&self.last_reconcile),
            "config_error": config_error,
            "refused_policies": names,
            "policy_errors": errors,
            "placement": placement,
        })
    }

    /// The last reconcile that succeeded.
    pub fn last_reconcile(&self) -> Option<ReconcileSummary> {
        lock(&self.last_reconcile).clone()
    }

    /// Stops taking work and waits for the reconcile and the transaction in flight.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _reconcile = lock(&self.reconcile_lock);
        let _tracker = lock(&self.tracker);
        if let Some(p) = &self.placement {
            p.shutdown();
        }
        tracing::info!("in-flight work finished; stopping");
    }
}
