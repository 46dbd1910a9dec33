//! The tracker: Nova's `PciDevTracker` over a [`Store`], with the policies' verdicts as input.
//!
//! Every public operation that changes state runs in one write transaction: take the write
//! lock, reload if another handle or process changed the data, decide in memory, write only the
//! rows that changed, commit. A refusal rolls back having written nothing, and an operation
//! that changes nothing writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pcitrack_model::tag_value::bool_from_tag;
use pcitrack_model::{Assessment, DevType, DeviceStatus, PciAddress};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cleanup::CleanupPolicy;
use crate::device_state::{Outcome, TransitionError};
use crate::pools::{NumaContext, PoolError, PoolSet, pool_value};
use crate::record::TrackedDevice;
use crate::request::{PciRequest, Spec};
use crate::state::{State, Work};
use crate::store::{SqliteStore, Store, StoreError};
use crate::sync::{Scope, SyncReport, sync_in};

/// A device a claim reserved: what a consumer needs to attach it (Nova's libvirt driver
/// reads the same fields from the `PciDevice`: address, type, ids, NUMA node, `managed`,
/// `parent_ifname`), and which request it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedDevice {
    /// The device.
    pub address: PciAddress,
    /// Which request (index into the claim's requests) it serves.
    pub request_index: usize,
    /// That request's id, recorded on the device (Nova's `request_id`).
    pub request_id: Option<String>,
    /// The alias the request came from, if any.
    #[serde(default)]
    pub alias_name: Option<String>,
    /// Its type.
    pub dev_type: DevType,
    /// PCI vendor id, 4 lower-case hex digits as everywhere else (`8086`).
    pub vendor_id: String,
    /// PCI device id, 4 lower-case hex digits.
    pub product_id: String,
    /// Its PF, for a VF or vDPA device.
    #[serde(default)]
    pub parent_addr: Option<PciAddress>,
    /// Its NUMA node.
    pub numa_node: Option<u32>,
    /// Its IOMMU group, when the host has an IOMMU.
    #[serde(default)]
    pub iommu_group: Option<u32>,
    /// The host driver bound when it was last discovered.
    #[serde(default)]
    pub driver: Option<String>,
    /// Nova's normalised `managed` device_spec tag, `"true"` or `"false"`: `"false"` means the
    /// consumer must not unbind the host driver (libvirt `managed='no'`). Without the tag
    /// Nova assumes `"true"` (`nova/virt/libvirt/driver.py` `_get_guest_pci_device`:
    /// `extra_info.get('managed', 'true')`), and so does this.
    pub managed: String,
    /// For a VF or vDPA device with a network interface: its PF's interface.
    #[serde(default)]
    pub parent_ifname: Option<String>,
    /// Its index among its PF's VFs.
    #[serde(default)]
    pub vf_index: Option<u16>,
    /// Its tags, each with the JSON type the device_spec gave it.
    #[serde(default)]
    pub tags: BTreeMap<String, serde_json::Value>,
}

impl ClaimedDevice {
    /// The answer for device `d`, claimed for request `index`.
    fn of(d: &TrackedDevice, index: usize, request: &PciRequest) -> Self {
        let dev = &d.profile.device;
        let managed = d
            .profile
            .tags
            .get("managed")
            .is_none_or(|v| bool_from_tag(v));
        ClaimedDevice {
            address: dev.address,
            request_index: index,
            request_id: d.request_id.clone(),
            alias_name: request.alias_name.clone(),
            dev_type: dev.dev_type,
            vendor_id: format!("{:04x}", dev.vendor_id),
            product_id: format!("{:04x}", dev.product_id),
            parent_addr: dev.parent_addr,
            numa_node: dev.numa_node,
            iommu_group: dev.iommu_group,
            driver: dev.driver.clone(),
            managed: if managed { "true" } else { "false" }.to_string(),
            parent_ifname: d.profile.parent_ifname.clone(),
            vf_index: dev.vf_index,
            tags: d
                .profile
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), pool_value(v)))
                .collect(),
        }
    }
}

