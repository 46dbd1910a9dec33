//! The tracker's operations as requests and answers, shared by the CLI's direct path (on the
//! database file) and the agent's API (on the agent's tracker): one piece of code decides,
//! whichever way the request arrived, and both paths print the same answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use pcitrack_model::{Assessment, DevType, DeviceStatus};
use pcitrack_placement::{Allocations, PciView, ProviderAllocation, ReporterHandle};
use pcitrack_tracker::{
    AliasTable, CandidateRequest, ClaimedDevice, DeviceFilter, FreeReport, HostNumaCell,
    NumaContext, NumaPolicy, PciRequest, SqliteStore, Store, Tracker, TrackerError,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// Why an operation was not done. Nothing was written.
#[derive(Debug, Error)]
pub enum OpError {
    /// The request is malformed (bad spec, unknown alias, bad filter).
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but the tracker refused it (no free devices, wrong state).
    #[error("{0}")]
    Refused(String),
    /// Placement allocated more devices on one of this host's providers than are free here:
    /// refused, nothing written (the host is the last line of defence).
    #[error("{0}")]
    OverAllocated(String),
    /// It names a device or instance the tracker does not know.
    #[error("{0}")]
    NotFound(String),
    /// The database failed.
    #[error("{0}")]
    Store(String),
}

impl From<TrackerError> for OpError {
    fn from(e: TrackerError) -> Self {
        let text = error_text(&e);
        match e {
            TrackerError::Store(_) => OpError::Store(text),
            TrackerError::NoDevices { .. }
            | TrackerError::Refused { .. }
            | TrackerError::NotReserved { .. }
            | TrackerError::TooFewFree { .. }
            | TrackerError::ReleaseInUse { .. } => OpError::Refused(text),
            TrackerError::NotTracked { .. } => OpError::NotFound(text),
        }
    }
}

/// An error and its sources on one line.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Which devices to list; absent fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesQuery {
    /// Only this status.
    pub status: Option<DeviceStatus>,
    /// Only devices held by this instance.
    pub instance: Option<String>,
    /// Only this type.
    #[serde(rename = "type")]
    pub dev_type: Option<DevType>,
    /// Only this vendor (4 hex digits).
    pub vendor_id: Option<String>,
    /// Only this product (4 hex digits).
    pub product_id: Option<String>,
}

/// Tags as operators see them: each value with the JSON type it was given (a device_spec's
/// `"trusted": true` prints as `true`, `"trusted": "true"` as `"true"`). Kept in the
/// contract's carried form ([`pcitrack_model::tag_value`]) and written typed ([`TypedTags`]),
/// so a row holds no `serde_json::Value`; read back from typed JSON ([`tags_json`]).
pub type Tags = BTreeMap<String, String>;

/// serde for [`Tags`] in a row: written as [`TypedTags`]; typed JSON read back into the
/// carried form by the tracker's rule ([`pcitrack_tracker::pools::carried`]).
pub mod tags_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Tags, TypedTags};

    /// Writes carried tags as typed JSON.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(tags: &Tags, s: S) -> Result<S::Ok, S::Error> {
        TypedTags(tags).serialize(s)
    }

    /// Reads typed JSON tags into their carried form.
    ///
    /// # Errors
    ///
    /// Not a JSON object.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tags, D::Error> {
        let typed = std::collections::BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        Ok(typed
            .into_iter()
            .map(|(k, v)| (k, pcitrack_tracker::pools::carried(&v)))
            .collect())
    }
}

/// One carried tag value as a table cell: a string bare, anything else as its JSON text.
pub fn tag_cell(carried: &str) -> String {
    match pcitrack_tracker::pools::pool_value(carried) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// One device's assessment as the API (`/v1/verdicts`) and `pcitrack policy eval` show it:
/// why a device is (not) assignable is the first thing an operator asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictRow {
    /// PCI address.
    pub address: String,
    /// Vendor id, 4 hex digits.
    pub vendor_id: String,
    /// Product id, 4 hex digits.
    pub product_id: String,
    /// Type.
    pub dev_type: DevType,
    /// The matchers' (and taggers') verdict.
    pub assignable: bool,
    /// Its tags, typed.
    #[serde(with = "tags_json")]
    pub tags: Tags,
    /// Remote-managed (SmartNIC/DPU), as the pools read it.
    pub remote_managed: bool,
    /// The deciding policy, or `built-in`.
    pub decided_by: String,
    /// Why not assignable, or which failure forced a fallback.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl From<&Assessment> for VerdictRow {
    fn from(a: &Assessment) -> Self {
        VerdictRow {
            address: a.device.address.to_string(),
            vendor_id: format!("{:04x}", a.device.vendor_id),
            product_id: format!("{:04x}", a.device.product_id),
            dev_type: a.device.dev_type,
            assignable: a.assignable,
            tags: a.tags.clone(),
            remote_managed: a.remote_managed,
            decided_by: a.decided_by.clone(),
            reason: a.reason.clone(),
        }
    }
}

/// An id as Nova and lspci write it: 4 lower-case hex digits, written without a `String`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexId(pub u16);

impl Serialize for HexId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:04x}", self.0))
    }
}

/// A carried tag value serialised as the JSON value it stands for (the pool rule's,
/// [`pcitrack_tracker::pools::pool_value`]): a plain string as itself, with no `serde_json::Value` built (only a typed value,
/// rare, goes through that rule).
#[derive(Debug, Clone, Copy)]
pub struct TypedTag<'a>(pub &'a str);

impl Serialize for TypedTag<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match pcitrack_model::tag_value::TagValue::parse(self.0) {
            pcitrack_model::tag_value::TagValue::Str(text) => s.serialize_str(text),
            pcitrack_model::tag_value::TagValue::Json(_) => {
                pcitrack_tracker::pools::pool_value(self.0).serialize(s)
            }
        }
    }
}

/// Carried tags serialised as [`Tags`] (a JSON object, keys in order, values typed), borrowed.
#[derive(Debug, Clone, Copy)]
pub struct TypedTags<'a>(pub &'a BTreeMap<String, String>);

impl Serialize for TypedTags<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, TypedTag(v))))
    }
}

/// A chain verdict's tag set (policy order, shared by many devices) in the order and with
/// the values [`Tags`] holds it (sorted by key, the last of a repeated key winning): built
/// once per set, then borrowed by every row that has it ([`VerdictView::of`]).
pub fn tags_in_map_order(tags: &[(String, String)]) -> Vec<(&str, &str)> {
    let map: BTreeMap<&str, &str> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    map.into_iter().collect()
}

