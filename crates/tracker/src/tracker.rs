//! The tracker: Nova's `PciDevTracker` over a [`Store`], with the policies' verdicts as input.
//!
//! Every public operation that changes state runs in one write transaction: take the write
//! lock, reload if another handle or process changed the data, decide in memory, write only the
//! rows that changed, commit. A refusal rolls back having written nothing, and an operation
//! that changes nothing writes nothing.

use std::path::Path;

use pcitrack_model::{Assessment, DevType, DeviceStatus, PciAddress};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cleanup::CleanupPolicy;
use crate::device_state::{Outcome, TransitionError};
use crate::pools::{NumaContext, PoolError, PoolSet};
use crate::record::TrackedDevice;
use crate::request::PciRequest;
use crate::state::{State, Work};
use crate::store::{SqliteStore, Store, StoreError};
use crate::sync::{SyncReport, sync_in};

/// A device a claim reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedDevice {
    /// The device.
    pub address: PciAddress,
    /// Which request (index into the claim's requests) it serves.
    pub request_index: usize,
    /// That request's id, recorded on the device.
    pub request_id: Option<String>,
    /// Its type.
    pub dev_type: DevType,
    /// PCI vendor id.
    pub vendor_id: u16,
    /// PCI device id.
    pub product_id: u16,
    /// Its NUMA node.
    pub numa_node: Option<u32>,
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
    /// The address names no tracked device.
    #[error("PCI device {address} is not tracked")]
    NotTracked {
        /// The address.
        address: PciAddress,
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
    /// changed, or rolls back (writing nothing) when it fails or changes nothing.
    fn write<T>(
        &mut self,
        decide: impl FnOnce(&mut Work<'_>) -> Result<T, TrackerError>,
    ) -> Result<T, TrackerError> {
        let changed = self.store.begin_write()?;
        let result = (|| {
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
        })();
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
        self.write(|work| sync_in(work, assessed, cleanup))
    }

    /// Claims devices for `instance`: all requests are met, or nothing changes. Devices are
    /// chosen as Nova's `consume_requests` does, then each goes through the state machine
    /// with its relatives.
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
                    let (mut family, members, target) = work
                        .family(a)
                        .ok_or(TrackerError::NotTracked { address: a })?;
                    let outcome =
                        family
                            .claim(target, instance)
                            .map_err(|source| TrackerError::Refused {
                                instance: instance.to_string(),
                                source,
                            })?;
                    log_warnings(&outcome);
                    work.store_family(family, &members);
                    let mut d = work.get(a).expect("in the family").clone();
                    d.request_id = requests[ri].request_id.clone();
                    let dev = &d.profile.device;
                    out.push(ClaimedDevice {
                        address: a,
                        request_index: ri,
                        request_id: d.request_id.clone(),
                        dev_type: dev.dev_type,
                        vendor_id: dev.vendor_id,
                        product_id: dev.product_id,
                        numa_node: dev.numa_node,
                    });
                    work.put(d);
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
