//! Prometheus metrics. Counters that the agent owns live here for its lifetime; values that
//! already exist elsewhere (devices by status in the database, each policy's counters) are
//! read at scrape time, so they cannot drift from their source.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::registry::PoliciesReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
    kind: String,
}

/// The agent's own counters.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Family<TriggerLabels, Counter>,
    reconcile_seconds: Histogram,
    reconcile_failures: Counter,
    reloads: Family<OutcomeLabels, Counter>,
    config_reload_failures: Family<ReasonLabels, Counter>,
    uevents: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            // 0.5 ms to ~16 s: a reconcile of a few devices to a pathological host.
            reconcile_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            reconcile_failures: Counter::default(),
            reloads: Family::default(),
            config_reload_failures: Family::default(),
            uevents: Counter::default(),
        }
    }
}

impl Metrics {
    /// A reconcile ran, started by `trigger`, and took `seconds`.
    pub fn reconciled(&self, trigger: &str, seconds: f64) {
        self.reconciles
            .get_or_create(&TriggerLabels {
                trigger: trigger.into(),
            })
            .inc();
        self.reconcile_seconds.observe(seconds);
    }

    /// A reconcile failed (the database refused it, sysfs unreadable...).
    pub fn reconcile_failed(&self) {
        self.reconcile_failures.inc();
    }

    /// A policy file was loaded (`loaded`) or refused (`refused`), or a configuration
    /// reloaded (`config-loaded`, `config-refused`).
    pub fn reload(&self, outcome: &str, n: u64) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc_by(n);
    }

    /// A configuration reload was refused and the last good configuration stays; `reason`
    /// says why (`read`, `invalid`, `alias`: see `ConfigError::reason`; `policy`: a policy
    /// refused it).
    pub fn config_reload_failed(&self, reason: &str) {
        self.config_reload_failures
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Uevents received (trusted and parsed).
    pub fn uevents(&self, n: u64) {
        self.uevents.inc_by(n);
    }

    /// The exposition text, with devices by status, reserved devices (used one-time-use
    /// devices waiting for release; they also count under their status), the policies'
    /// counters and the Placement reporter's (when the agent reports) as they are now.
    pub fn render(
        &self,
        devices_by_status: &[(String, i64)],
        reserved: i64,
        policies: &PoliciesReport,
        placement: Option<&pcitrack_placement::ReportStatus>,
    ) -> String {
        let mut registry = Registry::with_prefix("pcitrack");
        registry.register(
            "reconciles",
            "Reconcile passes, by what started them",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile pass (scan, evaluate, write)",
            self.reconcile_seconds.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconcile passes that failed and changed nothing",
            self.reconcile_failures.clone(),
        );
        registry.register(
            "reloads",
            "Policy files and configurations loaded or refused",
            self.reloads.clone(),
        );
        registry.register(
            "config_reload_failures",
            "Configuration reloads refused (the last good configuration stays), by reason",
            self.config_reload_failures.clone(),
        );
        registry.register("uevents", "Kernel uevents received", self.uevents.clone());
        let devices = Family::<StatusLabels, Gauge>::default();
        for (status, n) in devices_by_status {
            devices
                .get_or_create(&StatusLabels {
                    status: status.clone(),
                })
                .set(*n);
        }
        registry.register("devices", "Tracked devices by status", devices);
        let reserved_gauge = Gauge::<i64>::default();
        reserved_gauge.set(reserved);
        registry.register(
            "devices_reserved",
            "One-time-use devices reserved after use until an operator releases them",
            reserved_gauge,
        );
        let evaluations = Family::<PolicyLabels, Counter>::default();
        let devices_asked = Family::<PolicyLabels, Counter>::default();
        let traps = Family::<PolicyLabels, Counter>::default();
        let timeouts = Family::<PolicyLabels, Counter>::default();
        let failures = Family::<PolicyLabels, Counter>::default();
        for p in &policies.policies {
            let (Some(kind), Some(stats)) = (p.kind, &p.stats) else {
                continue;
            };
            let labels = PolicyLabels {
                policy: p.name.clone(),
                kind: kind.into(),
            };
            evaluations.get_or_create(&labels).inc_by(stats.calls);
            devices_asked.get_or_create(&labels).inc_by(stats.devices);
            traps.get_or_create(&labels).inc_by(stats.traps);
            timeouts.get_or_create(&labels).inc_by(stats.timeouts);
            failures.get_or_create(&labels).inc_by(stats.failures);
        }
        registry.register(
            "policy_evaluations",
            "Policy calls (a reloaded policy starts again from zero)",
            evaluations,
        );
        registry.register(
            "policy_devices_evaluated",
            "Devices policy calls were asked about",
            devices_asked,
        );
        registry.register("policy_traps", "Policy calls that trapped", traps);
        registry.register(
            "policy_timeouts",
            "Policy calls stopped at the wall-clock deadline",
            timeouts,
        );
        registry.register(
            "policy_failures",
            "Failed policy calls of any kind (traps and timeouts included)",
            failures,
        );
        if let Some(status) = placement {
            register_placement(&mut registry, status);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// The Placement reporter's counters and gauges, read from its status at scrape time:
/// `pcitrack_placement_reports_total{result="success"|"failure"}`,
/// `pcitrack_placement_conflicts_total` (409 generation conflicts re-read and retried),
/// `pcitrack_placement_pending_changes` and
/// `pcitrack_placement_last_success_timestamp_seconds` (0 before the first success).
fn register_placement(registry: &mut Registry, status: &pcitrack_placement::ReportStatus) {
    let reports = Family::<ResultLabels, Counter>::default();
    for (result, n) in [
        ("success", status.reports_total),
        ("failure", status.failures_total),
    ] {
        reports
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc_by(n);
    }
    registry.register(
        "placement_reports",
        "Reports to Placement, by result (a success may have had nothing to send)",
        reports,
    );
    let conflicts = Counter::<u64>::default();
    conflicts.inc_by(status.conflicts_total);
    registry.register(
        "placement_conflicts",
        "Placement generation conflicts (409), re-read and retried",
        conflicts,
    );
    let pending = Gauge::<i64>::default();
    pending.set(i64::from(status.pending_changes));
    registry.register(
        "placement_pending_changes",
        "Changes Placement has not accepted yet",
        pending,
    );
    let last = Gauge::<i64>::default();
    last.set(
        status
            .last_success
            .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)),
    );
    registry.register(
        "placement_last_success_timestamp_seconds",
        "When Placement last accepted a report, Unix seconds (0: never)",
        last,
    );
}
