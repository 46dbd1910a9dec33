//! Nova's `PciDevice` state machine: claim, allocate, free and remove, with the effects on a
//! device's relatives (a PF and its VFs or vDPA devices).
//!
//! The functions here are pure: they act on a [`Family`] (a device and the relatives it is
//! linked to) held in memory, check everything first and change nothing when they refuse. The
//! tracker builds a family from its records, runs one operation, and persists the members that
//! changed in one transaction; the Nova vectors build families by hand.
//!
//! Where Nova versions differ this follows the May 2022 fix (3af2ecc13f): a PF may be claimed
//! while some of its children are `unavailable` or `unclaimable` without an owner (stale, e.g.
//! after a hardware swap); a child that is claimed, allocated or owned still refuses the claim.
//! `remove` follows the seed commit (284ea72e96): available, unavailable or unclaimable, and no
//! owner.

use std::fmt;

use pcitrack_model::{DevType, DeviceStatus, PciAddress};
use thiserror::Error;

/// One of the four operations of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Reserve a free device for an instance being built.
    Claim,
    /// Hand a free or claimed device to an instance.
    Allocate,
    /// Release a claimed or allocated device.
    Free,
    /// Take a device that is no longer reported out of service.
    Remove,
}

impl Operation {
    /// The statuses a device may start the operation in, in Nova's order (Nova prints them in
    /// this order in its messages, and operators search for those).
    pub fn allowed_from(self) -> &'static [DeviceStatus] {
        use DeviceStatus::*;
        match self {
            Operation::Claim => &[Available],
            Operation::Allocate => &[Available, Claimed],
            Operation::Free => &[Allocated, Claimed],
            Operation::Remove => &[Available, Unavailable, Unclaimable],
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Claim => "claim",
            Operation::Allocate => "allocate",
            Operation::Free => "free",
            Operation::Remove => "remove",
        })
    }
}

/// A list of statuses printed as `a`, `a or b`, `a, b or c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusList(pub &'static [DeviceStatus]);

impl fmt::Display for StatusList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(if i + 1 == n { " or " } else { ", " })?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

/// An owner as Nova prints it: the instance, or `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(pub Option<String>);

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("None"))
    }
}

/// A refused transition. Each message starts with Nova's wording (what an operator searches
/// for) and ends with the operation that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransitionError {
    /// Nova's `PciDeviceInvalidStatus`: the device is not in a status the operation starts from.
    #[error("PCI device {address} is {status} instead of {expected}; {op} refused")]
    InvalidStatus {
        /// The refused operation.
        op: Operation,
        /// The device.
        address: PciAddress,
        /// Its status.
        status: DeviceStatus,
        /// The statuses the operation accepts.
        expected: StatusList,
    },
    /// Nova's `PciDeviceInvalidOwner`: the device belongs to someone else (or, for remove, to
    /// anyone at all).
    #[error("PCI device {address} is owned by {owner} instead of {expected}; {op} refused")]
    InvalidOwner {
        /// The refused operation.
        op: Operation,
        /// The device.
        address: PciAddress,
        /// Its status.
        status: DeviceStatus,
        /// Its owner.
        owner: Owner,
        /// The owner the operation expected.
        expected: Owner,
    },
    /// Nova's `PciDeviceVFInvalidStatus`: a PF cannot be claimed or allocated because one of its
    /// children is in use (or, for allocate, not free).
    #[error(
        "Not all Virtual Functions of PF {pf} are free: {child} is {child_status}{child_owner}; {op} of PF {pf} ({pf_status}) refused"
    )]
    ChildInvalidStatus {
        /// The refused operation.
        op: Operation,
        /// The PF.
        pf: PciAddress,
        /// The PF's status.
        pf_status: DeviceStatus,
        /// The first child in the way.
        child: PciAddress,
        /// That child's status.
        child_status: DeviceStatus,
        /// `" (owned by X)"` when the child has an owner, else empty.
        child_owner: OwnerSuffix,
    },
    /// Nova's `PciDevicePFInvalidStatus`: a VF cannot be claimed or allocated because its PF is
    /// in use. Nova prints the VF's status here by mistake; this prints the PF's.
    #[error(
        "Physical Function {pf}, related to VF {vf} is {pf_status} instead of available, unclaimable or unavailable; {op} of VF {vf} ({vf_status}) refused"
    )]
    ParentInvalidStatus {
        /// The refused operation.
        op: Operation,
        /// The PF.
        pf: PciAddress,
        /// The PF's status.
        pf_status: DeviceStatus,
        /// The VF (or vDPA device).
        vf: PciAddress,
        /// The VF's status.
        vf_status: DeviceStatus,
    },
}

