//! Reconcile (Nova's `_set_hvdevs`): what the host reports, as assessed by the policies,
//! against what is tracked.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pcitrack_model::cleanup::{CleanupCandidate, CleanupVerdict};
use pcitrack_model::{Assessment, DevType, DeviceStatus, PciAddress};
use serde::Serialize;

use crate::cleanup::CleanupPolicy;
use crate::device_state::{Family, Member, derived_status};
use crate::record::{Profile, TagSets, TrackedDevice};
use crate::state::Work;
use crate::tracker::TrackerError;

/// A status a sync put right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repair {
    /// The device.
    pub address: PciAddress,
    /// The stored status.
    pub from: DeviceStatus,
    /// The status its relatives' owners call for.
    pub to: DeviceStatus,
}

/// Something a sync could not do yet because the device is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Deferral {
    /// The host reports a change; it is applied when the device is freed (Nova's `stale`).
    Update,
    /// The device is gone or no longer assignable; it is deleted when freed.
    RemoveWhenFreed,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// New devices, tracked as available (or unavailable/unclaimable under a busy relative).
    pub added: Vec<PciAddress>,
    /// Devices whose record changed.
    pub updated: Vec<PciAddress>,
    /// Unreported devices deleted.
    pub deleted: Vec<PciAddress>,
    /// Unreported devices kept, and why.
    pub kept: Vec<(PciAddress, String)>,
    /// Stale `unavailable`/`unclaimable` statuses put right (or the reverse).
    pub repaired: Vec<Repair>,
    /// Changes waiting for a device to be freed.
    pub deferred: Vec<(PciAddress, Deferral)>,
}

/// Why an unreported reserved device is kept.
pub const RESERVED_KEPT: &str =
    "reserved one-time-use device: kept until released (pcitrack release ADDRESS)";

/// The `parent_ifname` of a child with a network interface: its PF's interface.
fn parent_ifnames(assessed: &[Assessment]) -> HashMap<PciAddress, String> {
    let ifnames: HashMap<PciAddress, &str> = assessed
        .iter()
        .filter_map(|a| a.device.ifname.as_deref().map(|i| (a.device.address, i)))
        .collect();
    assessed
        .iter()
        .filter(|a| a.device.dev_type.is_child() && a.device.ifname.is_some())
        .filter_map(|a| {
            let p = a.device.parent_addr?;
            ifnames.get(&p).map(|i| (a.device.address, i.to_string()))
        })
        .collect()
}

fn same_profile(p: &Profile, a: &Assessment, parent_ifname: Option<&String>) -> bool {
    p.device == a.device
        && *p.tags == a.tags
        && p.remote_managed == a.remote_managed
        && p.decided_by == a.decided_by
        && p.parent_ifname.as_ref() == parent_ifname
}

fn profile_of(a: &Assessment, parent_ifname: Option<&String>, tag_sets: &mut TagSets) -> Profile {
    Profile {
        device: a.device.clone(),
        tags: tag_sets.share(&a.tags),
        remote_managed: a.remote_managed,
        decided_by: a.decided_by.clone(),
        parent_ifname: parent_ifname.cloned(),
    }
}

/// Which tracked devices a sync speaks for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// Every device: what the host reports is the whole inventory (a full rescan).
    All,
    /// Only these addresses (a partial rescan's scope: the devices a uevent burst re-read,
    /// with their relatives); the other tracked devices stand as the last sync left them.
    Only(&'a BTreeSet<PciAddress>),
}

impl Scope<'_> {
    fn covers(self, a: PciAddress) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(set) => set.contains(&a),
        }
    }
}