/// A request for `count` devices among explicit candidates: what a Placement allocation
/// names (the devices behind one allocated provider: a PF provider's VFs, or the PF or
/// type-PCI device itself), for [`Tracker::claim_among`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateRequest {
    /// The devices that may serve it, in the order to try them.
    pub candidates: Vec<PciAddress>,
    /// How many of them to claim.
    pub count: u32,
    /// Recorded on the claimed devices (Nova's `request_id`).
    #[serde(default)]
    pub request_id: Option<String>,
}

/// What a free did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeReport {
    /// The devices released (the instance's, not their relatives).
    pub freed: Vec<PciAddress>,
    /// Released devices deleted because the host stopped reporting them while in use.
    pub deleted: Vec<PciAddress>,
    /// Released devices that took a change reported while they were in use.
    pub updated: Vec<PciAddress>,
}

/// Which devices [`Tracker::devices`] lists; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// Only this status.
    pub status: Option<DeviceStatus>,
    /// Only devices held by this instance.
    pub instance: Option<String>,
    /// Only this type.
    pub dev_type: Option<DevType>,
}

/// A tracker operation that failed or was refused. Nothing was written.
#[derive(Debug, Error)]
pub enum TrackerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No free devices satisfy the request.
    #[error("claim for instance {instance} refused: {source}")]
    NoDevices {
        /// The instance.
        instance: String,
        /// Which request and filter fell short.
        #[source]
        source: PoolError,
    },
    /// The state machine refused an operation on a device.
    #[error("instance {instance}: {source}")]
    Refused {
        /// The instance the operation was for.
        instance: String,
        /// The device, its status and the operation.
        #[source]
        source: TransitionError,
    },
    /// A [`Tracker::claim_among`] request with fewer free devices among its candidates than
    /// it wants.
    #[error(
        "claim for instance {instance} refused: request #{request} wants {wanted} of its \
         {candidates} candidate device(s) but only {free} are free"
    )]
    TooFewFree {
        /// The instance.
        instance: String,
        /// The request's index.
        request: usize,
        /// How many devices it wants.
        wanted: u32,
        /// How many candidates it named.
        candidates: usize,
        /// How many of them were free.
        free: usize,
    },
    /// The address names no tracked device.
    #[error("PCI device {address} is not tracked")]
    NotTracked {
        /// The address.
        address: PciAddress,
    },
    /// [`Tracker::release`] of a device that is not reserved.
    #[error(
        "PCI device {address} is not reserved (only a one-time-use device that has been \
         allocated is; it is {status})"
    )]
    NotReserved {
        /// The device.
        address: PciAddress,
        /// Its status.
        status: DeviceStatus,
    },
    /// [`Tracker::release`] of a reserved device an instance still holds.
    #[error(
        "PCI device {address} is reserved but still {status} by instance {instance}; free it \
         before releasing it"
    )]
    ReleaseInUse {
        /// The device.
        address: PciAddress,
        /// Its status (claimed or allocated).
        status: DeviceStatus,
        /// The holder.
        instance: String,
    },
}

/// The PCI device tracker.
pub struct Tracker<S: Store = SqliteStore> {
    store: S,
    state: Option<State>,
}

impl Tracker<SqliteStore> {
    /// Opens (creating and migrating if needed) the database file at `path`.
    ///
    /// # Errors
    ///
    /// [`TrackerError::Store`] when the file cannot be opened, is not a pcitrack database,
    /// or its schema cannot be migrated.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TrackerError> {
        Ok(Self::with_store(SqliteStore::open(path)?))
    }

    /// A tracker over a private in-memory database.
    ///
    /// # Errors
    ///
    /// [`TrackerError::Store`] when the database cannot be read or written (nothing is
    /// written then).
    pub fn in_memory() -> Result<Self, TrackerError> {
        Ok(Self::with_store(SqliteStore::in_memory()?))
    }
}

impl<S: Store> Tracker<S> {
    /// A tracker over any store.
    pub fn with_store(store: S) -> Self {
        Self { store, state: None }
    }