/// The tags a [`VerdictView`] writes: an [`Assessment`]'s map, or a verdict's tag set put
/// in the same order by [`tags_in_map_order`]. Both write the JSON of [`TypedTags`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum TagsView<'a> {
    Map(&'a BTreeMap<String, String>),
    Sorted(&'a [(&'a str, &'a str)]),
}

impl Serialize for TagsView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TagsView::Map(map) => TypedTags(map).serialize(s),
            TagsView::Sorted(pairs) => s.collect_map(pairs.iter().map(|(k, v)| (k, TypedTag(v)))),
        }
    }
}

/// A [`VerdictRow`] borrowed from its [`Assessment`], for output: the same JSON, written
/// field by field with no `String` or `serde_json::Value` made per device (`pcitrack policy
/// eval` streams thousands of these). The field order and names are [`VerdictRow`]'s; a
/// test holds the two to the same bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VerdictView<'a> {
    pub(crate) address: &'a pcitrack_model::PciAddress,
    pub(crate) vendor_id: HexId,
    pub(crate) product_id: HexId,
    pub(crate) dev_type: DevType,
    pub(crate) assignable: bool,
    pub(crate) tags: TagsView<'a>,
    pub(crate) remote_managed: bool,
    pub(crate) decided_by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'a str>,
}

impl<'a> From<&'a Assessment> for VerdictView<'a> {
    fn from(a: &'a Assessment) -> Self {
        VerdictView {
            address: &a.device.address,
            vendor_id: HexId(a.device.vendor_id),
            product_id: HexId(a.device.product_id),
            dev_type: a.device.dev_type,
            assignable: a.assignable,
            tags: TagsView::Map(&a.tags),
            remote_managed: a.remote_managed,
            decided_by: &a.decided_by,
            reason: a.reason.as_deref(),
        }
    }
}

impl<'a> VerdictView<'a> {
    /// The row of `device` and its chain verdict, with the bytes of the row of their
    /// [`Assessment`] (`PolicySet::assessments`) but none of its copies: `tags` is the
    /// verdict's tag set as [`tags_in_map_order`] gives it.
    pub fn of(
        device: &'a pcitrack_model::Device,
        verdict: &'a pcitrack_runtime::DeviceVerdict,
        tags: &'a [(&'a str, &'a str)],
    ) -> Self {
        VerdictView {
            address: &device.address,
            vendor_id: HexId(device.vendor_id),
            product_id: HexId(device.product_id),
            dev_type: device.dev_type,
            assignable: verdict.assignable,
            tags: TagsView::Sorted(tags),
            remote_managed: verdict.remote_managed,
            decided_by: &verdict.decided_by,
            reason: verdict.reason.as_deref(),
        }
    }
}

/// The most distinct row endings [`write_pretty_rows`] keeps per call; past them a row is
/// serialised whole (a verdict whose reason names its device is one of a kind).
const ROW_ENDINGS: usize = 32;

/// What the end of a row (from `assignable` on) is written from: equal keys, equal bytes.
/// Tags compare by identity: the sets are shared, and two sets equal in content but not in
/// place only cost an extra entry.
#[derive(Clone, Copy)]
struct RowEnding<'a> {
    assignable: bool,
    remote_managed: bool,
    tags: TagsView<'a>,
    decided_by: &'a str,
    reason: Option<&'a str>,
}

impl PartialEq for RowEnding<'_> {
    fn eq(&self, other: &Self) -> bool {
        let same_tags = match (self.tags, other.tags) {
            (TagsView::Map(a), TagsView::Map(b)) => std::ptr::eq(a, b),
            (TagsView::Sorted(a), TagsView::Sorted(b)) => std::ptr::eq(a, b),
            _ => false,
        };
        same_tags
            && self.assignable == other.assignable
            && self.remote_managed == other.remote_managed
            && self.decided_by == other.decided_by
            && self.reason == other.reason
    }
}

/// The start of a row, up to its `assignable` line, as `serde_json`'s pretty printer writes
/// it inside a list: the only part that differs from device to device.
fn push_row_start(row: &VerdictView<'_>, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id = |v: u16| std::array::from_fn::<u8, 4, _>(|i| HEX[(v >> (12 - 4 * i)) as usize & 0xf]);
    out.extend_from_slice(b"  {\n    \"address\": \"");
    out.extend_from_slice(row.address.text().as_str().as_bytes());
    out.extend_from_slice(b"\",\n    \"vendor_id\": \"");
    out.extend_from_slice(&id(row.vendor_id.0));
    out.extend_from_slice(b"\",\n    \"product_id\": \"");
    out.extend_from_slice(&id(row.product_id.0));
    out.extend_from_slice(b"\",\n    \"dev_type\": \"");
    out.extend_from_slice(row.dev_type.as_str().as_bytes());
    out.extend_from_slice(b"\",\n");
}

/// Writes `rows` into `out` as `serde_json::to_writer_pretty` writes a list of them (the
/// same bytes), without serialising each row: the rows of a large evaluation share a few
/// verdicts, so the end of a row (from `assignable` on: tags, decider, reason) is
/// serialised once per distinct verdict and copied after the start, which is written from
/// the device (address and ids, no escaping needed). Each ending is cut from a whole row
/// serialised by `serde_json`, and used only when that row starts with the bytes
/// [`push_row_start`] writes for it; any other row is serialised whole.
///
/// # Errors
///
/// A serialisation error of a row (a map with non-string keys; our rows have none).
pub fn write_pretty_rows<'a>(
    rows: impl Iterator<Item = VerdictView<'a>>,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let mut endings: Vec<(RowEnding<'a>, Vec<u8>)> = Vec::new();
    let mut last = 0;
    let mut whole = Vec::new();
    let mut start = Vec::new();
    out.push(b'[');
    let mut empty = true;
    for row in rows {
        out.extend_from_slice(if empty { b"\n" } else { b",\n" });
        empty = false;
        let key = RowEnding {
            assignable: row.assignable,
            remote_managed: row.remote_managed,
            tags: row.tags,
            decided_by: row.decided_by,
            reason: row.reason,
        };
        let found = if endings.get(last).is_some_and(|(k, _)| *k == key) {
            Some(last)
        } else {
            endings.iter().position(|(k, _)| *k == key)
        };
        if let Some(i) = found {
            last = i;
            push_row_start(&row, out);
            out.extend_from_slice(&endings[i].1);
            continue;
        }
        // `[\n  {...}\n]`: the row as it sits in a list is between the brackets' lines.
        whole.clear();
        serde_json::to_writer_pretty(&mut whole, &[row])?;
        let in_list = &whole[2..whole.len() - 2];
        start.clear();
        push_row_start(&row, &mut start);
        if endings.len() < ROW_ENDINGS
            && let Some(ending) = in_list.strip_prefix(start.as_slice())
        {
            endings.push((key, ending.to_vec()));
            last = endings.len() - 1;
        }
        out.extend_from_slice(in_list);
    }
    out.extend_from_slice(if empty { b"]" } else { b"\n]" });
    Ok(())
}