/// One sync, full or partial: the same per-device rules either way. A partial sync differs
/// only in which tracked devices can be found unreported (those of its scope), and in how
/// the cleanup chain sees the others: as the last sync left them (reported unless already
/// missing, with their missing count unchanged). So a partial sync counts as one sync for
/// the missing devices of its scope only.
pub(crate) fn sync_in(
    work: &mut Work<'_>,
    assessed: &[Assessment],
    scope: Scope<'_>,
    cleanup: &dyn CleanupPolicy,
) -> Result<SyncReport, TrackerError> {
    let mut report = SyncReport::default();
    let ifnames = parent_ifnames(assessed);
    let mut reported: BTreeMap<PciAddress, &Assessment> = BTreeMap::new();
    for a in assessed.iter().filter(|a| a.assignable) {
        if !scope.covers(a.device.address) {
            tracing::warn!(address = %a.device.address, "assessed outside the sync's scope; ignored");
            continue;
        }
        if reported.insert(a.device.address, a).is_some() {
            tracing::warn!(address = %a.device.address, "reported twice; the last record wins");
        }
    }
    let base = work.base;
    let mut structure_changed = false;
    let mut tag_sets = TagSets::default();

    // Reported devices: update, defer, or add.
    for (&addr, a) in &reported {
        let pif = ifnames.get(&addr);
        match base.devices.get(&addr) {
            None => {
                let mut d = TrackedDevice::new(profile_of(a, pif, &mut tag_sets));
                d.status = DeviceStatus::Available;
                work.put(d);
                report.added.push(addr);
                structure_changed = true;
            }
            Some(t) => {
                let same = same_profile(&t.profile, a, pif);
                let in_use = t.status.is_in_use();
                // In use: a change waits in `pending`; otherwise it is applied now.
                let pending_ok = match (&t.pending, in_use && !same) {
                    (None, false) => true,
                    (Some(p), true) => same_profile(p, a, pif),
                    _ => false,
                };
                if in_use && !same {
                    report.deferred.push((addr, Deferral::Update));
                }
                let clean = t.missing_syncs == 0 && !t.to_be_removed_when_freed;
                if clean && pending_ok && (same || in_use) {
                    // The common case: nothing to write, nothing cloned.
                    continue;
                }
                let mut d = t.clone();
                d.missing_syncs = 0;
                d.to_be_removed_when_freed = false;
                if !pending_ok {
                    d.pending = (in_use && !same).then(|| profile_of(a, pif, &mut tag_sets));
                }
                if !in_use && !same {
                    let new = profile_of(a, pif, &mut tag_sets);
                    if new.device.dev_type != t.dev_type()
                        || new.device.parent_addr != t.parent_addr()
                    {
                        structure_changed = true;
                    }
                    d.profile = new;
                    report.updated.push(addr);
                }
                work.put(d);
            }
        }
    }

    // Unreported devices: the cleanup chain (views built only when there are candidates: an
    // unchanged sync must stay cheap).
    let unreported = |a: &PciAddress| !reported.contains_key(a);
    let any_missing = match scope {
        Scope::All => base.devices.keys().any(unreported),
        // A partial sync's scope is a few devices; the tracked ones are thousands.
        Scope::Only(set) => set
            .iter()
            .any(|a| base.devices.contains_key(a) && unreported(a)),
    };
    let views: Vec<CleanupCandidate> = if !any_missing {
        Vec::new()
    } else {
        base.devices
            .values()
            .map(|t| {
                let (is_reported, missing_syncs) = if !scope.covers(t.address()) {
                    // As the last sync left it.
                    (t.missing_syncs == 0, t.missing_syncs)
                } else if reported.contains_key(&t.address()) {
                    (true, 0)
                } else {
                    (false, t.missing_syncs.saturating_add(1))
                };
                CleanupCandidate {
                    address: t.address(),
                    vendor_id: t.profile.device.vendor_id,
                    product_id: t.profile.device.product_id,
                    dev_type: t.dev_type(),
                    status: t.status,
                    owner: t.instance_uuid.clone(),
                    parent: t.parent_addr(),
                    reported: is_reported,
                    missing_syncs,
                }
            })
            .collect()
    };
    let candidates: Vec<usize> = (0..views.len())
        .filter(|&i| !views[i].reported && scope.covers(views[i].address))
        .collect();
    if !candidates.is_empty() {
        let mut verdicts = cleanup.decide(&views, &candidates);
        if verdicts.len() != candidates.len() {
            let reason = format!(
                "policy failed: the cleanup chain returned {} decisions for {} candidates",
                verdicts.len(),
                candidates.len()
            );
            tracing::error!("{reason}");
            verdicts = vec![CleanupVerdict::Keep(reason); candidates.len()];
        }
        for (&i, verdict) in candidates.iter().zip(verdicts) {
            let v = &views[i];
            let mut d = base.devices[&v.address].clone();
            d.missing_syncs = v.missing_syncs;
            let verdict = match verdict {
                CleanupVerdict::Abstain => v.nova_rule(),
                other => other,
            };
            if d.status.is_in_use() {
                // The in-use guard, decided here and only here: a device an instance holds is
                // never deleted while held. A delete (Nova's rule says delete for it) is
                // deferred until it is freed (Nova f37cdf0c41); a policy's explicit keep is
                // respected, and it becomes free again when released.
                match verdict {
                    CleanupVerdict::Keep(reason) => {
                        d.to_be_removed_when_freed = false;
                        tracing::warn!(address = %v.address, %reason, "unreported device kept");
                        report.kept.push((v.address, reason));
                    }
                    CleanupVerdict::Delete | CleanupVerdict::Abstain => {
                        d.to_be_removed_when_freed = true;
                        tracing::warn!(address = %v.address, status = %d.status,
                            owner = ?d.instance_uuid, "unreported device in use; deleted when freed");
                        report.deferred.push((v.address, Deferral::RemoveWhenFreed));
                    }
                }
                work.put(d);
                continue;
            }
            if d.reserved && verdict == CleanupVerdict::Delete {
                // A reserved device is never deleted, whatever the cleanup chain says (the
                // reservation would go with the row, and a device that came back would be
                // handed out unwiped): kept until an operator releases it.
                let reason = RESERVED_KEPT.to_string();
                tracing::warn!(address = %v.address, %reason, "unreported device kept");
                report.kept.push((v.address, reason));
                work.put(d);
                continue;
            }
            match verdict {
                CleanupVerdict::Delete => {
                    let mut lone = Family::new();
                    lone.push(
                        Member {
                            address: v.address,
                            dev_type: v.dev_type,
                            status: d.status,
                            owner: d.instance_uuid.clone(),
                        },
                        None,
                    );
                    match lone.remove(0) {
                        Ok(_) => {
                            tracing::info!(address = %v.address, status = %d.status, "deleting an unreported device");
                            work.delete(v.address);
                            report.deleted.push(v.address);
                            structure_changed = true;
                        }
                        Err(e) => {
                            let reason = format!("Unable to remove device: {e}");
                            tracing::warn!(address = %v.address, %reason, "unreported device kept");
                            report.kept.push((v.address, reason));
                            work.put(d);
                        }
                    }
                }
                CleanupVerdict::Keep(reason) => {
                    tracing::warn!(address = %v.address, %reason, "unreported device kept");
                    report.kept.push((v.address, reason));
                    work.put(d);
                }
                CleanupVerdict::Abstain => unreachable!("replaced by Nova's rule above"),
            }
        }
    }

    // Derive unavailable/unclaimable from relatives' owners; repair stale ones. Over every
    // device, in a partial sync too, without allocating per device: thousands of them.
    let all: Vec<PciAddress> = if structure_changed {
        base.devices
            .keys()
            .chain(work.over.keys())
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        base.devices.keys().copied().collect()
    };
    let rebuilt;
    let children: &HashMap<PciAddress, Vec<PciAddress>> = if structure_changed {
        let mut map: HashMap<PciAddress, Vec<PciAddress>> = HashMap::new();
        for &a in &all {
            if let Some(d) = work.get(a)
                && d.dev_type().is_child()
                && let Some(p) = d.parent_addr()
            {
                map.entry(p).or_default().push(a);
            }
        }
        rebuilt = map;
        &rebuilt
    } else {
        &base.children
    };
    let added: BTreeSet<PciAddress> = report.added.iter().copied().collect();
    let mut fixes = Vec::new();
    for a in all {
        let Some(d) = work.get(a) else { continue };
        if d.status.is_in_use() || d.instance_uuid.is_some() {
            continue;
        }
        let want = match d.dev_type() {
            DevType::Pf => derived_status(
                children
                    .get(&a)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|c| work.get(*c))
                    .filter(|c| c.dev_type().is_child())
                    .map(|c| c.status),
            ),
            t if t.is_child() => derived_status(
                d.parent_addr()
                    .and_then(|p| work.get(p))
                    .filter(|p| p.dev_type() == DevType::Pf)
                    .map(|p| p.status),
            ),
            _ => derived_status(None),
        };
        if want != d.status {
            fixes.push((a, d.status, want));
        }
    }
    for (a, from, to) in fixes {
        let mut d = work.get(a).expect("listed above").clone();
        d.status = to;
        if !added.contains(&a) {
            tracing::info!(address = %a, %from, %to, "repaired a stale status");
            report.repaired.push(Repair {
                address: a,
                from,
                to,
            });
        }
        work.put(d);
    }
    Ok(report)
}
