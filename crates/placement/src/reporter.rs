//! Keeping Placement in step with the host: [`Reporter`] makes one report (read what
//! Placement holds, compute the [`PciView`] and the [`diff()`], send the changes), and
//! [`ReporterHandle`] runs it on a thread of its own so that Placement down, slow or answering
//! 5xx never blocks discovery, the local API or claims.
//!
//! Rules:
//! * Nothing is sent, not even a read, when the view (providers, inventories, traits)
//!   computed against the tree as last written equals the one last applied.
//! * The tree read from Placement is cached after a successful report and updated by each
//!   write; any failure forgets it. Writes name the provider generation, which every
//!   allocation also moves, so a write based on a stale cache is refused (409) rather than
//!   applied: the reporter then re-reads, recomputes the view and the diff and tries again,
//!   at most [`MAX_ATTEMPTS`] times per report.
//! * A configuration Nova's guards refuse (`devname` specs, a PF and its VFs, mixed VFs) is
//!   refused before any call.
//! * Ownership: the root provider (the `[placement] host` name) is created when missing, its
//!   uuid persisted before it is created; an existing root whose uuid is not the one
//!   persisted is used only with `adopt_root`; PCI providers pcitrack did not write refuse
//!   the report always ([`ViewError::ForeignPciProviders`]).
//! * The thread blocks on its channel while idle (no timer, no wake-up); only while a retry
//!   is due does it wait with a timeout: 1 s, doubling to 60 s, until a report succeeds. A
//!   refused report is not retried on a timer: the next submitted input (or a resync) tries
//!   again.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pcitrack_devspec::Entry;
use pcitrack_model::PciAddress;
use pcitrack_tracker::TrackedDevice;
use uuid::Uuid;

use crate::auth::now;
use crate::client::{ApplyError, ClientError, PlacementClient};
use crate::diff::diff;
use crate::tree::ProviderTree;
use crate::view::{PciProvider, PciView, ViewError, ViewInput, view};

/// Attempts per report when Placement answers 409 (the first included).
pub const MAX_ATTEMPTS: u32 = 4;

/// Everything one report needs, built by the agent after a reconcile.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The root provider's name (`[placement] host`, by default the host name).
    pub host: String,
    /// The configured `[pci] device_spec` (for Nova's `devname` guard).
    pub device_spec: Vec<Entry>,
    /// The tracked devices.
    pub devices: Vec<TrackedDevice>,
    /// Provider uuids kept from before, by device address (the PF's for VFs).
    pub known_uuids: BTreeMap<PciAddress, Uuid>,
    /// The root provider uuid pcitrack created before, if any.
    pub root_uuid: Option<Uuid>,
    /// Use an existing root provider pcitrack did not create (`[placement] adopt_root`).
    pub adopt_root: bool,
}

/// The reporting state, for `/v1/health` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    /// No report finished yet.
    Starting,
    /// Placement holds what the host reports.
    InStep,
    /// Changes wait to be sent (Placement unreachable, slow, failing); retried with backoff.
    Pending,
    /// The report was refused for a reason a retry does not fix (foreign providers or root,
    /// a configuration Nova refuses): see `last_error`.
    Refused,
}

impl ReportState {
    /// `starting`, `in_step`, `pending` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Starting => "starting",
            ReportState::InStep => "in_step",
            ReportState::Pending => "pending",
            ReportState::Refused => "refused",
        }
    }
}

/// What the reporter has done, for `/v1/health` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportStatus {
    /// The state.
    pub state: ReportState,
    /// When a report last succeeded (unix seconds).
    pub last_success: Option<u64>,
    /// When a report was last attempted (unix seconds).
    pub last_attempt: Option<u64>,
    /// Changes known to wait to be sent (0 when in step; at least 1 while pending).
    pub pending_changes: u32,
    /// The last failure or refusal, cleared by a success.
    pub last_error: Option<String>,
    /// Reports that succeeded (those that had nothing to send included).
    pub reports_total: u64,
    /// Reports that failed or were refused.
    pub failures_total: u64,
    /// 409 answers to writes, each making the reporter re-read Placement (counted also when
    /// that report then failed for another reason).
    pub conflicts_total: u64,
    /// HTTP calls made, reads and writes.
    pub calls_total: u64,
    /// Changes sent ([`Change`]s accepted by Placement).
    pub changes_total: u64,
}