/// A tracked device as the CLI and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRow {
    /// PCI address.
    pub address: String,
    /// Tracker status.
    pub status: DeviceStatus,
    /// Type.
    pub dev_type: DevType,
    /// Vendor id, 4 hex digits.
    pub vendor_id: String,
    /// Product id, 4 hex digits.
    pub product_id: String,
    /// The PF of a VF.
    pub parent_addr: Option<String>,
    /// The instance holding it.
    pub instance_uuid: Option<String>,
    /// NUMA node.
    pub numa_node: Option<u32>,
    /// Tags from the policies, typed.
    #[serde(with = "tags_json")]
    pub tags: Tags,
    /// Remote-managed (SmartNIC/DPU).
    pub remote_managed: bool,
    /// The policy that made it assignable.
    pub decided_by: String,
    /// A used one-time-use device, out of the pools until released (`pcitrack release`).
    #[serde(default)]
    pub reserved: bool,
}

/// A pool of free devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolRow {
    /// Free devices in it.
    pub count: usize,
    /// Devices with the same key that would be free but are reserved (used one-time-use
    /// devices waiting for `pcitrack release`); a row may have a count of 0 and only these.
    #[serde(default)]
    pub reserved: usize,
    /// What its devices share (vendor, product, NUMA node, type, tags...).
    pub key: serde_json::Value,
}

/// A claim: an instance asks for devices, all or nothing, in one of three forms:
///
/// * `spec` (a request spec: an object, or a list of objects as alternatives; as JSON, or as
///   JSON text as before) with `count` (default 1) and an optional `request_id`;
/// * `alias`: one alias name with `count`, or a flavor's `pci_passthrough:alias` value
///   (`"a:1,b:2"`, Nova's `_translate_alias_to_requests`), one request per item;
/// * `requests`: a list of [`RequestItem`]s, each a spec or one alias with its own count and
///   optional request id. (Not a list under `spec`: a list there already means alternatives,
///   as in Nova's `InstancePCIRequest.spec`.)
///
/// `numa_cells` and `numa_policy` are the instance's NUMA context: the host NUMA nodes its
/// guest cells sit on (Nova's `InstanceNUMACell.id`) and the flavor's or image's
/// `hw:pci_numa_affinity_policy`, which overrides every request's policy as in Nova. Each
/// request without a `request_id` gets a fresh UUID, as Nova gives every
/// `InstancePCIRequest` one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The instance (for a claim by `placement_consumer`, the consumer's uuid when empty).
    #[serde(default)]
    pub instance: String,
    /// A Placement consumer (its UUID): claim exactly what Placement allocated to it on this
    /// host's providers, instead of a spec, alias or requests (see [`claim_by_consumer`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_consumer: Option<String>,
    /// A request spec: a JSON object or list of objects (vendor_id, product_id, dev_type,
    /// tags...), or the same as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// An alias of `[pci] alias`, or `NAME:COUNT[,NAME:COUNT...]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// How many devices, for `spec` or a single alias name (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The request id for `spec` or a single alias name (generated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Several requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestItem>,
    /// The instance's NUMA cells (host NUMA node ids); none: NUMA is not considered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numa_cells: Vec<u32>,
    /// The PCI NUMA affinity policy override (`hw:pci_numa_affinity_policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_policy: Option<NumaPolicy>,
}

/// One request of a claim's `requests`: a spec or one alias name, `count` devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestItem {
    /// A request spec, as in [`ClaimRequest::spec`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// One alias name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// How many devices (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Its id (generated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A fresh request id: a random (version 4) UUID in its hyphenated lower-case form, as
/// `oslo_utils.uuidutils.generate_uuid` gives Nova's `InstancePCIRequest`
/// (`nova/pci/request.py`). The `uuid` crate draws it from the kernel (getrandom).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The host's NUMA cells with their sockets, as the tracker's `socket` policy reads them, from
/// what discovery read under the sysfs root.
pub fn host_cells(topology: &pcitrack_discovery::Topology) -> Vec<HostNumaCell> {
    topology
        .nodes
        .iter()
        .map(|n| HostNumaCell {
            id: n.id,
            socket: n.socket,
        })
        .collect()
}

/// An instance whose devices to allocate or free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceRequest {
    /// The instance.
    pub instance: String,
}

fn hex_filter(what: &str, value: &Option<String>) -> Result<Option<u16>, OpError> {
    value
        .as_deref()
        .map(|v| {
            pcitrack_model::parse_hex_id(v, 4)
                .map(|id| id as u16)
                .map_err(|e| OpError::BadRequest(format!("{what} {v:?}: {e}")))
        })
        .transpose()
}

/// Lists tracked devices.
pub fn devices<S: Store>(
    tracker: &mut Tracker<S>,
    query: &DevicesQuery,
) -> Result<Vec<DeviceRow>, OpError> {
    let vendor = hex_filter("vendor_id", &query.vendor_id)?;
    let product = hex_filter("product_id", &query.product_id)?;
    let filter = DeviceFilter {
        status: query.status,
        instance: query.instance.clone(),
        dev_type: query.dev_type,
    };
    Ok(tracker
        .devices_where(&filter, |t| {
            vendor.is_none_or(|v| t.profile.device.vendor_id == v)
                && product.is_none_or(|p| t.profile.device.product_id == p)
        })?
        .into_iter()
        .map(|t| DeviceRow {
            address: t.profile.device.address.to_string(),
            status: t.status,
            dev_type: t.profile.device.dev_type,
            vendor_id: format!("{:04x}", t.profile.device.vendor_id),
            product_id: format!("{:04x}", t.profile.device.product_id),
            parent_addr: t.profile.device.parent_addr.map(|a| a.to_string()),
            instance_uuid: t.instance_uuid,
            numa_node: t.profile.device.numa_node,
            tags: std::sync::Arc::unwrap_or_clone(t.profile.tags),
            remote_managed: t.profile.remote_managed,
            decided_by: t.profile.decided_by,
            reserved: t.reserved,
        })
        .collect())
}

