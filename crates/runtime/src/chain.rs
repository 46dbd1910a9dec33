//! Chains of policies per kind, with the contract's fallbacks.
//!
//! Within a kind, policies run in order (policy files by file name, then the embedded
//! default); for each device the first verdict that is not "abstain" wins, and when every
//! policy abstains the built-in rule applies. A failed call (trap, timeout, memory, error
//! value, garbage) never fails the chain: a matcher or tagger's devices keep that policy's
//! last verdict, and where it never gave one the broken policy has no say (it abstains, so
//! the rest of the chain decides, as if the file were not there); a cleanup candidate is
//! kept. Why abstain rather than reject: a vendor matcher that is broken from its first call
//! would otherwise make every device unassignable, and the next reconcile would drop the
//! whole free inventory; the failure is still reported (log, metrics, the verdict's reason).
//!
//! The cleanup chain reports what it said and who said it, nothing more: candidates every
//! policy abstains on come back as abstentions (the tracker applies Nova's rule,
//! `pcitrack_model::cleanup::nova_rule`), and the guard that a device in use is never deleted
//! while held is the tracker's, decided once where the deletion is deferred.

use std::sync::Arc;

use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{Assessment, Device, PciAddress};

use crate::contract::{self, NodeSockets, cleanup, host_api, matcher, tagger, wit};
use crate::error::CallError;
use crate::load::PolicyKind;
use crate::policy::Policy;
use crate::verdicts::{Interner, Remembered, Tags, Verdict, Verdicts, in_range};

/// Most tags one device may carry, and longest tag key or value: a policy that answers
/// with more is broken or hostile, and its answer is refused as garbage.
const MAX_TAGS: usize = 256;
const MAX_TAG_TEXT: usize = 4096;
const MAX_REASON: usize = 4096;

/// The name the built-in fallback rules decide under.
pub const BUILT_IN: &str = "built-in";

/// The matcher and tagger chains' verdict on one device: whether it is assignable, with
/// which tags, and who decided. The cheap form [`PolicySet::assess`] returns (tag sets shared
/// between devices); [`PolicySet::assessments`] joins it with the devices into the
/// [`Assessment`] records the tracker takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceVerdict {
    /// The device.
    pub address: PciAddress,
    /// True when the device may be handed out.
    pub assignable: bool,
    /// Its tags, in the order the deciding policy gave them (empty when not assignable);
    /// shared by every device that got the same set.
    pub tags: Tags,
    /// The pooling value of `remote_managed` (not a tag): true when the tag
    /// `remote_managed` reads as true the way Nova reads it.
    pub remote_managed: bool,
    /// The policy whose verdict decided (a tagger's name when a tagger retagged or
    /// rejected), or `built-in`.
    pub decided_by: Arc<str>,
    /// Why it is not assignable, or which failure forced a fallback.
    pub reason: Option<Arc<str>>,
}

/// A cleanup verdict and who gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupOutcome {
    /// The device.
    pub address: PciAddress,
    /// What the chain said: delete, keep (a failed policy's candidates are kept), or abstain
    /// when every policy abstained.
    pub verdict: CleanupVerdict,
    /// The deciding policy, or `built-in` when every policy abstained (Nova's rule, applied
    /// by the tracker, decides those).
    pub decided_by: String,
}

impl CleanupOutcome {
    /// The verdict, with the deciding policy named in a keep's reason (for the tracker's
    /// report and log).
    pub fn into_verdict(self) -> CleanupVerdict {
        match self.verdict {
            CleanupVerdict::Keep(reason) => {
                CleanupVerdict::Keep(format!("{reason} (policy {})", self.decided_by))
            }
            other => other,
        }
    }
}

/// The effective chains: everything an evaluation needs, immutable. The agent swaps whole
/// sets on reload; evaluations in flight keep the set they started with.
#[derive(Debug, Default, Clone)]
pub struct PolicySet {
    matchers: Vec<Arc<Policy>>,
    taggers: Vec<Arc<Policy>>,
    cleanups: Vec<Arc<Policy>>,
    /// The host's NUMA node sockets, for the device facts (`host.get-device-facts`);
    /// unknown unless given with [`PolicySet::with_node_sockets`].
    node_sockets: Arc<NodeSockets>,
}

/// The span of one policy call: every line logged inside it (the policy's own `host.log`
/// lines included) carries the policy's name and kind.
fn policy_span(policy: &Policy) -> tracing::Span {
    tracing::info_span!("policy", policy = policy.name(), kind = %policy.kind())
}