impl Default for ReportStatus {
    fn default() -> Self {
        Self {
            state: ReportState::Starting,
            last_success: None,
            last_attempt: None,
            pending_changes: 0,
            last_error: None,
            reports_total: 0,
            failures_total: 0,
            conflicts_total: 0,
            calls_total: 0,
            changes_total: 0,
        }
    }
}

/// Why a report did not bring Placement in step.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    /// Placement (or Keystone) failed; retried with backoff.
    #[error("reporting to Placement failed: {0}")]
    Client(#[from] ClientError),
    /// Placement answered 409 to every attempt.
    #[error(
        "Placement answered 409 to {attempts} attempts in a row (re-reading the tree each \
         time); last: {last}"
    )]
    Conflicts {
        /// How many.
        attempts: u32,
        /// The last 409.
        last: ClientError,
    },
    /// Nova's guards refuse the configuration, or the tree holds PCI providers pcitrack did
    /// not write.
    #[error(transparent)]
    View(#[from] ViewError),
    /// The root provider exists and pcitrack did not create it.
    #[error(
        "Placement already has a root provider named {root} ({uuid}) that pcitrack did not \
         create{ours}: it belongs to nova-compute or another agent of this host. pcitrack \
         refuses to report under it; set [placement] adopt_root = true to report pcitrack's \
         PCI providers under it (a host where pcitrack replaces nova-compute's PCI \
         reporting), or [placement] host to another name"
    )]
    ForeignRoot {
        /// The root's name.
        root: String,
        /// Its uuid.
        uuid: Uuid,
        /// `" (pcitrack created <uuid>)"` when pcitrack had created another root.
        ours: String,
    },
}

impl ReportError {
    /// Whether a retry may succeed without a change of configuration or of Placement's
    /// providers (transport errors, 5xx, conflicts).
    pub fn is_transient(&self) -> bool {
        matches!(self, ReportError::Client(_) | ReportError::Conflicts { .. })
    }
}

/// What one successful report did.
#[derive(Debug, Clone)]
pub struct ReportOutcome {
    /// The view reported.
    pub view: Arc<PciView>,
    /// The root provider's uuid.
    pub root_uuid: Uuid,
    /// HTTP calls made (0 when nothing changed).
    pub calls: u32,
    /// Changes sent.
    pub changes: u32,
    /// 409s met (each followed by a re-read).
    pub conflicts: u32,
}

/// Called with the provider uuids pcitrack must keep (by device address) and the root
/// provider's uuid, before Placement is told about them.
pub type Persist = Box<dyn Fn(&BTreeMap<PciAddress, Uuid>, Uuid) + Send>;

/// One host's reporting, synchronous: what [`ReporterHandle`] runs on its thread, usable
/// alone (tests, one-shot commands).
#[derive(Debug)]
pub struct Reporter {
    client: PlacementClient,
    /// What Placement holds as last read and written; `None` after a failure.
    cache: Option<ProviderTree>,
    /// The providers last applied (what the skip compares).
    applied: Option<Vec<Reported>>,
    /// Uuids handed to `persist` (merged over the input's).
    known: BTreeMap<PciAddress, Uuid>,
    root_uuid: Option<Uuid>,
    /// Changes the last failed attempt did not send.
    pending: u32,
    /// Every 409 met, whether or not its report succeeded in the end.
    conflicts_met: u64,
}

/// The part of a provider Placement sees (what the skip compares).
#[derive(Debug, Clone, PartialEq)]
struct Reported {
    name: String,
    uuid: Uuid,
    inventories: BTreeMap<String, crate::view::WantedInventory>,
    traits: std::collections::BTreeSet<String>,
}