impl TransitionError {
    /// The device whose operation was refused.
    pub fn address(&self) -> PciAddress {
        match self {
            TransitionError::InvalidStatus { address, .. }
            | TransitionError::InvalidOwner { address, .. } => *address,
            TransitionError::ChildInvalidStatus { pf, .. } => *pf,
            TransitionError::ParentInvalidStatus { vf, .. } => *vf,
        }
    }

    /// The refused operation.
    pub fn operation(&self) -> Operation {
        match self {
            TransitionError::InvalidStatus { op, .. }
            | TransitionError::InvalidOwner { op, .. }
            | TransitionError::ChildInvalidStatus { op, .. }
            | TransitionError::ParentInvalidStatus { op, .. } => *op,
        }
    }

    /// Nova's exception class for this refusal, for cross-reference.
    pub fn nova_name(&self) -> &'static str {
        match self {
            TransitionError::InvalidStatus { .. } => "PciDeviceInvalidStatus",
            TransitionError::InvalidOwner { .. } => "PciDeviceInvalidOwner",
            TransitionError::ChildInvalidStatus { .. } => "PciDeviceVFInvalidStatus",
            TransitionError::ParentInvalidStatus { .. } => "PciDevicePFInvalidStatus",
        }
    }
}

/// `" (owned by X)"` or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerSuffix(pub Option<String>);

impl fmt::Display for OwnerSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(o) => write!(f, " (owned by {o})"),
            None => Ok(()),
        }
    }
}

/// The part of a tracked device the state machine reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The device's address.
    pub address: PciAddress,
    /// Its type: PFs and children (VF, vDPA) have relatives, type-PCI devices do not.
    pub dev_type: DevType,
    /// Its status.
    pub status: DeviceStatus,
    /// The instance holding it (Nova's `instance_uuid`).
    pub owner: Option<String>,
}

/// A device and the relatives it is linked to: a PF with its children, or a child with its
/// PF and siblings, or a lone device.
///
/// Links are explicit (rather than computed from `parent_addr`) so that the Nova vectors can
/// express an unlinked child; the tracker links every child whose PF is tracked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Family {
    /// The members; operations name them by index.
    pub members: Vec<Member>,
    parent: Vec<Option<usize>>,
}

/// What an operation did besides changing the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// For `free`: the members that became available (the target first), which is what Nova
    /// re-pools.
    pub freed: Vec<usize>,
    /// Things an operator should know, e.g. a PF claimed over stale children.
    pub warnings: Vec<String>,
}

impl Family {
    /// An empty family.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a member, linked to `parent` (an index already in the family) when given.
    pub fn push(&mut self, member: Member, parent: Option<usize>) -> usize {
        self.members.push(member);
        self.parent.push(parent);
        self.members.len() - 1
    }

    /// The linked parent of member `i`.
    pub fn parent_of(&self, i: usize) -> Option<usize> {
        self.parent[i]
    }