/// A failed call, logged once with the policy's name.
fn report_failure(policy: &Policy, error: &CallError) {
    tracing::warn!(policy = policy.name(), kind = %policy.kind(), %error, "policy call failed; falling back");
}

impl PolicySet {
    /// A set from policies in chain order; each goes to its kind's chain.
    pub fn new(policies: impl IntoIterator<Item = Arc<Policy>>) -> Self {
        let mut set = PolicySet::default();
        for p in policies {
            match p.kind() {
                PolicyKind::Matcher => set.matchers.push(p),
                PolicyKind::Tagger => set.taggers.push(p),
                PolicyKind::Cleanup => set.cleanups.push(p),
            }
        }
        set
    }

    /// The same chains, evaluating with `sockets` as the host's NUMA node sockets (what
    /// `host.get-device-facts` answers for a device's socket; discovery reads them under the
    /// same root as the devices). Cheap: the policies are shared.
    pub fn with_node_sockets(&self, sockets: NodeSockets) -> PolicySet {
        PolicySet {
            node_sockets: Arc::new(sockets),
            ..self.clone()
        }
    }

    /// The device facts of `devices` for this evaluation, built only when a matcher or
    /// tagger imports `host.get-device-facts`: a chain whose policies do not ask pays
    /// nothing for them.
    fn device_facts(&self, devices: &[Device]) -> Option<Arc<host_api::DeviceFacts>> {
        self.matchers
            .iter()
            .chain(&self.taggers)
            .any(|p| p.reads_facts())
            .then(|| Arc::new(contract::device_facts(devices, &self.node_sockets)))
    }

    /// The chain of one kind, in order.
    pub fn chain(&self, kind: PolicyKind) -> &[Arc<Policy>] {
        match kind {
            PolicyKind::Matcher => &self.matchers,
            PolicyKind::Tagger => &self.taggers,
            PolicyKind::Cleanup => &self.cleanups,
        }
    }

    /// Runs the matcher and tagger chains over `devices` (sorted here by address, as the
    /// contract promises policies) and returns each device with its verdict: the records the
    /// tracker's sync takes.
    pub fn assessments(&self, mut devices: Vec<Device>) -> Vec<Assessment> {
        devices.sort_by_key(|d| d.address);
        let verdicts = self.assess(&devices);
        devices.into_iter().zip(verdicts).map(joined).collect()
    }

    /// [`PolicySet::assess_some`] joined with the target devices (copied out of
    /// `devices`): the records the tracker's partial sync takes.
    pub fn assessments_of(&self, devices: &[Device], targets: Vec<u32>) -> Vec<Assessment> {
        let picked: Vec<Device> = targets
            .iter()
            .map(|&i| devices[i as usize].clone())
            .collect();
        let verdicts = self.assess_some(devices, targets);
        picked.into_iter().zip(verdicts).map(joined).collect()
    }

    /// Runs the matcher chain and then the tagger chain over `devices` (sorted by address),
    /// returning one verdict per device, in order.
    pub fn assess(&self, devices: &[Device]) -> Vec<DeviceVerdict> {
        self.assess_some(devices, (0..devices.len() as u32).collect())
    }

    /// Runs the chains over the devices at `targets` (ascending indices into `devices`,
    /// which is sorted by address) with all of `devices` as the inventory the policies see
    /// (a VF's PF, netdev names for `devname`): one verdict per target, in order. The
    /// agent's incremental reconcile assesses the devices a uevent burst re-read this way.
    pub fn assess_some(&self, devices: &[Device], targets: Vec<u32>) -> Vec<DeviceVerdict> {
        debug_assert!(targets.is_sorted() && targets.iter().all(|&i| (i as usize) < devices.len()));
        let inventory = contract::inventory(devices);
        let facts = self.device_facts(devices);
        let mut out: Vec<Option<DeviceVerdict>> = vec![None; devices.len()];
        let mut pending: Vec<u32> = targets.clone();
        let mut failures: Vec<String> = Vec::new();
        for policy in &self.matchers {
            if pending.is_empty() {
                break;
            }
            let _span = policy_span(policy).entered();
            let result = policy
                .call_matcher(&inventory, facts.as_ref(), &pending)
                .and_then(|v| check_matcher(v, pending.len()));
            let verdicts = settle(policy, devices, &pending, result, &mut failures);
            pending = decide(
                &policy.shared_name(),
                devices,
                &pending,
                &verdicts,
                &mut out,
            );
        }
        let no_tags = no_tags();
        let unassigned: Arc<str> = if failures.is_empty() {
            "no matcher assigned it (with no [pci] device_spec nothing is assignable)".into()
        } else {
            format!("no matcher assigned it; {}", failures.join("; ")).into()
        };
        for &i in &pending {
            out[i as usize] = Some(DeviceVerdict {
                address: devices[i as usize].address,
                assignable: false,
                tags: no_tags.clone(),
                remote_managed: false,
                decided_by: BUILT_IN.into(),
                reason: Some(unassigned.clone()),
            });
        }
        let mut out: Vec<DeviceVerdict> = targets
            .iter()
            .map(|&i| out[i as usize].take().expect("every device decided"))
            .collect();
        self.run_taggers(devices, &inventory, facts.as_ref(), &targets, &mut out);
        for a in &mut out {
            a.remote_managed = a.assignable
                && a.tags
                    .iter()
                    .any(|(k, v)| k == "remote_managed" && truthy(v));
        }
        out
    }

