//! The tracker's operations as requests and answers, shared by the CLI's direct path (on the
//! database file) and the agent's API (on the agent's tracker): one piece of code decides,
//! whichever way the request arrived, and both paths print the same answers.

use std::collections::BTreeMap;

use pcitrack_model::{Assessment, DevType, DeviceStatus};
use pcitrack_tracker::{
    AliasTable, ClaimedDevice, DeviceFilter, FreeReport, PciRequest, SqliteStore, Store, Tracker,
    TrackerError,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why an operation was not done. Nothing was written.
#[derive(Debug, Error)]
pub enum OpError {
    /// The request is malformed (bad spec, unknown alias, bad filter).
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but the tracker refused it (no free devices, wrong state).
    #[error("{0}")]
    Refused(String),
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
            TrackerError::NoDevices { .. } | TrackerError::Refused { .. } => OpError::Refused(text),
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
/// `"trusted": true` prints as `true`, `"trusted": "true"` as `"true"`), decoded from the
/// contract's carried form ([`pcitrack_model::tag_value`]) by the tracker's pool rule.
pub type Tags = BTreeMap<String, serde_json::Value>;

/// [`Tags`] from carried tag values.
pub fn typed_tags(carried: &BTreeMap<String, String>) -> Tags {
    carried
        .iter()
        .map(|(k, v)| (k.clone(), pcitrack_tracker::pools::pool_value(v)))
        .collect()
}

/// One tag value as a table cell: a string bare, anything else as its JSON text.
pub fn tag_cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
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
            tags: typed_tags(&a.tags),
            remote_managed: a.remote_managed,
            decided_by: a.decided_by.clone(),
            reason: a.reason.clone(),
        }
    }
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
    pub tags: Tags,
    /// Remote-managed (SmartNIC/DPU).
    pub remote_managed: bool,
    /// The policy that made it assignable.
    pub decided_by: String,
}

/// A pool of free devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolRow {
    /// Free devices in it.
    pub count: usize,
    /// What its devices share (vendor, product, NUMA node, type, tags...).
    pub key: serde_json::Value,
}

/// A claim: an instance asks for `count` devices by spec or by alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The instance.
    pub instance: String,
    /// A request spec as JSON text: an object or a list (vendor_id, product_id, dev_type,
    /// tags...).
    #[serde(default)]
    pub spec: Option<String>,
    /// An alias of `[pci] alias`.
    #[serde(default)]
    pub alias: Option<String>,
    /// How many devices (default 1).
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
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
        .devices(&filter)?
        .into_iter()
        .filter(|t| vendor.is_none_or(|v| t.profile.device.vendor_id == v))
        .filter(|t| product.is_none_or(|p| t.profile.device.product_id == p))
        .map(|t| DeviceRow {
            address: t.profile.device.address.to_string(),
            status: t.status,
            dev_type: t.profile.device.dev_type,
            vendor_id: format!("{:04x}", t.profile.device.vendor_id),
            product_id: format!("{:04x}", t.profile.device.product_id),
            parent_addr: t.profile.device.parent_addr.map(|a| a.to_string()),
            instance_uuid: t.instance_uuid,
            numa_node: t.profile.device.numa_node,
            tags: typed_tags(&t.profile.tags),
            remote_managed: t.profile.remote_managed,
            decided_by: t.profile.decided_by,
        })
        .collect())
}

/// The pools of free devices.
pub fn pools<S: Store>(tracker: &mut Tracker<S>) -> Result<Vec<PoolRow>, OpError> {
    Ok(tracker
        .pools()?
        .pools()
        .iter()
        .map(|p| PoolRow {
            count: p.count,
            key: serde_json::to_value(&p.key).unwrap_or(serde_json::Value::Null),
        })
        .collect())
}

/// Turns a claim's spec or alias into a tracker request; `aliases` is `[pci] alias`.
pub fn request_of(claim: &ClaimRequest, aliases: &[String]) -> Result<PciRequest, OpError> {
    let bad = |e: &dyn std::error::Error| OpError::BadRequest(error_text(e));
    match (&claim.spec, &claim.alias) {
        (Some(_), Some(_)) => Err(OpError::BadRequest(
            "give either spec or alias, not both".into(),
        )),
        (Some(spec), None) => PciRequest::from_spec_json(spec, claim.count)
            .map_err(|e| OpError::BadRequest(format!("spec: {}", error_text(&e)))),
        (None, Some(alias)) => AliasTable::parse(aliases)
            .map_err(|e| {
                OpError::BadRequest(format!(
                    "[pci] alias in the configuration: {}",
                    error_text(&e)
                ))
            })?
            .request(alias, claim.count, None)
            .map_err(|e| bad(&e)),
        (None, None) => Err(OpError::BadRequest(
            "a claim needs a spec or an alias".into(),
        )),
    }
}

/// Claims devices for an instance: all of them or none.
pub fn claim<S: Store>(
    tracker: &mut Tracker<S>,
    claim: &ClaimRequest,
    aliases: &[String],
) -> Result<Vec<ClaimedDevice>, OpError> {
    if claim.instance.trim().is_empty() {
        return Err(OpError::BadRequest("instance must not be empty".into()));
    }
    let request = request_of(claim, aliases)?;
    Ok(tracker.claim(&claim.instance, &[request], None)?)
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

    fn claim_req(spec: Option<&str>, alias: Option<&str>) -> ClaimRequest {
        ClaimRequest {
            instance: "vm1".into(),
            spec: spec.map(Into::into),
            alias: alias.map(Into::into),
            count: 1,
        }
    }

    #[test]
    fn a_claim_needs_exactly_one_of_spec_and_alias() {
        let both = request_of(&claim_req(Some("{}"), Some("nic")), &[]).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let neither = request_of(&claim_req(None, None), &[]).unwrap_err();
        assert!(
            neither.to_string().contains("spec or an alias"),
            "{neither}"
        );
    }

    #[test]
    fn an_unknown_alias_and_a_bad_spec_are_bad_requests_naming_the_problem() {
        let e = request_of(&claim_req(None, Some("gpu")), &[]).unwrap_err();
        assert!(
            matches!(e, OpError::BadRequest(ref m) if m.contains("gpu")),
            "{e}"
        );
        let e = request_of(&claim_req(Some("{not json"), None), &[]).unwrap_err();
        assert!(
            matches!(e, OpError::BadRequest(ref m) if m.starts_with("spec")),
            "{e}"
        );
    }

    #[test]
    fn a_refused_claim_is_refused_not_an_internal_error() {
        let mut tracker = Tracker::in_memory().unwrap();
        let e = claim(
            &mut tracker,
            &claim_req(Some(r#"{"vendor_id": "8086"}"#), None),
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
}