impl Reported {
    fn of(view: &PciView) -> Vec<Reported> {
        view.providers
            .iter()
            .map(|p: &PciProvider| Reported {
                name: p.name.clone(),
                uuid: p.uuid,
                inventories: p.inventories.clone(),
                traits: p.traits.clone(),
            })
            .collect()
    }
}

impl Reporter {
    /// A reporter with nothing cached.
    pub fn new(client: PlacementClient) -> Reporter {
        Reporter {
            client,
            cache: None,
            applied: None,
            known: BTreeMap::new(),
            root_uuid: None,
            pending: 0,
            conflicts_met: 0,
        }
    }

    /// Its client.
    pub fn client(&self) -> &PlacementClient {
        &self.client
    }

    /// Forgets what Placement held and what was applied: the next report re-reads.
    pub fn forget(&mut self) {
        self.cache = None;
        self.applied = None;
    }

    /// Changes the last failed report left unsent (an estimate when the failure came
    /// before the diff: the changes against the tree last known).
    pub fn pending_changes(&self) -> u32 {
        self.pending
    }

    /// Every 409 met so far, counted when it is met: also those of a report that failed
    /// afterwards for another reason (a 409 then a failed re-read), which
    /// [`ReportOutcome::conflicts`] never sees.
    pub fn conflicts_met(&self) -> u64 {
        self.conflicts_met
    }

    /// Brings Placement in step with `input`: nothing sent when the view equals the one
    /// last applied; else the changes, re-reading the tree first when nothing is cached and
    /// after each 409 (at most [`MAX_ATTEMPTS`] attempts). `persist` is called with uuids
    /// to keep before they are sent.
    ///
    /// # Errors
    ///
    /// [`ReportError::View`] and [`ReportError::ForeignRoot`] when the report is refused,
    /// [`ReportError::Client`] when Placement fails, [`ReportError::Conflicts`] after
    /// [`MAX_ATTEMPTS`] 409s.
    pub fn report(
        &mut self,
        input: &ReportInput,
        persist: &dyn Fn(&BTreeMap<PciAddress, Uuid>, Uuid),
    ) -> Result<ReportOutcome, ReportError> {
        let result = self.try_report(input, persist);
        match &result {
            Ok(_) => self.pending = 0,
            Err(_) => {
                self.cache = None;
                self.applied = None;
            }
        }
        result
    }