/// The pools of free devices, each with its reserved count, then the keys that only
/// reserved devices have (count 0).
pub fn pools<S: Store>(tracker: &mut Tracker<S>) -> Result<Vec<PoolRow>, OpError> {
    let free = tracker.pools()?;
    let reserved = tracker.reserved_pools()?;
    let reserved_of = |key: &pcitrack_tracker::PoolKey| {
        reserved
            .pools()
            .iter()
            .find(|r| &r.key == key)
            .map_or(0, |r| r.count)
    };
    let row = |count: usize, reserved: usize, key: &pcitrack_tracker::PoolKey| PoolRow {
        count,
        reserved,
        key: serde_json::to_value(key).unwrap_or(serde_json::Value::Null),
    };
    let mut rows: Vec<PoolRow> = free
        .pools()
        .iter()
        .map(|p| row(p.count, reserved_of(&p.key), &p.key))
        .collect();
    rows.extend(
        reserved
            .pools()
            .iter()
            .filter(|r| !free.pools().iter().any(|p| p.key == r.key))
            .map(|r| row(0, r.count, &r.key)),
    );
    Ok(rows)
}

/// Which reserved device to release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Its PCI address.
    pub address: String,
}

/// Releases a reserved one-time-use device (the operator has wiped it): it returns to the
/// pools. Answers with the device as it now is.
///
/// # Errors
///
/// [`OpError::BadRequest`] for an address that does not parse, [`OpError::NotFound`] for an
/// untracked one, [`OpError::Refused`] for a device that is not reserved or still held.
pub fn release<S: Store>(
    tracker: &mut Tracker<S>,
    req: &ReleaseRequest,
) -> Result<DeviceRow, OpError> {
    let address: pcitrack_model::PciAddress = req
        .address
        .parse()
        .map_err(|e| OpError::BadRequest(format!("address {:?}: {e}", req.address)))?;
    tracker.release(address)?;
    let query = DevicesQuery::default();
    devices(tracker, &query)?
        .into_iter()
        .find(|d| d.address == address.to_string())
        .ok_or_else(|| OpError::NotFound(format!("PCI device {address} is not tracked")))
}

fn spec_request(spec: &serde_json::Value, count: u32) -> Result<PciRequest, OpError> {
    let text = match spec {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    PciRequest::from_spec_json(&text, count)
        .map_err(|e| OpError::BadRequest(format!("spec: {}", error_text(&e))))
}

/// Turns a claim into tracker requests, in order, each with its request id and the claim's
/// NUMA policy override; `aliases` is `[pci] alias`.
///
/// # Errors
///
/// [`OpError::BadRequest`] for a claim that does not give exactly one of `spec`, `alias` and
/// `requests`, a bad spec, an undefined alias or a bad `NAME:COUNT` item, or a count or
/// request id given where the form carries its own; [`OpError::Store`] when no request id
/// can be generated.
pub fn request_of(claim: &ClaimRequest, aliases: &AliasTable) -> Result<Vec<PciRequest>, OpError> {
    let bad = |e: &dyn std::error::Error| OpError::BadRequest(error_text(e));
    let policy = claim.numa_policy;
    let mut requests = match (&claim.spec, &claim.alias, claim.requests.is_empty()) {
        (Some(spec), None, true) => vec![spec_request(spec, claim.count.unwrap_or(1))?],
        (None, Some(alias), true) if alias.contains([':', ',']) => {
            if claim.count.is_some() || claim.request_id.is_some() {
                return Err(OpError::BadRequest(format!(
                    "alias {alias:?} gives its own counts (NAME:COUNT,...): give no count or \
                     request_id beside it (use requests for ids)"
                )));
            }
            aliases.requests(alias, policy).map_err(|e| bad(&e))?
        }
        (None, Some(alias), true) => vec![
            aliases
                .request(alias, claim.count.unwrap_or(1), policy)
                .map_err(|e| bad(&e))?,
        ],
        (None, None, false) => {
            if claim.count.is_some() || claim.request_id.is_some() {
                return Err(OpError::BadRequest(
                    "give count and request_id inside each of requests, not beside them".into(),
                ));
            }
            claim
                .requests
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let count = item.count.unwrap_or(1);
                    let mut r = match (&item.spec, &item.alias) {
                        (Some(spec), None) => spec_request(spec, count)?,
                        (None, Some(alias)) => {
                            aliases.request(alias, count, policy).map_err(|e| bad(&e))?
                        }
                        _ => {
                            return Err(OpError::BadRequest(format!(
                                "requests[{i}] needs exactly one of spec and alias"
                            )));
                        }
                    };
                    r.request_id = item.request_id.clone();
                    Ok(r)
                })
                .collect::<Result<_, _>>()?
        }
        (None, None, true) => {
            return Err(OpError::BadRequest(
                "a claim needs a spec or an alias, or a list of requests".into(),
            ));
        }
        _ => {
            return Err(OpError::BadRequest(
                "give one of spec, alias and requests, not several".into(),
            ));
        }
    };
    if requests.len() == 1 && requests[0].request_id.is_none() {
        requests[0].request_id = claim.request_id.clone();
    }
    for r in &mut requests {
        // A spec request takes the override too (Nova: the flavor's policy, else legacy).
        if policy.is_some() {
            r.numa_policy = policy;
        }
        if r.request_id.is_none() {
            r.request_id = Some(new_request_id());
        }
    }
    Ok(requests)
}

/// Claims devices for an instance: all of them or none. `aliases` is `[pci] alias`,
/// `host_cells` the host's NUMA cells with their sockets (for the `socket` policy).
///
/// # Errors
///
/// [`OpError::BadRequest`] for an empty instance or a request [`request_of`] refuses;
/// [`OpError::Refused`] when the free devices cannot meet every request (naming the request
/// and the filter that fell short) or the state machine refuses one; [`OpError::Store`].
pub fn claim<S: Store>(
    tracker: &mut Tracker<S>,
    claim: &ClaimRequest,
    aliases: &AliasTable,
    host_cells: &[HostNumaCell],
) -> Result<Vec<ClaimedDevice>, OpError> {
    // A consumer that is not a UUID (or not alone) is named as such first.
    if let Some(consumer) = consumer_of(claim)? {
        return Err(OpError::BadRequest(format!(
            "placement_consumer {consumer}: a claim by Placement consumer is answered by the \
             running agent with [pci] report_in_placement = true (it holds the Placement client \
             and this host's providers); claim through the agent's socket, not the database file"
        )));
    }
    if claim.instance.trim().is_empty() {
        return Err(OpError::BadRequest("instance must not be empty".into()));
    }
    let requests = request_of(claim, aliases)?;
    let numa = NumaContext {
        cells: &claim.numa_cells,
        host_cells,
    };
    Ok(tracker.claim(&claim.instance, &requests, Some(numa))?)
}

