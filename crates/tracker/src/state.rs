//! The tracker's in-memory copy of the store ([`State`]) and the pending changes of one
//! operation over it ([`Work`]). Private to the crate: the tracker decides against `Work`,
//! writes `Work::changes` in one transaction, and merges into `State` only after the commit.

use std::collections::{BTreeMap, HashMap};

use pcitrack_model::{DevType, DeviceStatus, PciAddress};

use crate::device_state::{Family, Member, derived_status};
use crate::pools::{PoolKey, PoolSet};
use crate::record::{Profile, TrackedDevice};
use crate::store::ChangeSet;

/// The tracker's in-memory copy of the store, with the indexes the operations need.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) devices: BTreeMap<PciAddress, TrackedDevice>,
    /// PF (or any parent address) → its children's addresses.
    pub(crate) children: HashMap<PciAddress, Vec<PciAddress>>,
    /// Distinct pool keys.
    keys: Vec<PoolKey>,
    key_index: HashMap<PoolKey, usize>,
    /// A compact copy of what pooling needs, kept by `set`/`remove` next to `devices`: a claim
    /// builds its pools from this (about 100 KiB for 4096 devices) rather than walking the
    /// full records.
    slots: BTreeMap<PciAddress, Slot>,
    last_key: Option<(usize, Profile)>,
}

/// Whether two profiles pool together (the inputs of [`Profile::pool_key`]).
fn same_pool_fields(a: &Profile, b: &Profile) -> bool {
    let (x, y) = (&a.device, &b.device);
    x.vendor_id == y.vendor_id
        && x.product_id == y.product_id
        && x.numa_node == y.numa_node
        && x.dev_type == y.dev_type
        && a.remote_managed == b.remote_managed
        && a.parent_ifname == b.parent_ifname
        && a.tags == b.tags
}

/// What pooling needs of a device.
#[derive(Debug, Clone)]
struct Slot {
    key: usize,
    entry: crate::pools::PoolEntry,
    free: bool,
    /// Reserved (one-time-use, used) and otherwise free: what `pools` reports as reserved.
    reserved: bool,
}

impl State {
    pub(crate) fn new(devices: Vec<TrackedDevice>) -> Self {
        let mut s = State::default();
        for d in devices {
            s.set(d);
        }
        s
    }

    /// The pool key index of a profile, reusing the previous device's when the pool-relevant
    /// fields agree (devices arrive in address order, so a PF's VFs hit this every time and
    /// skip building and hashing a key).
    fn key_for(&mut self, p: &Profile) -> usize {
        if let Some((id, last)) = &self.last_key
            && same_pool_fields(last, p)
        {
            return *id;
        }
        let id = self.intern(p.pool_key());
        self.last_key = Some((id, p.clone()));
        id
    }

    fn intern(&mut self, key: PoolKey) -> usize {
        if let Some(&i) = self.key_index.get(&key) {
            return i;
        }
        self.keys.push(key.clone());
        self.key_index.insert(key, self.keys.len() - 1);
        self.keys.len() - 1
    }

    fn link(&mut self, d: &TrackedDevice) {
        if d.dev_type().is_child()
            && let Some(p) = d.parent_addr()
        {
            self.children.entry(p).or_default().push(d.address());
        }
    }

    fn unlink(&mut self, d: &TrackedDevice) {
        if let Some(p) = d.parent_addr()
            && let Some(list) = self.children.get_mut(&p)
        {
            list.retain(|&c| c != d.address());
        }
    }

    pub(crate) fn set(&mut self, d: TrackedDevice) {
        let a = d.address();
        let (relink, rekey) = match self.devices.get(&a) {
            Some(old) => (
                old.dev_type() != d.dev_type() || old.parent_addr() != d.parent_addr(),
                old.profile != d.profile,
            ),
            None => (true, true),
        };
        if relink {
            if let Some(old) = self.devices.get(&a).cloned() {
                self.unlink(&old);
            }
            self.link(&d);
        }
        let key = match (rekey, self.slots.get(&a)) {
            (false, Some(slot)) => slot.key,
            _ => self.key_for(&d.profile),
        };
        self.slots.insert(
            a,
            Slot {
                key,
                entry: d.pool_entry(),
                free: Self::is_free(&d),
                reserved: d.reserved && Self::is_free_but_reserved(&d),
            },
        );
        self.devices.insert(a, d);
    }

    pub(crate) fn remove(&mut self, a: PciAddress) {
        if let Some(old) = self.devices.remove(&a) {
            self.unlink(&old);
        }
        self.slots.remove(&a);
    }

    /// Free devices: available, reported by the last sync (a device kept by a cleanup
    /// policy while missing is not handed out), and not reserved (a used one-time-use device
    /// waits for an operator's release).
    pub(crate) fn is_free(d: &TrackedDevice) -> bool {
        Self::is_free_but_reserved(d) && !d.reserved
    }