    fn try_report(
        &mut self,
        input: &ReportInput,
        persist: &dyn Fn(&BTreeMap<PciAddress, Uuid>, Uuid),
    ) -> Result<ReportOutcome, ReportError> {
        let mut known = input.known_uuids.clone();
        known.extend(self.known.iter().map(|(a, u)| (*a, *u)));
        let ours = self.root_uuid.or(input.root_uuid);

        // A configuration Nova's guards refuse is refused before any call.
        if self.cache.is_none() {
            view(&view_input(input, &known, &ProviderTree::default()))?;
        }
        // Nothing changed: no call at all. Unless an inventory is held up by allocations:
        // the cached usages may be stale (the allocations gone), so re-read them.
        if let (Some(tree), Some(applied), Some(root)) = (&self.cache, &self.applied, ours) {
            let v = view(&view_input(input, &known, tree))?;
            if v.held_by_allocations() {
                self.cache = None;
            } else if v.new_uuids.is_empty() && Reported::of(&v) == *applied {
                return Ok(ReportOutcome {
                    view: Arc::new(v),
                    root_uuid: root,
                    calls: 0,
                    changes: 0,
                    conflicts: 0,
                });
            }
        }

        let mut calls = 0;
        let mut conflicts = 0;
        let mut last_conflict = None;
        for _ in 0..MAX_ATTEMPTS {
            let mut tree = match self.cache.take() {
                Some(tree) => tree,
                None => {
                    // 1 call when there is no root yet, else 2 + 3 per provider.
                    let tree = self.client.read_tree(&input.host);
                    calls += 1;
                    let tree = tree?;
                    if let Some(t) = &tree {
                        calls += 1 + 3 * u32::try_from(t.providers.len()).unwrap_or(0);
                    }
                    tree.unwrap_or_default()
                }
            };
            let root_uuid = self.root_for(input, ours, &tree)?;
            let v = view(&view_input(input, &known, &tree))?;
            let changes = diff(&v, root_uuid, &tree);
            if !v.new_uuids.is_empty() || Some(root_uuid) != input.root_uuid {
                known.extend(v.new_uuids.iter().map(|(a, u)| (*a, *u)));
                persist(&v.new_uuids, root_uuid);
                self.known.extend(v.new_uuids.iter().map(|(a, u)| (*a, *u)));
            }
            self.root_uuid = Some(root_uuid);
            let sent = self.client.apply(&changes, &mut tree);
            match sent {
                Ok(n) => {
                    calls += n;
                    self.cache = Some(tree);
                    self.applied = Some(Reported::of(&v));
                    return Ok(ReportOutcome {
                        view: Arc::new(v),
                        root_uuid,
                        calls,
                        changes: n,
                        conflicts,
                    });
                }
                Err(ApplyError { done, error: e }) => {
                    calls += done + 1;
                    self.pending = u32::try_from(changes.len())
                        .unwrap_or(u32::MAX)
                        .saturating_sub(done);
                    if !e.is_conflict() {
                        return Err(e.into());
                    }
                    tracing::info!(error = %e, "Placement answered 409: re-reading the tree");
                    conflicts += 1;
                    self.conflicts_met += 1;
                    last_conflict = Some(e);
                }
            }
        }
        Err(ReportError::Conflicts {
            attempts: MAX_ATTEMPTS,
            last: last_conflict.unwrap_or_else(|| ClientError::BadResponse {
                method: String::new(),
                path: String::new(),
                detail: "no answer".into(),
            }),
        })
    }

    /// The root provider's uuid: Placement's when it is pcitrack's (or adopted), else the
    /// one pcitrack created before, else a new one.
    fn root_for(
        &self,
        input: &ReportInput,
        ours: Option<Uuid>,
        tree: &ProviderTree,
    ) -> Result<Uuid, ReportError> {
        match tree
            .providers
            .iter()
            .find(|p| p.name == input.host && p.parent_uuid.is_none())
        {
            Some(root) if Some(root.uuid) == ours || input.adopt_root => Ok(root.uuid),
            Some(root) => Err(ReportError::ForeignRoot {
                root: root.name.clone(),
                uuid: root.uuid,
                ours: ours
                    .map(|u| format!(" (pcitrack created {u})"))
                    .unwrap_or_default(),
            }),
            None => Ok(ours.unwrap_or_else(Uuid::new_v4)),
        }
    }
}

fn view_input<'a>(
    input: &'a ReportInput,
    known: &'a BTreeMap<PciAddress, Uuid>,
    tree: &'a ProviderTree,
) -> ViewInput<'a> {
    ViewInput {
        host: &input.host,
        device_spec: &input.device_spec,
        devices: &input.devices,
        known_uuids: known,
        placement: tree,
    }
}

/// Backoff of the reporter's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReporterOptions {
    /// The first retry's delay (1 s).
    pub initial_backoff: Duration,
    /// The longest delay (60 s).
    pub max_backoff: Duration,
    /// While an inventory is held above the devices by allocations
    /// ([`PciView::held_by_allocations`]), Placement is re-read this often (60 s), so the
    /// inventory comes down soon after the allocations go even on an idle host. No timer
    /// runs otherwise.
    pub recheck: Duration,
}

impl Default for ReporterOptions {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            recheck: Duration::from_secs(60),
        }
    }
}

enum Msg {
    Input(Box<ReportInput>),
    Resync,
    Shutdown,
}

#[derive(Default)]
struct Shared {
    status: Mutex<ReportStatus>,
    last_view: Mutex<Option<Arc<PciView>>>,
}