    /// The store, for inspection.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Runs `decide` in one write transaction over fresh state; writes and commits what it
    /// changed, or rolls back (writing nothing) when it fails or changes nothing. Each
    /// commit reaches the disk before this returns (see [`Tracker::write_unsynced`]).
    fn write<T>(
        &mut self,
        decide: impl FnOnce(&mut Work<'_>) -> Result<T, TrackerError>,
    ) -> Result<T, TrackerError> {
        self.write_as(true, decide)
    }

    /// [`Tracker::write`] for a reconcile: its commit is not synced to the disk
    /// ([`Store::begin_write_unsynced`]; an fsync was most of an incremental reconcile's
    /// time). What a sync writes is derived from sysfs and what the tracker held, and every
    /// start reconciles in full before it serves, so a power cut can only lose what that
    /// first reconcile writes again (an unreported device's count of missed syncs may then
    /// be one lower); a claim, an allocation, a free or a release is synced
    /// as before, and carries the earlier commits to the disk with it.
    fn write_unsynced<T>(
        &mut self,
        decide: impl FnOnce(&mut Work<'_>) -> Result<T, TrackerError>,
    ) -> Result<T, TrackerError> {
        self.write_as(false, decide)
    }

    fn write_as<T>(
        &mut self,
        synced: bool,
        decide: impl FnOnce(&mut Work<'_>) -> Result<T, TrackerError>,
    ) -> Result<T, TrackerError> {
        let changed = if synced {
            self.store.begin_write()?
        } else {
            self.store.begin_write_unsynced()?
        };
        // A panic inside the transaction (a bug in a decision, or in a policy's glue) must
        // not leave it open: the handle would refuse every later write ("cannot start a
        // transaction within a transaction") and keep a reconcile's lowered durability. So
        // an unwinding panic rolls back (which also restores synchronous=FULL), forgets the
        // in-memory copy, and goes on unwinding.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if changed || self.state.is_none() {
                self.state = None;
                self.state = Some(State::new(self.store.load_all()?));
            }
            let state = self.state.as_ref().expect("loaded above");
            let mut work = Work::new(state);
            let value = decide(&mut work)?;
            let changes = work.changes();
            if changes.is_empty() {
                self.store.rollback()?;
            } else {
                self.store.apply(&changes)?;
                self.store.commit()?;
            }
            drop(changes);
            Ok((value, std::mem::take(&mut work.over)))
        }));
        let result = match result {
            Ok(result) => result,
            Err(panic) => {
                self.state = None;
                if let Err(rb) = self.store.rollback() {
                    tracing::error!(error = %rb, "rollback after a panic in a write failed");
                }
                std::panic::resume_unwind(panic);
            }
        };
        match result {
            Ok((value, over)) => {
                let state = self.state.as_mut().expect("loaded above");
                for (a, d) in over {
                    match d {
                        Some(d) => state.set(d),
                        None => state.remove(a),
                    }
                }
                Ok(value)
            }
            Err(e) => {
                if let Err(rb) = self.store.rollback() {
                    tracing::error!(error = %rb, "rollback after a failed operation failed");
                    self.state = None;
                }
                Err(e)
            }
        }
    }

    /// Brings the in-memory copy up to date for a read.
    fn fresh(&mut self) -> Result<&State, TrackerError> {
        if self.store.changed_since_last_look()? || self.state.is_none() {
            self.state = None;
            self.state = Some(State::new(self.store.load_all()?));
        }
        Ok(self.state.as_ref().expect("loaded above"))
    }

    /// The tracked devices matching `filter`, sorted by address.
    ///
    /// # Errors
    ///
    /// [`TrackerError::Store`] when the database cannot be read or written (nothing is
    /// written then).
    pub fn devices(&mut self, filter: &DeviceFilter) -> Result<Vec<TrackedDevice>, TrackerError> {
        self.devices_where(filter, |_| true)
    }

    /// The tracked devices matching `filter` and `keep`, sorted by address; only those are
    /// copied (the API's `?product_id=` picks a few devices of thousands, under the lock a
    /// reconcile waits for).
    ///
    /// # Errors
    ///
    /// [`TrackerError::Store`] when the database cannot be read or written (nothing is
    /// written then).
    pub fn devices_where(
        &mut self,
        filter: &DeviceFilter,
        keep: impl Fn(&TrackedDevice) -> bool,
    ) -> Result<Vec<TrackedDevice>, TrackerError> {
        let state = self.fresh()?;
        Ok(state
            .devices
            .values()
            .filter(|d| filter.status.is_none_or(|s| d.status == s))
            .filter(|d| filter.dev_type.is_none_or(|t| d.dev_type() == t))
            .filter(|d| {
                filter
                    .instance
                    .as_deref()
                    .is_none_or(|i| d.instance_uuid.as_deref() == Some(i))
            })
            .filter(|d| keep(d))
            .cloned()
            .collect())
    }

    /// The pools of free devices, derived from device state.
    ///
    /// # Errors
    ///
    /// [`TrackerError::Store`] when the database cannot be read or written (nothing is
    /// written then).
    pub fn pools(&mut self) -> Result<PoolSet, TrackerError> {
        Ok(self.fresh()?.pools())
    }

    /// The reserved devices (one-time-use devices allocated once and not yet released) that
    /// are otherwise free, pooled by their keys; they never satisfy a request.
    ///
    /// # Errors
    ///
    /// [`TrackerError::Store`] when the database cannot be read.
    pub fn reserved_pools(&mut self) -> Result<PoolSet, TrackerError> {
        Ok(self.fresh()?.reserved_pools())
    }

    /// Releases a reserved device: an operator says a used one-time-use device has been
    /// wiped, and it returns to the pools (when available and reported). Nova leaves this to
    /// whoever resets the Placement provider's `reserved` inventory; pcitrack keeps the
    /// reservation itself, so releasing is this call. Returns the device as released.
    ///
    /// # Errors
    ///
    /// [`TrackerError::NotTracked`] for an unknown address, [`TrackerError::NotReserved`]
    /// when the device is not reserved, [`TrackerError::ReleaseInUse`] while an instance
    /// still holds it, [`TrackerError::Store`]; nothing is written then.
    pub fn release(&mut self, address: PciAddress) -> Result<TrackedDevice, TrackerError> {
        self.write(|work| {
            let mut d = work
                .get(address)
                .ok_or(TrackerError::NotTracked { address })?
                .clone();
            if !d.reserved {
                return Err(TrackerError::NotReserved {
                    address,
                    status: d.status,
                });
            }
            if d.status.is_in_use() {
                return Err(TrackerError::ReleaseInUse {
                    address,
                    status: d.status,
                    instance: d.instance_uuid.clone().unwrap_or_else(|| "None".into()),
                });
            }
            d.reserved = false;
            tracing::info!(address = %address, "released a reserved one-time-use device");
            work.put(d.clone());
            Ok(d)
        })
    }

    /// Whether the free devices could meet each request (Nova's `support_requests`).
    ///
    /// # Errors
    ///
    /// [`TrackerError::Store`] when the database cannot be read or written (nothing is
    /// written then).
    pub fn support(
        &mut self,
        requests: &[PciRequest],
        numa: Option<NumaContext<'_>>,
    ) -> Result<bool, TrackerError> {
        Ok(self.fresh()?.pools().support_requests(requests, numa))
    }

    /// Reconciles the tracked devices with what the host reports (Nova's `_set_hvdevs`).
    ///
    /// * New assignable devices are added as available.
    /// * Changed devices are updated, unless in use: then the change waits until they are
    ///   freed.
    /// * Devices not reported, or no longer assignable, go to `cleanup`; an abstention falls
    ///   back to Nova's rule ([`pcitrack_model::cleanup::nova_rule`]). A device an instance
    ///   holds is never deleted while held (this is the one place that guard is decided): a
    ///   delete is deferred and the device is deleted when freed (Nova f37cdf0c41); a policy's
    ///   explicit keep is respected. A delete verdict on a device with an owner is refused
    ///   (Nova's owner guard) and reported as kept.
    /// * `unavailable`/`unclaimable` are re-derived from relatives' owners; stale ones are
    ///   repaired and logged.
    ///
    /// Nothing is written when nothing changed.
    ///
    /// # Errors
    ///
    /// [`TrackerError::Store`] when the database cannot be read or written (nothing is
    /// written then).
    pub fn sync(
        &mut self,
        assessed: &[Assessment],
        cleanup: &dyn CleanupPolicy,
    ) -> Result<SyncReport, TrackerError> {
        self.write_unsynced(|work| sync_in(work, assessed, Scope::All, cleanup))
    }

    /// Reconciles only the devices of `scope` (a partial rescan's: the devices a uevent
    /// burst re-read, with their relatives) with `assessed` (their assessments; a device of
    /// the scope without one is gone), by the same rules as [`Tracker::sync`]. Tracked
    /// devices outside `scope` stay as they are, except that `unavailable`/`unclaimable`
    /// are re-derived over all devices as every sync does; the cleanup chain sees them as
    /// the last sync left them.
    ///
    /// # Errors
    ///
    /// [`TrackerError::Store`] when the database cannot be read or written (nothing is
    /// written then).
    pub fn sync_some(
        &mut self,
        assessed: &[Assessment],
        scope: &BTreeSet<PciAddress>,
        cleanup: &dyn CleanupPolicy,
    ) -> Result<SyncReport, TrackerError> {
        self.write_unsynced(|work| sync_in(work, assessed, Scope::Only(scope), cleanup))
    }

    /// Claims devices for `instance`: all requests are met, or nothing changes. Devices are
    /// chosen as Nova's `consume_requests` does, then each goes through the state machine
    /// with its relatives.
    ///
    /// `numa` is the instance's NUMA context, as Nova's `_claim_instance` passes the
    /// instance's NUMA cells to `consume_requests`: each request's `numa_policy` (legacy when
    /// unset) then decides which pools it may use; without cells, NUMA is not considered.
    /// Each device records its request's `request_id` (the caller generates one per request,
    /// as Nova's `InstancePCIRequest` does).
    ///
    /// # Errors
    ///
    /// [`TrackerError::NoDevices`] naming the request the free pools cannot meet;
    /// [`TrackerError::Refused`] when the state machine refuses a chosen device;
    /// [`TrackerError::Store`]. A refused claim writes nothing.
    pub fn claim(
        &mut self,
        instance: &str,
        requests: &[PciRequest],
        numa: Option<NumaContext<'_>>,
    ) -> Result<Vec<ClaimedDevice>, TrackerError> {
        self.write(|work| {
            let mut pools = work.base.pools();
            let chosen = pools.consume_requests(requests, numa).map_err(|source| {
                TrackerError::NoDevices {
                    instance: instance.to_string(),
                    source,
                }
            })?;
            let mut out = Vec::new();
            for (ri, addrs) in chosen.into_iter().enumerate() {
                for a in addrs {
                    out.push(claim_one(work, instance, a, ri, &requests[ri])?);
                }
            }
            // Nova's `_claim_instance` warns the same way: the instance has a NUMA topology
            // and a device without NUMA information serves it.
            if numa.is_some_and(|c| !c.cells.is_empty()) {
                for c in out.iter().filter(|c| c.numa_node.is_none()) {
                    tracing::warn!(
                        device = %c.address,
                        instance,
                        "assigning a PCI device without NUMA affinity to an instance with a \
                         NUMA topology"
                    );
                }
            }
            Ok(out)
        })
    }

    /// Claims for `instance` exactly `count` free devices among each request's candidates: all
    /// requests are met, or nothing changes. A claim by Placement consumer comes here: the
    /// allocation already chose the providers, so only the devices behind them may serve it
    /// (Nova's `_filter_pools_for_allocation`, `nova/pci/stats.py`). Free is what the pools
    /// hold (the one rule, [`PoolSet::consume_among`]); each chosen device then goes through
    /// the state machine with its relatives, as in [`Tracker::claim`].
    ///
    /// A request's count is what the instance should hold among its candidates, not a
    /// delta: Placement's allocation of a consumer is its total. Candidates the instance
    /// already holds (claimed or allocated) count toward it and are answered again, so a
    /// repeated claim (a client retrying after a lost answer) takes nothing more and writes
    /// nothing, and a grown allocation takes only the difference.
    ///
    /// # Errors
    ///
    /// [`TrackerError::TooFewFree`] naming the first request whose candidates hold fewer free
    /// devices than it wants; [`TrackerError::Refused`] when the state machine refuses a
    /// chosen device; [`TrackerError::NotTracked`]; [`TrackerError::Store`]. A refused claim
    /// writes nothing.
    pub fn claim_among(
        &mut self,
        instance: &str,
        requests: &[CandidateRequest],
    ) -> Result<Vec<ClaimedDevice>, TrackerError> {
        self.write(|work| {
            let held: BTreeSet<PciAddress> = owned_by(
                work,
                instance,
                &[DeviceStatus::Claimed, DeviceStatus::Allocated],
            )
            .into_iter()
            .collect();
            let already: Vec<Vec<PciAddress>> = requests
                .iter()
                .map(|r| {
                    r.candidates
                        .iter()
                        .copied()
                        .filter(|a| held.contains(a))
                        .take(r.count as usize)
                        .collect()
                })
                .collect();
            let mut pools = work.base.pools();
            let groups: Vec<(&[PciAddress], usize)> = requests
                .iter()
                .zip(&already)
                .map(|(r, have)| (r.candidates.as_slice(), r.count as usize - have.len()))
                .collect();
            let chosen = pools.consume_among(&groups).map_err(|s| {
                let r = &requests[s.group];
                TrackerError::TooFewFree {
                    instance: instance.to_string(),
                    request: s.group,
                    wanted: r.count,
                    candidates: r.candidates.len(),
                    free: s.free + already[s.group].len(),
                }
            })?;
            let mut out = Vec::new();
            for (ri, addrs) in chosen.into_iter().enumerate() {
                let mut as_request = PciRequest::new(requests[ri].count, Spec::new());
                as_request.request_id = requests[ri].request_id.clone();
                for &a in &already[ri] {
                    let d = work.get(a).expect("held by the instance");
                    out.push(ClaimedDevice::of(d, ri, &as_request));
                }
                for a in addrs {
                    out.push(claim_one(work, instance, a, ri, &as_request)?);
                }
            }
            Ok(out)
        })
    }

    /// Allocates every device `instance` has claimed (Nova's `allocate_instance`). Returns the
    /// devices allocated; none when the instance had claimed nothing.
    ///
    /// # Errors
    ///
    /// [`TrackerError::Refused`] when a claimed device cannot be allocated (its status or
    /// owner changed), [`TrackerError::NotTracked`], [`TrackerError::Store`]; nothing is
    /// written then.
    pub fn allocate(&mut self, instance: &str) -> Result<Vec<PciAddress>, TrackerError> {
        self.write(|work| {
            let claimed: Vec<PciAddress> = owned_by(work, instance, &[DeviceStatus::Claimed]);
            for &a in &claimed {
                let (mut family, members, target) = work
                    .family(a)
                    .ok_or(TrackerError::NotTracked { address: a })?;
                family
                    .allocate(target, instance)
                    .map_err(|source| TrackerError::Refused {
                        instance: instance.to_string(),
                        source,
                    })?;
                work.store_family(family, &members);
                reserve_if_one_time_use(work, a);
            }
            Ok(claimed)
        })
    }

    /// Frees every device `instance` holds, claimed or allocated (Nova's `free_instance`).
    ///
    /// # Errors
    ///
    /// [`TrackerError::Refused`] when the state machine refuses to free a device,
    /// [`TrackerError::Store`]; nothing is written then.
    pub fn free(&mut self, instance: &str) -> Result<FreeReport, TrackerError> {
        self.write(|work| {
            let held = owned_by(
                work,
                instance,
                &[DeviceStatus::Claimed, DeviceStatus::Allocated],
            );
            let mut report = FreeReport::default();
            for a in held {
                free_one(work, a, Some(instance), &mut report)?;
            }
            Ok(report)
        })
    }

    /// Frees one device; with `instance`, only if that instance holds it (Nova's
    /// `free_device`).
    ///
    /// # Errors
    ///
    /// [`TrackerError::NotTracked`] for an unknown address, [`TrackerError::Refused`] when
    /// `instance` does not hold it or its status cannot be freed, [`TrackerError::Store`].
    pub fn free_device(
        &mut self,
        address: PciAddress,
        instance: Option<&str>,
    ) -> Result<FreeReport, TrackerError> {
        self.write(|work| {
            let mut report = FreeReport::default();
            free_one(work, address, instance, &mut report)?;
            Ok(report)
        })
    }
}

