//! The tracker's invariants, checkable on any database: owners exactly on devices in use; a PF
//! and its children never in use together; the status of a device nobody holds derived from
//! its relatives; no `removed` or `deleted` row stored; pools equal to the free devices.
//!
//! The property tests check them after random operations, the crash tests after every
//! SIGKILL, and `pcitrack check` lets an operator check a database file.

use std::collections::BTreeMap;

use pcitrack_model::{DevType, PciAddress};

use crate::device_state::derived_status;
use crate::record::TrackedDevice;
use crate::store::Store;
use crate::tracker::Tracker;

/// Checks every invariant; the first violation, described, is the error.
pub fn check<S: Store>(t: &mut Tracker<S>) -> Result<(), String> {
    use pcitrack_model::DeviceStatus::*;
    let devices = t.devices(&Default::default()).map_err(|e| e.to_string())?;
    let by: BTreeMap<PciAddress, &TrackedDevice> =
        devices.iter().map(|d| (d.address(), d)).collect();
    for d in &devices {
        let a = d.address();
        if d.status.is_in_use() != d.instance_uuid.is_some() {
            return Err(format!(
                "{a} is {} with owner {:?}",
                d.status, d.instance_uuid
            ));
        }
        if matches!(d.status, Removed | Deleted) {
            return Err(format!("{a} is stored as {}", d.status));
        }
        let relatives: Vec<&TrackedDevice> = match d.dev_type() {
            DevType::Pf => devices
                .iter()
                .filter(|c| c.dev_type().is_child() && c.parent_addr() == Some(a))
                .collect(),
            t if t.is_child() => d
                .parent_addr()
                .and_then(|p| by.get(&p).copied())
                .filter(|p| p.dev_type() == DevType::Pf)
                .into_iter()
                .collect(),
            _ => vec![],
        };
        if d.status.is_in_use() {
            if let Some(r) = relatives.iter().find(|r| r.status.is_in_use()) {
                return Err(format!(
                    "{a} ({}) and its relative {} ({}) are both in use",
                    d.status,
                    r.address(),
                    r.status
                ));
            }
        } else {
            let want = derived_status(relatives.iter().map(|r| r.status));
            if d.status != want {
                return Err(format!(
                    "{a} is {} but its relatives call for {want}",
                    d.status
                ));
            }
        }
    }
    let pooled: Vec<PciAddress> = {
        let mut v: Vec<PciAddress> = t
            .pools()
            .map_err(|e| e.to_string())?
            .free_devices()
            .map(|e| e.address)
            .collect();
        v.sort();
        v
    };
    let free: Vec<PciAddress> = devices
        .iter()
        .filter(|d| d.status == Available && d.missing_syncs == 0)
        .map(|d| d.address())
        .collect();
    if pooled != free {
        return Err(format!("pools hold {pooled:?}, free devices are {free:?}"));
    }
    Ok(())
}