/// What a claim by Placement consumer needs of the agent's Placement reporting: the
/// consumer's allocations, the providers this host reports, and a way to have the
/// inventory re-reported after Placement over-allocated. The agent's reporter implements it;
/// tests give their own.
pub trait PlacementSide {
    /// The consumer's allocations as Placement holds them now (blocking: HTTP).
    ///
    /// # Errors
    ///
    /// Placement's error, as text.
    fn allocations(&self, consumer: Uuid) -> Result<Allocations, String>;
    /// The providers this host last computed (its PCI view), if any yet.
    fn last_view(&self) -> Option<Arc<PciView>>;
    /// Forget what was reported and report the inventory again.
    fn resync(&self);
}

impl PlacementSide for ReporterHandle {
    fn allocations(&self, consumer: Uuid) -> Result<Allocations, String> {
        self.client()
            .allocations(consumer)
            .map_err(|e| error_text(&e))
    }

    fn last_view(&self) -> Option<Arc<PciView>> {
        ReporterHandle::last_view(self)
    }

    fn resync(&self) {
        ReporterHandle::resync(self);
    }
}

/// The claim's consumer, checked: a UUID, given alone (no spec, alias, requests, count or
/// NUMA context: Placement's allocation already decided which providers, and how many
/// devices of each, serve the instance; Nova's compute likewise claims the devices of the
/// providers its request groups were mapped to, `nova/pci/stats.py`
/// `_filter_pools_for_allocation`). `None` for an ordinary claim.
///
/// # Errors
///
/// [`OpError::BadRequest`] for a consumer that is not a UUID or is combined with another
/// form of claim.
pub fn consumer_of(claim: &ClaimRequest) -> Result<Option<Uuid>, OpError> {
    let Some(text) = &claim.placement_consumer else {
        return Ok(None);
    };
    let consumer = Uuid::parse_str(text.trim()).map_err(|e| {
        OpError::BadRequest(format!("placement_consumer {text:?} is not a UUID: {e}"))
    })?;
    let mut beside = Vec::new();
    if claim.spec.is_some() {
        beside.push("spec");
    }
    if claim.alias.is_some() {
        beside.push("alias");
    }
    if !claim.requests.is_empty() {
        beside.push("requests");
    }
    if claim.count.is_some() {
        beside.push("count");
    }
    if !claim.numa_cells.is_empty() || claim.numa_policy.is_some() {
        beside.push("numa_cells/numa_policy");
    }
    if !beside.is_empty() {
        return Err(OpError::BadRequest(format!(
            "placement_consumer {consumer} is claimed alone: Placement's allocation decides \
             which devices, and how many, so give no {} beside it",
            beside.join(", ")
        )));
    }
    Ok(Some(consumer))
}

/// The consumer's allocations on this host's PCI providers (`view`, the providers the agent
/// reports), in provider order. Allocations on other providers (the root's VCPU or memory,
/// other hosts') are not this agent's to claim and are left out.
///
/// # Errors
///
/// [`OpError::Refused`] when the consumer has no allocation on this host's PCI providers.
pub fn allocations_on_host(
    consumer: Uuid,
    allocations: &Allocations,
    view: &PciView,
) -> Result<Vec<ProviderAllocation>, OpError> {
    let out = view.allocated_here(allocations);
    if out.is_empty() {
        let elsewhere = allocations.len();
        return Err(OpError::Refused(format!(
            "Placement holds no allocation for consumer {consumer} on this host's PCI providers \
             (root provider {}; the consumer has allocations on {elsewhere} other provider(s)): \
             nothing to claim",
            view.root_name
        )));
    }
    Ok(out)
}

/// Claims for the consumer exactly the devices Placement allocated: per provider, that many
/// free devices among those behind it, all providers or none, in one tracker transaction.
/// The instance is the claim's `instance`, else the consumer's uuid; every device records the
/// claim's `request_id`, else a fresh one per provider.
///
/// # Errors
///
/// [`OpError::OverAllocated`] when some provider has fewer free devices on this host than
/// Placement allocated (nothing is claimed); [`OpError::Refused`] when the state machine
/// refuses a device; [`OpError::Store`].
pub fn claim_allocated<S: Store>(
    tracker: &mut Tracker<S>,
    claim: &ClaimRequest,
    consumer: Uuid,
    allocated: &[ProviderAllocation],
) -> Result<Vec<ClaimedDevice>, OpError> {
    let instance = if claim.instance.trim().is_empty() {
        consumer.to_string()
    } else {
        claim.instance.clone()
    };
    let requests: Vec<CandidateRequest> = allocated
        .iter()
        .map(|a| CandidateRequest {
            candidates: a.devices.clone(),
            count: a.count,
            request_id: Some(claim.request_id.clone().unwrap_or_else(new_request_id)),
        })
        .collect();
    tracker
        .claim_among(&instance, &requests)
        .map_err(|e| match e {
            TrackerError::TooFewFree { request, free, .. } => {
                let a = &allocated[request];
                OpError::OverAllocated(format!(
                    "Placement allocated {} {} on provider {} ({}) to consumer {consumer} but \
                     only {free} of its devices are free on this host: over-allocated by \
                     Placement; nothing was claimed and the inventory is being reported again",
                    a.count, a.resource_class, a.provider, a.uuid
                ))
            }
            other => other.into(),
        })
}

/// A claim by Placement consumer, start to end: reads the consumer's allocations from
/// Placement (blocking: call it off the async runtime), keeps those on this host's providers,
/// and hands them to `claim_in_tracker` (the tracker transaction, [`claim_allocated`]). The
/// host is the last line of defence: when Placement allocated more than is free here (two
/// consumers handed the same device by a Placement race), the claim is refused with nothing
/// changed and the inventory is reported again ([`PlacementSide::resync`]).
///
/// # Errors
///
/// [`OpError::Refused`] when Placement cannot be read (the claim needs the allocation to
/// know what to take), when no view has been computed yet, or when the consumer has nothing
/// allocated here; and the errors of `claim_in_tracker`.
pub fn claim_by_consumer(
    placement: &dyn PlacementSide,
    consumer: Uuid,
    claim_in_tracker: impl FnOnce(&[ProviderAllocation]) -> Result<Vec<ClaimedDevice>, OpError>,
) -> Result<Vec<ClaimedDevice>, OpError> {
    let allocations = placement.allocations(consumer).map_err(|e| {
        OpError::Refused(format!(
            "cannot read Placement's allocations of consumer {consumer}: {e} (a claim by \
             consumer needs them to know which devices to take; nothing was claimed)"
        ))
    })?;
    let view = placement.last_view().ok_or_else(|| {
        OpError::Refused(
            "this agent has not computed its Placement providers yet (the first reconcile \
             has not finished); retry the claim"
                .into(),
        )
    })?;
    let allocated = allocations_on_host(consumer, &allocations, &view)?;
    let claimed = claim_in_tracker(&allocated);
    if let Err(OpError::OverAllocated(message)) = &claimed {
        tracing::warn!(consumer = %consumer, "{message}");
        placement.resync();
    }
    claimed
}