    /// `out[p]` is the verdict on device `targets[p]`.
    fn run_taggers(
        &self,
        devices: &[Device],
        inventory: &wit::Inventory,
        facts: Option<&Arc<host_api::DeviceFacts>>,
        targets: &[u32],
        out: &mut [DeviceVerdict],
    ) {
        let mut pending: Vec<u32> = (0..out.len() as u32)
            .filter(|&i| out[i as usize].assignable)
            .collect();
        for policy in &self.taggers {
            if pending.is_empty() {
                break;
            }
            // Devices share a handful of tag sets: send each set once and point at it.
            let mut sets = Interner::new();
            let candidates: Vec<u64> = pending
                .iter()
                .map(|&i| {
                    targets[i as usize] as u64 | (sets.index_of(&out[i as usize].tags) as u64) << 32
                })
                .collect();
            let indices: Vec<u32> = pending.iter().map(|&i| targets[i as usize]).collect();
            let wit_sets: Vec<Vec<wit::Tag>> = sets
                .table()
                .iter()
                .map(|set| {
                    set.iter()
                        .map(|(k, v)| wit::Tag {
                            key: k.clone(),
                            value: v.clone(),
                        })
                        .collect()
                })
                .collect();
            let _span = policy_span(policy).entered();
            let result = policy
                .call_tagger(inventory, facts, &wit_sets, &candidates)
                .and_then(|v| check_tagger(v, pending.len()));
            let verdicts = settle(policy, devices, &indices, result, &mut Vec::new());
            let (name, no_tags) = (policy.shared_name(), no_tags());
            let mut still = Vec::with_capacity(pending.len());
            for (&i, verdict) in pending.iter().zip(verdicts.iter()) {
                let a = &mut out[i as usize];
                match verdict {
                    Verdict::Abstain => still.push(i),
                    Verdict::Assign(tags) => {
                        a.tags = tags.clone();
                        a.decided_by = name.clone();
                    }
                    Verdict::Reject(reason) => {
                        a.assignable = false;
                        a.tags = no_tags.clone();
                        a.reason = Some(reason.clone());
                        a.decided_by = name.clone();
                    }
                }
            }
            pending = still;
        }
    }