    fn is_free_but_reserved(d: &TrackedDevice) -> bool {
        d.status == DeviceStatus::Available && d.missing_syncs == 0
    }

    pub(crate) fn pools(&self) -> PoolSet {
        PoolSet::from_interned(
            &self.keys,
            self.slots
                .values()
                .filter(|s| s.free)
                .map(|s| (s.key, s.entry.clone())),
        )
    }

    /// The reserved devices that would otherwise be free, pooled by their keys: what Nova
    /// reports to Placement as a provider's `reserved` inventory. Never used to satisfy a
    /// request.
    pub(crate) fn reserved_pools(&self) -> PoolSet {
        PoolSet::from_interned(
            &self.keys,
            self.slots
                .values()
                .filter(|s| s.reserved)
                .map(|s| (s.key, s.entry.clone())),
        )
    }
}

/// Pending changes over a [`State`], written in one transaction and merged after commit.
pub(crate) struct Work<'a> {
    pub(crate) base: &'a State,
    pub(crate) over: BTreeMap<PciAddress, Option<TrackedDevice>>,
}

impl<'a> Work<'a> {
    pub(crate) fn new(base: &'a State) -> Self {
        Self {
            base,
            over: BTreeMap::new(),
        }
    }

    pub(crate) fn get(&self, a: PciAddress) -> Option<&TrackedDevice> {
        match self.over.get(&a) {
            Some(d) => d.as_ref(),
            None => self.base.devices.get(&a),
        }
    }

    pub(crate) fn put(&mut self, d: TrackedDevice) {
        self.over.insert(d.address(), Some(d));
    }

    pub(crate) fn delete(&mut self, a: PciAddress) {
        self.over.insert(a, None);
    }

    /// The family the state machine needs for an operation on `a` (claims and frees, which do
    /// not add devices, so the base's child index holds): a PF with its children, or a child
    /// with its PF and siblings, or `a` alone. Returns the family, the addresses of its
    /// members and `a`'s index.
    pub(crate) fn family(&self, a: PciAddress) -> Option<(Family, Vec<PciAddress>, usize)> {
        let d = self.get(a)?;
        let head = match d.parent_addr() {
            Some(p) if d.dev_type().is_child() => match self.get(p) {
                Some(pd) if pd.dev_type() == DevType::Pf => Some(p),
                _ => None,
            },
            _ if d.dev_type() == DevType::Pf => Some(a),
            _ => None,
        };
        let mut family = Family::new();
        let mut addrs = Vec::new();
        let member = |t: &TrackedDevice| Member {
            address: t.address(),
            dev_type: t.dev_type(),
            status: t.status,
            owner: t.instance_uuid.clone(),
        };
        match head {
            None => {
                family.push(member(d), None);
                addrs.push(a);
            }
            Some(pf) => {
                let p = family.push(member(self.get(pf)?), None);
                addrs.push(pf);
                for &c in self
                    .base
                    .children
                    .get(&pf)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    if let Some(cd) = self.get(c)
                        && cd.dev_type().is_child()
                    {
                        family.push(member(cd), Some(p));
                        addrs.push(c);
                    }
                }
            }
        }
        let target = addrs.iter().position(|&x| x == a)?;
        Some((family, addrs, target))
    }

    /// Writes back a family after an operation, re-deriving the statuses of members nobody
    /// holds from their relatives' owners.
    pub(crate) fn store_family(&mut self, mut family: Family, addrs: &[PciAddress]) {
        for i in 0..family.members.len() {
            let m = &family.members[i];
            if m.status.is_in_use() || m.owner.is_some() || m.status == DeviceStatus::Removed {
                continue;
            }
            let relatives: Vec<DeviceStatus> = match family.parent_of(i) {
                Some(p) => vec![family.members[p].status],
                None => family
                    .children_of(i)
                    .map(|c| family.members[c].status)
                    .collect(),
            };
            family.members[i].status = derived_status(relatives);
        }
        for (m, &a) in family.members.iter().zip(addrs) {
            let Some(cur) = self.get(a) else { continue };
            if cur.status != m.status || cur.instance_uuid != m.owner {
                let mut d = cur.clone();
                d.status = m.status;
                d.instance_uuid = m.owner.clone();
                if !d.status.is_in_use() {
                    d.request_id = None;
                }
                self.put(d);
            }
        }
    }

    /// The rows that differ from the base.
    pub(crate) fn changes(&self) -> ChangeSet<'_> {
        let mut cs = ChangeSet::default();
        for (a, d) in &self.over {
            match (d, self.base.devices.get(a)) {
                (None, Some(_)) => cs.deletes.push(*a),
                (None, None) => {}
                (Some(d), Some(old)) if d == old => {}
                (Some(d), Some(old)) if d.profile == old.profile && d.pending == old.pending => {
                    cs.bookkeeping.push(d)
                }
                (Some(d), _) => cs.upserts.push(d),
            }
        }
        cs
    }
}