/// The reporter thread's handle. Clones share the thread.
#[derive(Clone)]
pub struct ReporterHandle {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    client: PlacementClient,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for ReporterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReporterHandle")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl ReporterHandle {
    /// Starts the reporter thread with the default backoff (1 s doubling to 60 s): it blocks
    /// on its channel (no wake-ups while idle), the latest input wins; on error it retries
    /// with backoff until it succeeds; it sends nothing when the view equals the last one
    /// applied; a 409 re-reads and retries ([`MAX_ATTEMPTS`]). `persist` is called on the
    /// reporter thread with new provider uuids and the root uuid to keep.
    pub fn spawn(client: PlacementClient, persist: Persist) -> ReporterHandle {
        Self::spawn_with(client, persist, ReporterOptions::default())
    }

    /// [`ReporterHandle::spawn`] with another backoff (tests).
    pub fn spawn_with(
        client: PlacementClient,
        persist: Persist,
        options: ReporterOptions,
    ) -> ReporterHandle {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let reporter = Reporter::new(client.clone());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("placement-reporter".into())
            .spawn(move || run(reporter, rx, thread_shared, persist, options))
            .ok();
        if thread.is_none() {
            tracing::error!("could not start the Placement reporter thread");
        }
        ReporterHandle {
            tx,
            shared,
            client,
            thread: Arc::new(Mutex::new(thread)),
        }
    }

    /// Hands the reporter the host's latest state (an older one not yet reported is
    /// dropped).
    pub fn submit(&self, input: ReportInput) {
        let _ = self.tx.send(Msg::Input(Box::new(input)));
    }

    /// Forgets the cache: re-reads Placement and re-reports the latest input now (after an
    /// over-allocation, or when an operator fixed a refusal).
    pub fn resync(&self) {
        let _ = self.tx.send(Msg::Resync);
    }

    /// The reporting state.
    pub fn status(&self) -> ReportStatus {
        lock(&self.shared.status).clone()
    }

    /// The last view computed (providers with their device addresses and uuids).
    pub fn last_view(&self) -> Option<Arc<PciView>> {
        lock(&self.shared.last_view).clone()
    }

    /// The client (for reads beside the reporter: allocations, what Placement holds).
    pub fn client(&self) -> &PlacementClient {
        &self.client
    }