    /// Runs the cleanup chain over `candidates` (indices into `tracked`, which must be sorted
    /// by address) and reports, per candidate, what the chain said and who said it: the first
    /// verdict that is not an abstention, a keep for the candidates of a policy whose call
    /// failed, or an abstention (decided by `built-in`) when every policy abstained. Nothing
    /// is rewritten here: Nova's rule for abstentions and the guard for devices in use are the
    /// tracker's.
    pub fn cleanup(
        &self,
        tracked: &[CleanupCandidate],
        candidates: &[usize],
    ) -> Vec<CleanupOutcome> {
        // Built only when a policy will read it: with no cleanup policy every candidate is an
        // abstention and needs no copy.
        let wit_tracked: Vec<wit::TrackedDevice> = if self.cleanups.is_empty() {
            Vec::new()
        } else {
            tracked
                .iter()
                .map(|t| wit::TrackedDevice {
                    address: t.address.into(),
                    vendor_id: t.vendor_id,
                    product_id: t.product_id,
                    kind: t.dev_type.into(),
                    status: t.status.into(),
                    owner: t.owner.clone(),
                    parent: t.parent.map(Into::into),
                    reported: t.reported,
                    missing_syncs: t.missing_syncs,
                })
                .collect()
        };
        let mut out: Vec<Option<CleanupOutcome>> = vec![None; candidates.len()];
        let mut pending: Vec<usize> = (0..candidates.len()).collect();
        for policy in &self.cleanups {
            if pending.is_empty() {
                break;
            }
            let indices: Vec<u32> = pending.iter().map(|&p| candidates[p] as u32).collect();
            let _span = policy_span(policy).entered();
            let result = policy
                .call_cleanup(&wit_tracked, &indices)
                .and_then(|v| check_cleanup(v, indices.len()));
            policy.stats.record(indices.len(), &result);
            let mut still = Vec::new();
            match result {
                Ok(verdicts) => {
                    for (&p, v) in pending.iter().zip(verdicts) {
                        match v {
                            None => still.push(p),
                            Some(verdict) => {
                                out[p] = Some(CleanupOutcome {
                                    address: tracked[candidates[p]].address,
                                    verdict,
                                    decided_by: policy.name().into(),
                                })
                            }
                        }
                    }
                }
                Err(e) => {
                    report_failure(policy, &e);
                    for &p in &pending {
                        out[p] = Some(CleanupOutcome {
                            address: tracked[candidates[p]].address,
                            verdict: CleanupVerdict::Keep(format!(
                                "cleanup policy {} failed: {e}",
                                policy.name()
                            )),
                            decided_by: policy.name().into(),
                        });
                    }
                }
            }
            pending = still;
        }
        for p in pending {
            out[p] = Some(CleanupOutcome {
                address: tracked[candidates[p]].address,
                verdict: CleanupVerdict::Abstain,
                decided_by: BUILT_IN.into(),
            });
        }
        out.into_iter()
            .map(|o| o.expect("every candidate decided"))
            .collect()
    }
}

/// A device with its verdict: the [`Assessment`] the tracker takes.
fn joined((device, v): (Device, DeviceVerdict)) -> Assessment {
    Assessment {
        device,
        assignable: v.assignable,
        tags: v.tags.iter().cloned().collect(),
        remote_managed: v.remote_managed,
        decided_by: v.decided_by.to_string(),
        reason: v.reason.map(|r| r.to_string()),
    }
}

/// The `remote_managed` pooling value of a carried tag value: oslo's lenient
/// `bool_from_string`, as Nova reads `remote_managed`, from the one definition in
/// pcitrack-model (Python's white space, typed JSON values). It does not allocate: it runs
/// for every assignable device.
fn truthy(v: &str) -> bool {
    pcitrack_model::tag_value::bool_from_tag(v)
}

fn check_tags(sets: &[Vec<wit::Tag>]) -> Result<(), CallError> {
    for set in sets {
        if set.len() > MAX_TAGS {
            return Err(CallError::Garbage(format!(
                "a tag set of {} tags (at most {MAX_TAGS})",
                set.len()
            )));
        }
        if let Some(t) = set
            .iter()
            .find(|t| t.key.len() > MAX_TAG_TEXT || t.value.len() > MAX_TAG_TEXT)
        {
            return Err(CallError::Garbage(format!(
                "a tag of {} bytes (at most {MAX_TAG_TEXT})",
                t.key.len().max(t.value.len())
            )));
        }
    }
    Ok(())
}

fn check_count(got: usize, expected: usize) -> Result<(), CallError> {
    if got != expected {
        return Err(CallError::Garbage(format!(
            "{got} verdicts for {expected} devices"
        )));
    }
    Ok(())
}

/// A verdict pointing outside its call's tables is garbage.
fn check_index(index: u32, len: usize, table: &'static str) -> Result<(), CallError> {
    in_range(table, index, len).map_err(CallError::from)
}

fn check_reasons(reasons: &[String]) -> Result<(), CallError> {
    match reasons.iter().find(|r| r.len() > MAX_REASON) {
        Some(r) => Err(CallError::Garbage(format!(
            "a reason of {} bytes (at most {MAX_REASON})",
            r.len()
        ))),
        None => Ok(()),
    }
}

/// Converts a call's tag sets once; devices then share them.
fn shared_sets(sets: &[Vec<wit::Tag>]) -> Vec<Tags> {
    sets.iter()
        .map(|set| {
            set.iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect()
        })
        .collect()
}