/// Allocates what an instance claimed.
pub fn allocate<S: Store>(
    tracker: &mut Tracker<S>,
    req: &InstanceRequest,
) -> Result<Vec<String>, OpError> {
    let allocated = tracker.allocate(&req.instance)?;
    if allocated.is_empty() {
        return Err(OpError::NotFound(format!(
            "instance {} has no claimed devices to allocate",
            req.instance
        )));
    }
    Ok(allocated.iter().map(ToString::to_string).collect())
}

/// Frees every device an instance holds.
pub fn free<S: Store>(
    tracker: &mut Tracker<S>,
    req: &InstanceRequest,
) -> Result<FreeReport, OpError> {
    Ok(tracker.free(&req.instance)?)
}

/// What checking a database file found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// SQLite's integrity problems (`PRAGMA integrity_check`); empty when the file is sound.
    pub integrity: Vec<String>,
    /// The first tracker invariant the rows violate (a device in use without an owner...).
    pub invariant: Option<String>,
    /// Tracked devices.
    pub devices: usize,
}

impl CheckReport {
    /// Whether the file passed both checks.
    pub fn ok(&self) -> bool {
        self.integrity.is_empty() && self.invariant.is_none()
    }
}

/// Checks a database: SQLite's integrity check, then the tracker's invariants (only when the
/// file is sound: the rows of a corrupt file prove nothing). Only reads.
///
/// # Errors
///
/// [`OpError::Store`] when the checks cannot run at all.
pub fn check(tracker: &mut Tracker<SqliteStore>) -> Result<CheckReport, OpError> {
    let integrity = tracker
        .store()
        .integrity_check()
        .map_err(|e| OpError::Store(error_text(&e)))?;
    if !integrity.is_empty() {
        return Ok(CheckReport {
            integrity,
            invariant: None,
            devices: 0,
        });
    }
    let invariant = pcitrack_tracker::invariants::check(tracker).err();
    let devices = tracker.devices(&DeviceFilter::default())?.len();
    Ok(CheckReport {
        integrity,
        invariant,
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcitrack_model::PciAddress;

    /// Assessments covering every shape a verdict row takes: typed tags of each JSON kind,
    /// a string that begins with the marker, a broken typed value, a reason or none.
    fn assessments() -> Vec<Assessment> {
        use pcitrack_model::{Device, PciAddress, tag_value::TYPED_MARKER};
        let device =
            |a: &str, t: DevType| Device::new(a.parse::<PciAddress>().unwrap(), 0x15b3, 0x101e, t);
        let m = TYPED_MARKER;
        let mut tagged = Assessment::assignable(device("0000:3b:00.2", DevType::Vf));
        tagged.tags = [
            ("physical_network", "physnet1".to_string()),
            ("trusted", format!("{m}true")),
            ("count", format!("{m}12")),
            ("ratio", format!("{m}1.5")),
            ("none", format!("{m}null")),
            ("list", format!("{m}[\"a\",1]")),
            ("object", format!("{m}{{\"x\":{{\"y\":[]}}}}")),
            ("marked", format!("{m}{m}text")),
            ("broken", format!("{m}{{not json")),
            ("quoted", "a \"b\"\n\u{7f}".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        tagged.remote_managed = true;
        tagged.decided_by = "vendor-matcher".into();
        let mut refused = Assessment::assignable(device("000a:00:1f.7", DevType::Pf));
        refused.assignable = false;
        refused.decided_by = "built-in".into();
        refused.reason = Some("matches no [pci] device_spec".into());
        vec![
            tagged,
            refused,
            Assessment::assignable(device("0000:00:00.0", DevType::Pci)),
        ]
    }

    #[test]
    fn a_verdict_view_writes_the_bytes_of_its_verdict_row() {
        let assessed = assessments();
        let rows: Vec<VerdictRow> = assessed.iter().map(VerdictRow::from).collect();
        let views: Vec<VerdictView> = assessed.iter().map(VerdictView::from).collect();
        assert_eq!(
            serde_json::to_string_pretty(&views).unwrap(),
            serde_json::to_string_pretty(&rows).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&views).unwrap(),
            serde_json::to_string(&rows).unwrap()
        );
        let text = serde_json::to_string(&views[0]).unwrap();
        assert!(text.contains(r#""trusted":true"#), "{text}");
        assert!(text.contains(r#""object":{"x":{"y":[]}}"#), "{text}");
    }

    #[test]
    fn a_verdict_view_of_a_chain_verdict_writes_the_bytes_of_its_assessment() {
        // A policy's tag set comes in its own order and may repeat a key; the assessment's
        // map sorts it and keeps the last value (what `PolicySet::assessments` builds).
        for a in assessments() {
            let mut pairs: Vec<(String, String)> = a.tags.clone().into_iter().rev().collect();
            if let Some((k, v)) = pairs.first().cloned() {
                pairs.insert(0, (k, format!("{v} (overwritten)")));
            }
            let verdict = pcitrack_runtime::DeviceVerdict {
                address: a.device.address,
                assignable: a.assignable,
                tags: pairs.into(),
                remote_managed: a.remote_managed,
                decided_by: a.decided_by.as_str().into(),
                reason: a.reason.as_deref().map(Into::into),
            };
            let sorted = tags_in_map_order(&verdict.tags);
            let view = VerdictView::of(&a.device, &verdict, &sorted);
            assert_eq!(
                serde_json::to_string_pretty(&view).unwrap(),
                serde_json::to_string_pretty(&VerdictRow::from(&a)).unwrap()
            );
        }
    }

    /// Rows written from shared endings are the bytes of the list serialised row by row:
    /// repeated and alternating verdicts, typed and escaped tags, more distinct reasons
    /// than endings are kept, a domain above 16 bits, and no rows at all.
    #[test]
    fn pretty_rows_are_the_bytes_of_the_serialised_list() {
        let mut assessed = Vec::new();
        for i in 0..200u32 {
            for mut a in assessments() {
                a.device.address.domain = i * 0x1234;
                a.device.vendor_id = (i * 0x0bad) as u16;
                if a.reason.is_some() && i % 3 == 0 {
                    a.reason = Some(format!("refused \"{i}\" alone"));
                }
                assessed.push(a);
            }
        }
        for rows in [&assessed[..], &assessed[..1], &[]] {
            let views: Vec<VerdictView> = rows.iter().map(VerdictView::from).collect();
            let mut ours = Vec::new();
            super::write_pretty_rows(views.iter().copied(), &mut ours).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string_pretty(&views).unwrap(),
                "{} rows",
                rows.len()
            );
        }
    }

    fn claim_req(spec: Option<&str>, alias: Option<&str>) -> ClaimRequest {
        ClaimRequest {
            instance: "vm1".into(),
            spec: spec.map(|s| serde_json::Value::String(s.into())),
            alias: alias.map(Into::into),
            ..ClaimRequest::default()
        }
    }

    fn table() -> AliasTable {
        AliasTable::parse(&[
            r#"{"name": "a", "vendor_id": "8086", "product_id": "154c", "numa_policy": "required"}"#,
            r#"{"name": "b", "vendor_id": "15b3", "product_id": "1018"}"#,
        ])
        .unwrap()
    }

    #[test]
    fn a_claim_needs_exactly_one_of_spec_alias_and_requests() {
        let none = AliasTable::default();
        let both = request_of(&claim_req(Some("{}"), Some("nic")), &none).unwrap_err();
        assert!(both.to_string().contains("not several"), "{both}");
        let neither = request_of(&claim_req(None, None), &none).unwrap_err();
        assert!(
            neither
                .to_string()
                .contains("a spec or an alias, or a list of requests"),
            "{neither}"
        );
        let mut item = claim_req(None, None);
        item.requests = vec![RequestItem::default()];
        let e = request_of(&item, &none).unwrap_err();
        assert!(e.to_string().contains("requests[0]"), "{e}");
    }

    #[test]
    fn an_unknown_alias_and_a_bad_spec_are_bad_requests_naming_the_problem() {
        let e = request_of(&claim_req(None, Some("gpu")), &AliasTable::default()).unwrap_err();
        assert!(
            matches!(e, OpError::BadRequest(ref m) if m.contains("gpu")),
            "{e}"
        );
        let e =
            request_of(&claim_req(Some("{not json"), None), &AliasTable::default()).unwrap_err();
        assert!(
            matches!(e, OpError::BadRequest(ref m) if m.starts_with("spec")),
            "{e}"
        );
    }

    #[test]
    fn a_flavor_alias_value_makes_one_request_per_item_each_with_an_id() {
        let mut c = claim_req(None, Some("a:1, b:2"));
        c.numa_policy = Some(NumaPolicy::Socket);
        let r = request_of(&c, &table()).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].count, r[1].count), (1, 2));
        assert_eq!(r[1].alias_name.as_deref(), Some("b"));
        // The override wins over the alias's own policy, as Nova's affinity_policy does.
        assert!(r.iter().all(|r| r.numa_policy == Some(NumaPolicy::Socket)));
        let ids: Vec<&str> = r.iter().map(|r| r.request_id.as_deref().unwrap()).collect();
        assert_ne!(ids[0], ids[1]);
        for id in ids {
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(&id[14..15], "4", "version 4: {id}");
        }
        c.count = Some(3);
        let e = request_of(&c, &table()).unwrap_err();
        assert!(e.to_string().contains("own counts"), "{e}");
    }

    #[test]
    fn requests_keep_the_ids_the_client_gives() {
        let mut c = claim_req(None, None);
        c.requests = vec![
            RequestItem {
                alias: Some("a".into()),
                count: Some(2),
                request_id: Some("r-1".into()),
                ..RequestItem::default()
            },
            RequestItem {
                spec: Some(serde_json::json!({"vendor_id": "15b3"})),
                ..RequestItem::default()
            },
        ];
        let r = request_of(&c, &table()).unwrap();
        assert_eq!(r[0].request_id.as_deref(), Some("r-1"));
        assert_eq!(r[0].numa_policy, Some(NumaPolicy::Required));
        assert_eq!(r[1].count, 1);
        assert_eq!(r[1].numa_policy, None);
        assert!(r[1].request_id.is_some());
    }

    #[test]
    fn a_refused_claim_is_refused_not_an_internal_error() {
        let mut tracker = Tracker::in_memory().unwrap();
        let e = claim(
            &mut tracker,
            &claim_req(Some(r#"{"vendor_id": "8086"}"#), None),
            &AliasTable::default(),
            &[],
        )
        .unwrap_err();
        assert!(matches!(e, OpError::Refused(_)), "{e:?}");
    }

    #[test]
    fn a_fresh_database_passes_the_check() {
        let mut tracker = Tracker::in_memory().unwrap();
        let report = check(&mut tracker).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.devices, 0);
    }

    #[test]
    fn a_bad_hex_filter_names_the_field() {
        let mut tracker = Tracker::in_memory().unwrap();
        let q = DevicesQuery {
            vendor_id: Some("80z6".into()),
            ..Default::default()
        };
        let e = devices(&mut tracker, &q).unwrap_err();
        assert!(e.to_string().contains("vendor_id"), "{e}");
    }

    /// A Placement side that answers from memory and counts resyncs.
    struct FakePlacement {
        allocations: Result<Allocations, String>,
        view: Option<Arc<PciView>>,
        resyncs: std::sync::atomic::AtomicUsize,
    }

    impl PlacementSide for FakePlacement {
        fn allocations(&self, _consumer: Uuid) -> Result<Allocations, String> {
            self.allocations.clone()
        }
        fn last_view(&self) -> Option<Arc<PciView>> {
            self.view.clone()
        }
        fn resync(&self) {
            self.resyncs
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    const RC: &str = "CUSTOM_PCI_8086_154C";

    /// A PF with `n` VFs at bus `bus`, assessed assignable.
    fn family(bus: u8, n: u8) -> Vec<Assessment> {
        use pcitrack_model::Device;
        let pf = PciAddress::new(0, bus, 0, 0).unwrap();
        let mut out = vec![Assessment::assignable(Device::new(
            pf,
            0x8086,
            0x1572,
            DevType::Pf,
        ))];
        for f in 1..=n {
            let mut vf = Device::new(
                PciAddress::new(0, bus, 0, f).unwrap(),
                0x8086,
                0x154c,
                DevType::Vf,
            );
            vf.parent_addr = Some(pf);
            out.push(Assessment::assignable(vf));
        }
        out
    }

    /// The provider of a PF's VFs, as the view names it.
    fn provider(bus: u8, vfs: &[Assessment]) -> pcitrack_placement::PciProvider {
        let address = PciAddress::new(0, bus, 0, 0).unwrap();
        pcitrack_placement::PciProvider {
            name: pcitrack_placement::provider_name("host1", address),
            uuid: Uuid::new_v4(),
            address,
            resource_class: RC.into(),
            inventories: BTreeMap::new(),
            traits: Default::default(),
            devices: vfs.iter().map(|a| a.device.address).collect(),
            one_time_use: false,
        }
    }

    /// A tracker with two PFs of 2 VFs each, their view, and a consumer.
    fn two_providers() -> (Tracker, PciView) {
        let (one, two) = (family(0x81, 2), family(0x85, 2));
        let mut tracker = Tracker::in_memory().unwrap();
        let mut all = one.clone();
        all.extend(two.clone());
        tracker
            .sync(&all, &pcitrack_tracker::DefaultCleanup)
            .unwrap();
        let view = PciView {
            root_name: "host1".into(),
            providers: vec![provider(0x81, &one[1..]), provider(0x85, &two[1..])],
            new_uuids: BTreeMap::new(),
        };
        (tracker, view)
    }

    fn consumer_claim(consumer: Uuid) -> ClaimRequest {
        ClaimRequest {
            placement_consumer: Some(consumer.to_string()),
            ..ClaimRequest::default()
        }
    }

    fn run(
        tracker: &mut Tracker,
        placement: &FakePlacement,
        consumer: Uuid,
    ) -> Result<Vec<ClaimedDevice>, OpError> {
        let claim = consumer_claim(consumer);
        claim_by_consumer(placement, consumer, |allocated| {
            claim_allocated(tracker, &claim, consumer, allocated)
        })
    }

    #[test]
    fn a_consumer_is_a_uuid_claimed_alone() {
        let mut c = consumer_claim(Uuid::nil());
        c.placement_consumer = Some("not-a-uuid".into());
        let e = consumer_of(&c).unwrap_err();
        assert!(
            matches!(e, OpError::BadRequest(ref m) if m.contains("not-a-uuid")),
            "{e}"
        );
        let mut c = consumer_claim(Uuid::nil());
        c.alias = Some("nic".into());
        c.count = Some(2);
        let e = consumer_of(&c).unwrap_err();
        assert!(e.to_string().contains("alias, count"), "{e}");
        assert_eq!(consumer_of(&claim_req(Some("{}"), None)).unwrap(), None);
        // The direct path (no agent) refuses it, saying where to claim.
        let mut tracker = Tracker::in_memory().unwrap();
        let e = claim(
            &mut tracker,
            &consumer_claim(Uuid::nil()),
            &AliasTable::default(),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("running agent"), "{e}");
    }

    #[test]
    fn a_claim_by_consumer_takes_exactly_the_allocated_devices_behind_the_provider() {
        let (mut tracker, view) = two_providers();
        let consumer = Uuid::new_v4();
        let target = view.providers[1].clone();
        let root = Uuid::new_v4();
        let placement = FakePlacement {
            allocations: Ok(BTreeMap::from([
                (target.uuid, BTreeMap::from([(RC.to_string(), 2)])),
                // The root's and another host's allocations are not this agent's to claim.
                (root, BTreeMap::from([("VCPU".to_string(), 4)])),
                (Uuid::new_v4(), BTreeMap::from([(RC.to_string(), 1)])),
            ])),
            view: Some(Arc::new(view)),
            resyncs: Default::default(),
        };
        let claimed = run(&mut tracker, &placement, consumer).unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(claimed.iter().all(|c| target.devices.contains(&c.address)));
        let held = devices(
            &mut tracker,
            &DevicesQuery {
                instance: Some(consumer.to_string()),
                ..DevicesQuery::default()
            },
        )
        .unwrap();
        assert_eq!(held.len(), 2, "the instance is the consumer's uuid");
        assert_eq!(placement.resyncs.into_inner(), 0);
    }

    #[test]
    fn an_over_allocation_is_refused_naming_it_changes_nothing_and_resyncs() {
        let (mut tracker, view) = two_providers();
        let target = view.providers[0].clone();
        let placement = |n: u32| FakePlacement {
            allocations: Ok(BTreeMap::from([(
                target.uuid,
                BTreeMap::from([(RC.to_string(), n)]),
            )])),
            view: Some(Arc::new(view.clone())),
            resyncs: Default::default(),
        };
        let first = placement(1);
        run(&mut tracker, &first, Uuid::new_v4()).unwrap();
        let before = devices(&mut tracker, &DevicesQuery::default()).unwrap();
        let second = placement(2);
        let consumer = Uuid::new_v4();
        let e = run(&mut tracker, &second, consumer).unwrap_err();
        let want = format!(
            "Placement allocated 2 {RC} on provider host1_0000:81:00.0 ({}) to consumer \
             {consumer} but only 1 of its devices are free on this host: over-allocated by \
             Placement",
            target.uuid
        );
        assert!(
            matches!(e, OpError::OverAllocated(ref m) if m.contains(&want)),
            "{e}"
        );
        assert_eq!(
            devices(&mut tracker, &DevicesQuery::default()).unwrap(),
            before
        );
        assert_eq!(second.resyncs.into_inner(), 1);
    }

    #[test]
    fn no_allocation_here_or_placement_down_is_refused_naming_why_without_a_resync() {
        let (mut tracker, view) = two_providers();
        let consumer = Uuid::new_v4();
        let none = FakePlacement {
            allocations: Ok(BTreeMap::new()),
            view: Some(Arc::new(view.clone())),
            resyncs: Default::default(),
        };
        let e = run(&mut tracker, &none, consumer).unwrap_err();
        assert!(
            matches!(e, OpError::Refused(ref m) if m.contains(&consumer.to_string()) && m.contains("no allocation")),
            "{e}"
        );
        let down = FakePlacement {
            allocations: Err("connection refused (http://127.0.0.1:1)".into()),
            view: Some(Arc::new(view)),
            resyncs: Default::default(),
        };
        let e = run(&mut tracker, &down, consumer).unwrap_err();
        assert!(
            matches!(e, OpError::Refused(ref m) if m.contains("connection refused")),
            "{e}"
        );
        assert_eq!(none.resyncs.into_inner() + down.resyncs.into_inner(), 0);
        assert!(
            devices(&mut tracker, &DevicesQuery::default())
                .unwrap()
                .iter()
                .all(|d| d.instance_uuid.is_none())
        );
    }
}