    /// The linked children of member `i`.
    pub fn children_of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.parent
            .iter()
            .enumerate()
            .filter(move |(_, p)| **p == Some(i))
            .map(|(j, _)| j)
    }

    fn check_status(&self, i: usize, op: Operation) -> Result<(), TransitionError> {
        let m = &self.members[i];
        if op.allowed_from().contains(&m.status) {
            Ok(())
        } else {
            Err(TransitionError::InvalidStatus {
                op,
                address: m.address,
                status: m.status,
                expected: StatusList(op.allowed_from()),
            })
        }
    }

    fn child_error(&self, op: Operation, pf: usize, child: usize) -> TransitionError {
        let c = &self.members[child];
        TransitionError::ChildInvalidStatus {
            op,
            pf: self.members[pf].address,
            pf_status: self.members[pf].status,
            child: c.address,
            child_status: c.status,
            child_owner: OwnerSuffix(c.owner.clone()),
        }
    }

    fn check_parent(&self, op: Operation, i: usize) -> Result<(), TransitionError> {
        use DeviceStatus::*;
        if let Some(p) = self.parent[i] {
            let ps = self.members[p].status;
            if !matches!(ps, Available | Unclaimable | Unavailable) {
                return Err(TransitionError::ParentInvalidStatus {
                    op,
                    pf: self.members[p].address,
                    pf_status: ps,
                    vf: self.members[i].address,
                    vf_status: self.members[i].status,
                });
            }
        }
        Ok(())
    }

    /// Nova's `PciDevice.claim`: an available device becomes `claimed` by `instance`. Claiming a
    /// PF makes all its children `unclaimable`; claiming a child makes an available PF
    /// `unclaimable`.
    ///
    /// # Errors
    ///
    /// [`TransitionError`] naming the device, its status and the refused operation when the
    /// device (or, for a PF, a child) is not in a status the operation starts from or is owned by
    /// another instance (Nova's `PciDeviceInvalidStatus` / `PciDeviceInvalidOwner`); the
    /// family is left as it was.
    pub fn claim(&mut self, i: usize, instance: &str) -> Result<Outcome, TransitionError> {
        use DeviceStatus::*;
        let op = Operation::Claim;
        self.check_status(i, op)?;
        let mut outcome = Outcome::default();
        let dev_type = self.members[i].dev_type;
        let children: Vec<usize> = self.children_of(i).collect();
        if dev_type == DevType::Pf {
            let mut stale = Vec::new();
            for &c in &children {
                let m = &self.members[c];
                match m.status {
                    Available => {}
                    Unavailable | Unclaimable if m.owner.is_none() => stale.push(c),
                    _ => return Err(self.child_error(op, i, c)),
                }
            }
            if !stale.is_empty() {
                let list: Vec<String> = stale
                    .iter()
                    .map(|&c| format!("{} - {}", self.members[c].address, self.members[c].status))
                    .collect();
                outcome.warnings.push(format!(
                    "Some child device of parent {} is in an inconsistent state; nobody owns them, \
                     so the PF is claimed anyway. Inconsistent children with state: {}",
                    self.members[i].address,
                    list.join(", ")
                ));
            }
        } else if dev_type.is_child() {
            self.check_parent(op, i)?;
        }
        // Every check passed: apply.
        if dev_type == DevType::Pf {
            for c in children {
                self.members[c].status = Unclaimable;
            }
        } else if let Some(p) = self.parent[i]
            && self.members[p].status == Available
        {
            self.members[p].status = Unclaimable;
        }
        let m = &mut self.members[i];
        m.status = Claimed;
        m.owner = Some(instance.to_string());
        Ok(outcome)
    }

    /// Nova's `PciDevice.allocate`: an available device, or one claimed by `instance`, becomes
    /// `allocated`. A PF's children and a child's PF become `unavailable`.
    ///
    /// # Errors
    ///
    /// [`TransitionError`] naming the device, its status and the refused operation when the
    /// device (or, for a PF, a child) is not in a status the operation starts from or is owned by
    /// another instance (Nova's `PciDeviceInvalidStatus` / `PciDeviceInvalidOwner`); the
    /// family is left as it was.
    pub fn allocate(&mut self, i: usize, instance: &str) -> Result<Outcome, TransitionError> {
        use DeviceStatus::*;
        let op = Operation::Allocate;
        self.check_status(i, op)?;
        let m = &self.members[i];
        if m.status == Claimed && m.owner.as_deref() != Some(instance) {
            return Err(TransitionError::InvalidOwner {
                op,
                address: m.address,
                status: m.status,
                owner: Owner(m.owner.clone()),
                expected: Owner(Some(instance.to_string())),
            });
        }
        let dev_type = m.dev_type;
        let children: Vec<usize> = self.children_of(i).collect();
        if dev_type == DevType::Pf {
            if let Some(&c) = children
                .iter()
                .find(|&&c| !matches!(self.members[c].status, Available | Unclaimable))
            {
                return Err(self.child_error(op, i, c));
            }
            for c in children {
                self.members[c].status = Unavailable;
            }
        } else if dev_type.is_child() {
            self.check_parent(op, i)?;
            if let Some(p) = self.parent[i] {
                self.members[p].status = Unavailable;
            }
        }
        let m = &mut self.members[i];
        m.status = Allocated;
        m.owner = Some(instance.to_string());
        Ok(Outcome::default())
    }

    /// Nova's `PciDevice.free`: a claimed or allocated device becomes available. With
    /// `instance`, the owner must match. Freeing a PF frees its children; freeing the last busy
    /// child frees its PF.
    ///
    /// Unlike Nova, a child that is itself claimed or allocated is left alone when its PF is
    /// freed (Nova overwrites it; that state cannot arise through these operations, but a hand
    /// edited database could hold it).
    ///
    /// # Errors
    ///
    /// [`TransitionError`] naming the device, its status and the refused operation when the
    /// device (or, for a PF, a child) is not in a status the operation starts from or is owned by
    /// another instance (Nova's `PciDeviceInvalidStatus` / `PciDeviceInvalidOwner`); the
    /// family is left as it was.
    pub fn free(&mut self, i: usize, instance: Option<&str>) -> Result<Outcome, TransitionError> {
        use DeviceStatus::*;
        let op = Operation::Free;
        self.check_status(i, op)?;
        let m = &self.members[i];
        if let Some(inst) = instance
            && m.owner.as_deref() != Some(inst)
        {
            return Err(TransitionError::InvalidOwner {
                op,
                address: m.address,
                status: m.status,
                owner: Owner(m.owner.clone()),
                expected: Owner(Some(inst.to_string())),
            });
        }
        let dev_type = m.dev_type;
        let mut outcome = Outcome {
            freed: vec![i],
            ..Outcome::default()
        };
        let m = &mut self.members[i];
        m.status = Available;
        m.owner = None;
        if dev_type == DevType::Pf {
            let children: Vec<usize> = self.children_of(i).collect();
            for c in children {
                if !self.members[c].status.is_in_use() {
                    self.members[c].status = Available;
                    outcome.freed.push(c);
                }
            }
        } else if dev_type.is_child()
            && let Some(p) = self.parent[i]
        {
            let siblings_free = self
                .children_of(p)
                .filter(|&s| s != i)
                .all(|s| self.members[s].status == Available);
            if siblings_free && !self.members[p].status.is_in_use() {
                self.members[p].status = Available;
                outcome.freed.push(p);
            }
        }
        Ok(outcome)
    }

    /// Nova's `PciDevice.remove` (seed rule): an available, unavailable or unclaimable device
    /// that nobody owns becomes `removed`. Relatives are not touched.
    ///
    /// # Errors
    ///
    /// [`TransitionError`] naming the device and its status when it is claimed, allocated or
    /// already removed, or has an owner (Nova's `PciDeviceInvalidStatus` /
    /// `PciDeviceInvalidOwner`); nothing changes.
    pub fn remove(&mut self, i: usize) -> Result<Outcome, TransitionError> {
        let op = Operation::Remove;
        self.check_status(i, op)?;
        let m = &self.members[i];
        if m.owner.is_some() {
            return Err(TransitionError::InvalidOwner {
                op,
                address: m.address,
                status: m.status,
                owner: Owner(m.owner.clone()),
                expected: Owner(None),
            });
        }
        let m = &mut self.members[i];
        m.status = DeviceStatus::Removed;
        Ok(Outcome::default())
    }
}