/// A one-time-use device becomes reserved when it is allocated, and stays so after it is
/// freed, until [`Tracker::release`]. Nova reserves its Placement inventory as soon as the
/// device has an owner (`_handle_one_time_use` reads `instance_uuid`, which a claim sets);
/// pcitrack waits for the allocation, because a claim that is freed unallocated never
/// handed the device to anyone.
fn reserve_if_one_time_use(work: &mut Work<'_>, a: PciAddress) {
    if let Some(d) = work.get(a)
        && !d.reserved
        && d.profile.one_time_use()
    {
        let mut d = d.clone();
        d.reserved = true;
        tracing::info!(address = %a, "one-time-use device allocated: reserved until released");
        work.put(d);
    }
}

/// Claims device `a` for `instance` through the state machine (with its relatives) and
/// records request `ri`'s id on it.
fn claim_one(
    work: &mut Work<'_>,
    instance: &str,
    a: PciAddress,
    ri: usize,
    request: &PciRequest,
) -> Result<ClaimedDevice, TrackerError> {
    let (mut family, members, target) = work
        .family(a)
        .ok_or(TrackerError::NotTracked { address: a })?;
    let outcome = family
        .claim(target, instance)
        .map_err(|source| TrackerError::Refused {
            instance: instance.to_string(),
            source,
        })?;
    log_warnings(&outcome);
    work.store_family(family, &members);
    let mut d = work.get(a).expect("in the family").clone();
    d.request_id = request.request_id.clone();
    let claimed = ClaimedDevice::of(&d, ri, request);
    work.put(d);
    Ok(claimed)
}