    /// Stops the thread, waiting for the call in flight (bounded by the client's timeout).
    pub fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown);
        let thread = lock(&self.thread).take();
        if let Some(t) = thread
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reporter thread.
fn run(
    mut reporter: Reporter,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    persist: Persist,
    options: ReporterOptions,
) {
    let mut latest: Option<Box<ReportInput>> = None;
    let mut retry_at: Option<Instant> = None;
    // Set only while an inventory is held up by allocations (see ReporterOptions::recheck).
    let mut recheck_at: Option<Instant> = None;
    let mut backoff = options.initial_backoff;
    loop {
        let wake = match (retry_at, recheck_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let first = match wake {
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            },
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            },
        };
        let timed_out = first.is_none();
        let recheck_due = timed_out && recheck_at.is_some_and(|at| at <= Instant::now());
        let retry_due = timed_out && retry_at.is_some_and(|at| at <= Instant::now());
        let mut resync = recheck_due;
        if recheck_due {
            recheck_at = None;
        }
        for msg in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match msg {
                Msg::Input(i) => {
                    latest = Some(i);
                }
                Msg::Resync => resync = true,
                Msg::Shutdown => return,
            }
        }
        if resync {
            reporter.forget();
        }
        // While a retry is due, new input waits for it (Placement is failing: do not
        // hammer it at every reconcile); a resync goes now.
        if retry_at.is_some() && !retry_due && !resync {
            continue;
        }
        let Some(input) = latest.as_deref() else {
            continue;
        };
        lock(&shared.status).last_attempt = Some(now());
        match reporter.report(input, &*persist) {
            Ok(outcome) => {
                retry_at = None;
                backoff = options.initial_backoff;
                recheck_at = outcome
                    .view
                    .held_by_allocations()
                    .then(|| Instant::now() + options.recheck);
                *lock(&shared.last_view) = Some(Arc::clone(&outcome.view));
                let mut s = lock(&shared.status);
                s.state = ReportState::InStep;
                s.last_success = Some(now());
                s.pending_changes = 0;
                s.last_error = None;
                s.reports_total += 1;
                s.conflicts_total = reporter.conflicts_met();
                s.calls_total += u64::from(outcome.calls);
                s.changes_total += u64::from(outcome.changes);
                if outcome.changes > 0 {
                    tracing::info!(
                        changes = outcome.changes,
                        calls = outcome.calls,
                        "Placement in step"
                    );
                }
            }
            Err(e) => {
                let transient = e.is_transient();
                let mut s = lock(&shared.status);
                s.failures_total += 1;
                s.last_error = Some(e.to_string());
                s.conflicts_total = reporter.conflicts_met();
                if transient {
                    s.state = ReportState::Pending;
                    s.pending_changes = reporter.pending_changes().max(1);
                    retry_at = Some(Instant::now() + backoff);
                    tracing::warn!(error = %e, retry_in = ?backoff, "Placement report failed");
                    backoff = (backoff * 2).min(options.max_backoff);
                } else {
                    s.state = ReportState::Refused;
                    s.pending_changes = reporter.pending_changes().max(1);
                    retry_at = None;
                    tracing::error!(error = %e, "Placement report refused");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Auth;
    use crate::client::ClientConfig;

    fn unreachable_client() -> PlacementClient {
        PlacementClient::new(ClientConfig {
            auth: Auth::Token("admin".into()),
            // The discard port: nothing listens there.
            endpoint_override: Some("http://127.0.0.1:9".into()),
            timeout: Duration::from_secs(2),
        })
    }

    fn input() -> ReportInput {
        ReportInput {
            host: "cn1".into(),
            device_spec: Vec::new(),
            devices: Vec::new(),
            known_uuids: BTreeMap::new(),
            root_uuid: None,
            adopt_root: false,
        }
    }

    #[test]
    fn the_handle_can_be_shared_between_threads() {
        fn shared<T: Send + Sync + Clone>() {}
        shared::<ReporterHandle>();
        shared::<PlacementClient>();
    }

    #[test]
    fn an_unreachable_placement_leaves_the_report_pending_and_retries_with_backoff() {
        let handle = ReporterHandle::spawn_with(
            unreachable_client(),
            Box::new(|_, _| {}),
            ReporterOptions {
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(100),
                recheck: Duration::from_secs(60),
            },
        );
        assert_eq!(handle.status().state, ReportState::Starting);
        handle.submit(input());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            let s = handle.status();
            if s.failures_total >= 3 {
                break s;
            }
            assert!(Instant::now() < deadline, "no retries: {s:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.state, ReportState::Pending);
        assert!(status.pending_changes >= 1);
        assert_eq!(status.last_success, None);
        let error = status.last_error.unwrap();
        assert!(
            error.contains("GET http://127.0.0.1:9/resource_providers?name=cn1"),
            "{error}"
        );
        assert!(handle.last_view().is_none());
        handle.shutdown();
        let after = handle.status().failures_total;
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(handle.status().failures_total, after, "stopped");
    }

    #[test]
    fn a_configuration_nova_refuses_is_refused_without_any_call() {
        let mut reporter = Reporter::new(unreachable_client());
        let mut refused = input();
        refused.device_spec = vec![Entry::Json(r#"{"devname": "eth0"}"#.into())];
        let err = reporter.report(&refused, &|_, _| {}).unwrap_err();
        assert!(
            matches!(err, ReportError::View(ViewError::DevnameSpec { .. })),
            "refused before reading Placement (unreachable here): {err}"
        );
        assert!(!err.is_transient());
        assert!(err.to_string().contains("'devname'"), "{err}");
    }
}