/// The status a device that nobody holds should have, given its relatives' statuses:
/// `unavailable` if one is allocated, else `unclaimable` if one is claimed, else `available`.
///
/// `unavailable` and `unclaimable` carry no information of their own; they mirror the owners
/// of relatives. Deriving them instead of trusting the stored value is what lets a sync repair
/// the stale ones a hardware swap leaves behind.
pub fn derived_status(relatives: impl IntoIterator<Item = DeviceStatus>) -> DeviceStatus {
    let mut out = DeviceStatus::Available;
    for s in relatives {
        match s {
            DeviceStatus::Allocated => return DeviceStatus::Unavailable,
            DeviceStatus::Claimed => out = DeviceStatus::Unclaimable,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn pf_with_two_vfs(pf: DeviceStatus, vf1: DeviceStatus, vf2: DeviceStatus) -> Family {
        let mut f = Family::new();
        let member = |a, t, s| Member {
            address: addr(a),
            dev_type: t,
            status: s,
            owner: None,
        };
        let p = f.push(member("0000:81:00.0", DevType::Pf, pf), None);
        f.push(member("0000:81:10.0", DevType::Vf, vf1), Some(p));
        f.push(member("0000:81:10.1", DevType::Vf, vf2), Some(p));
        f
    }

    #[test]
    fn a_refused_claim_changes_nothing() {
        use DeviceStatus::*;
        let mut f = pf_with_two_vfs(Available, Unavailable, Claimed);
        f.members[2].owner = Some("i-b".into());
        let before = f.clone();
        let e = f.claim(0, "i-a").unwrap_err();
        assert_eq!(f, before);
        let text = e.to_string();
        assert!(text.contains("Not all Virtual Functions of PF 0000:81:00.0 are free"));
        assert!(
            text.contains("0000:81:10.1 is claimed (owned by i-b)"),
            "{text}"
        );
        assert!(text.contains("claim of PF"), "{text}");
    }

    #[test]
    fn a_pf_with_stale_children_is_claimed_with_a_warning() {
        use DeviceStatus::*;
        let mut f = pf_with_two_vfs(Available, Unavailable, Available);
        let out = f.claim(0, "i-a").unwrap();
        assert_eq!(f.members[0].status, Claimed);
        assert_eq!(f.members[1].status, Unclaimable);
        assert_eq!(f.members[2].status, Unclaimable);
        assert!(out.warnings[0].contains("0000:81:10.0 - unavailable"));
    }

    #[test]
    fn an_owned_unavailable_child_blocks_a_pf_claim() {
        use DeviceStatus::*;
        let mut f = pf_with_two_vfs(Available, Unavailable, Available);
        f.members[1].owner = Some("i-x".into());
        assert!(matches!(
            f.claim(0, "i-a"),
            Err(TransitionError::ChildInvalidStatus { .. })
        ));
    }

    #[test]
    fn status_lists_read_like_prose() {
        assert_eq!(
            StatusList(Operation::Remove.allowed_from()).to_string(),
            "available, unavailable or unclaimable"
        );
        assert_eq!(
            StatusList(Operation::Free.allowed_from()).to_string(),
            "allocated or claimed"
        );
    }

    #[test]
    fn derived_status_prefers_allocated_over_claimed() {
        use DeviceStatus::*;
        assert_eq!(derived_status([Claimed, Allocated]), Unavailable);
        assert_eq!(derived_status([Available, Claimed]), Unclaimable);
        assert_eq!(derived_status([Unavailable, Unclaimable]), Available);
    }
}