fn check_matcher(v: matcher::Verdicts, expected: usize) -> Result<Verdicts, CallError> {
    check_words(&v.tag_sets, &v.reasons, v.per_device, expected)
}

fn check_tagger(v: tagger::Verdicts, expected: usize) -> Result<Verdicts, CallError> {
    check_words(&v.tag_sets, &v.reasons, v.per_device, expected)
}

/// Checks one call's verdict words and tables (see `pcitrack_model::packed::verdict`).
fn check_words(
    tag_sets: &[Vec<wit::Tag>],
    reasons: &[String],
    words: Vec<u32>,
    expected: usize,
) -> Result<Verdicts, CallError> {
    check_count(words.len(), expected)?;
    check_tags(tag_sets)?;
    check_reasons(reasons)?;
    let reasons = reasons.iter().map(|r| Arc::from(r.as_str())).collect();
    Verdicts::check(words, shared_sets(tag_sets), reasons).map_err(CallError::from)
}

/// Checks a cleanup call's answer; `None` is an abstention (the next policy decides).
fn check_cleanup(
    v: cleanup::Verdicts,
    expected: usize,
) -> Result<Vec<Option<CleanupVerdict>>, CallError> {
    check_count(v.per_device.len(), expected)?;
    check_reasons(&v.reasons)?;
    v.per_device
        .iter()
        .map(|d| {
            Ok(match d {
                cleanup::Verdict::Abstain => None,
                cleanup::Verdict::Delete => Some(CleanupVerdict::Delete),
                cleanup::Verdict::Keep(i) => {
                    check_index(*i, v.reasons.len(), "reason")?;
                    Some(CleanupVerdict::Keep(v.reasons[*i as usize].clone()))
                }
            })
        })
        .collect()
}

/// The verdicts of a call: on success they become the devices' last ones; on failure each
/// device gets its last one back, or an abstention when it never had one (the failure is
/// added to `failures`, for the reason of devices nobody assigns).
fn settle(
    policy: &Policy,
    devices: &[Device],
    targets: &[u32],
    result: Result<Verdicts, CallError>,
    failures: &mut Vec<String>,
) -> Arc<Verdicts> {
    policy.stats.record(targets.len(), &result);
    match result {
        Ok(verdicts) => {
            let verdicts = Arc::new(verdicts);
            policy.last_verdicts.record(
                targets
                    .iter()
                    .map(|&i| devices[i as usize].address)
                    .collect(),
                verdicts.clone(),
            );
            verdicts
        }
        Err(error) => {
            report_failure(policy, &error);
            failures.push(format!("policy {} failed: {error}", policy.name()));
            Arc::new(Verdicts::from_remembered(targets.iter().map(|&i| {
                policy
                    .last_verdicts
                    .recall(devices[i as usize].address)
                    .unwrap_or(Remembered::Abstain)
            })))
        }
    }
}

/// The empty tag set of devices that are not assignable: one allocation per call, shared.
fn no_tags() -> Tags {
    Arc::new([])
}

fn decide(
    policy: &Arc<str>,
    devices: &[Device],
    targets: &[u32],
    verdicts: &Verdicts,
    out: &mut [Option<DeviceVerdict>],
) -> Vec<u32> {
    let no_tags = no_tags();
    let mut still = Vec::new();
    for (&i, v) in targets.iter().zip(verdicts.iter()) {
        let address = devices[i as usize].address;
        let (assignable, tags, reason) = match v {
            Verdict::Abstain => {
                still.push(i);
                continue;
            }
            Verdict::Assign(tags) => (true, tags.clone(), None),
            Verdict::Reject(reason) => (false, no_tags.clone(), Some(reason.clone())),
        };
        out[i as usize] = Some(DeviceVerdict {
            address,
            assignable,
            tags,
            remote_managed: false,
            decided_by: policy.clone(),
            reason,
        });
    }
    still
}

#[cfg(test)]
mod truthy_tests {
    #[test]
    fn regression_oslo_bool_x1c_true_reads_true_everywhere() {
        // Python's str.strip() removes U+001C..U+001F; Rust's trim() does not.
        assert!(super::truthy("\u{1c}true"));
        assert!(super::truthy("\u{85}yes\u{1f}"));
        // A device_spec's JSON `true`, in its carried form.
        assert!(super::truthy("\u{1}true"));
        assert!(!super::truthy("\u{1}null"));
        assert!(!super::truthy("\u{200b}true"));
    }
}