fn log_warnings(outcome: &Outcome) {
    for w in &outcome.warnings {
        tracing::warn!("{w}");
    }
}

fn owned_by(work: &Work<'_>, instance: &str, statuses: &[DeviceStatus]) -> Vec<PciAddress> {
    let mut out: Vec<PciAddress> = work
        .base
        .devices
        .values()
        .filter(|d| d.instance_uuid.as_deref() == Some(instance) && statuses.contains(&d.status))
        .map(|d| d.address())
        .collect();
    // PFs before children: freeing a PF first lets the children's PF check see it free.
    out.sort_by_key(|&a| (work.get(a).is_some_and(|d| d.dev_type().is_child()), a));
    out
}

fn free_one(
    work: &mut Work<'_>,
    a: PciAddress,
    instance: Option<&str>,
    report: &mut FreeReport,
) -> Result<(), TrackerError> {
    let who = instance.unwrap_or("-").to_string();
    let (mut family, members, target) = work
        .family(a)
        .ok_or(TrackerError::NotTracked { address: a })?;
    family
        .free(target, instance)
        .map_err(|source| TrackerError::Refused {
            instance: who,
            source,
        })?;
    work.store_family(family, &members);
    report.freed.push(a);
    let mut d = work.get(a).expect("in the family").clone();
    if d.to_be_removed_when_freed && d.reserved {
        // Deleting it would forget the reservation: were it to come back, it would be handed
        // out unwiped. It stays, reserved, until released; then the cleanup rule decides.
        tracing::warn!(address = %a, "a reserved device freed after the host stopped reporting it is kept until released");
        d.to_be_removed_when_freed = false;
        work.put(d);
        return Ok(());
    }
    if d.to_be_removed_when_freed {
        tracing::info!(address = %a, "deleting a device freed after the host stopped reporting it");
        work.delete(a);
        report.deleted.push(a);
        return Ok(());
    }
    if let Some(p) = d.pending.take() {
        tracing::info!(address = %a, "applying a change reported while the device was in use");
        d.profile = p;
        report.updated.push(a);
        work.put(d);
    }
    Ok(())
}
