//! Nova's `PciDeviceStats`: free devices grouped into pools, requests filtered and applied
//! against them.
//!
//! A [`PoolSet`] is a value built from the free devices; the tracker rebuilds it from device
//! state whenever it needs one, so the pools cannot drift from the devices (Nova keeps pools
//! as a second source of truth and leaks devices out of them when a claim fails half-way).
//! Every operation that changes a pool set either completes or leaves it as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pcitrack_model::tag_value::TagValue;
use pcitrack_model::{DevType, PciAddress, oslo, python};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::request::{NumaPolicy, PciRequest};

/// A pool's identity: vendor_id, product_id, numa_node, dev_type, every tag of the device,
/// `remote_managed` (implicit `false` for PFs, VFs and vDPA devices) and `parent_ifname` when
/// known.
///
/// Values keep the type Nova's pool dict gives them, because matching depends on it
/// (`nova/pci/utils.py` `pci_device_prop_match` compares with Python `==`): ids, `dev_type`
/// and string tags are strings, `numa_node` is an integer or null, and a device_spec tag
/// written as a JSON non-string (`"trusted": true`) stays that JSON value (it reaches the
/// tracker in the carried form of [`pcitrack_model::tag_value`]).
pub type PoolKey = BTreeMap<String, Value>;

/// A pool value from a carried tag value: a string as a JSON string, a typed value as the
/// JSON it carries (a typed value that is not valid JSON, which only a broken vendor tagger
/// writes, stays the string it was carried as).
pub fn pool_value(carried: &str) -> Value {
    match TagValue::parse(carried) {
        TagValue::Str(s) => Value::String(s.to_string()),
        TagValue::Json(json) => {
            serde_json::from_str(json).unwrap_or_else(|_| Value::String(carried.to_string()))
        }
    }
}

/// Tags that never reach a pool key and that request specs' matching skips: Nova's
/// `PciDeviceStats.ignored_pool_tags` and `ignored_spec_tags`, which are one list in Nova 34
/// (`ignored_spec_tags = ignored_pool_tags = [...]` then two in-place `+=`). Placement
/// matches `resource_class` and `traits` (see [`crate::placement`]); `rp_uuid(s)` are
/// Placement's bookkeeping.
pub const IGNORED_TAGS: [&str; 4] = ["resource_class", "traits", "rp_uuids", "rp_uuid"];

/// Builds the pool key of a device the way Nova's `_create_pool_keys_from_dev` does (the
/// [`IGNORED_TAGS`] left out).
///
/// `vendor_id` and `product_id` are given as text (4 lower-case hex digits for real devices)
/// because pools compare them as text, case-insensitively.
pub fn pool_key(
    vendor_id: &str,
    product_id: &str,
    numa_node: Option<u32>,
    dev_type: DevType,
    tags: &BTreeMap<String, String>,
    remote_managed: bool,
    parent_ifname: Option<&str>,
) -> PoolKey {
    let mut key = PoolKey::new();
    key.insert("vendor_id".into(), Value::from(vendor_id));
    key.insert("product_id".into(), Value::from(product_id));
    key.insert(
        "numa_node".into(),
        numa_node.map_or(Value::Null, Value::from),
    );
    key.insert("dev_type".into(), Value::from(dev_type.as_str()));
    for (k, v) in tags {
        if !IGNORED_TAGS.contains(&k.as_str()) {
            key.insert(k.clone(), pool_value(v));
        }
    }
    // Nova's `_ensure_remote_managed_tag`: `if pool.get('remote_managed') is None`, so a
    // JSON null counts as missing.
    let missing = key.get("remote_managed").is_none_or(Value::is_null);
    if missing && (dev_type != DevType::Pci || remote_managed) {
        key.insert(
            "remote_managed".into(),
            Value::from(if remote_managed { "true" } else { "false" }),
        );
    }
    if let Some(ifname) = parent_ifname {
        key.insert("parent_ifname".into(), Value::from(ifname));
    }
    key
}

/// The carried form of a JSON value as a tag (the inverse of [`pool_value`]).
pub fn carried(value: &Value) -> String {
    match value {
        Value::String(s) => TagValue::Str(s).carried().into_owned(),
        other => TagValue::Json(&other.to_string()).carried().into_owned(),
    }
}

/// oslo's lenient `bool_from_string` of a pool value (Nova's
/// `_filter_pools_for_unrequested_remote_managed_devices`): a boolean is itself, a string
/// reads by oslo's words, anything else as Python's `str()` of it (only an integer's digits
/// can read as true; `None` prints as `None`).
pub fn pool_value_is_true(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => oslo::bool_from_string(s),
        // An integer's JSON text is its Python `str()`; a float's never reads as a word.
        Value::Number(n) => oslo::bool_from_string(&n.to_string()),
        _ => false,
    }
}

/// A device in a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolEntry {
    /// Its address.
    pub address: PciAddress,
    /// Its PF, for a VF or vDPA device.
    pub parent_addr: Option<PciAddress>,
    /// Its type.
    pub dev_type: DevType,
}

/// One pool: devices with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pool {
    /// The key every device of the pool shares.
    pub key: PoolKey,
    /// How many devices the pool offers (below `devices.len()` only after
    /// [`PoolSet::apply_requests`], which counts without choosing devices, as Nova's scheduler).
    pub count: usize,
    /// The devices, in the order they were added; consumption takes from the end.
    pub devices: Vec<PoolEntry>,
}

/// A host NUMA cell, for the `socket` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostNumaCell {
    /// The NUMA node id.
    pub id: u32,
    /// The socket it sits in, when known.
    pub socket: Option<u32>,
}

/// Where the instance's memory lives, for NUMA affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumaContext<'a> {
    /// The instance's NUMA cells (host node ids).
    pub cells: &'a [u32],
    /// The host's cells with their sockets.
    pub host_cells: &'a [HostNumaCell],
}

/// Why a request or a pool operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PoolError {
    /// Nova's `PciDevicePoolEmpty`.
    #[error("Attempt to consume PCI device {address} from empty pool")]
    EmptyPool {
        /// The device that is in no pool.
        address: PciAddress,
    },
    /// Nova's `PciDeviceRequestFailed`, with the request and the filter that ran out.
    #[error("PCI device request {request} failed: {reason}")]
    RequestFailed {
        /// The request, as `#index (count × specs)`.
        request: String,
        /// Which filter left too few devices.
        reason: String,
    },
}

/// A group of [`PoolSet::consume_among`] with fewer free candidates than it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("group #{group} wants {wanted} device(s) but only {free} of its candidates are free")]
pub struct Shortage {
    /// The group's index.
    pub group: usize,
    /// How many it wants.
    pub wanted: usize,
    /// How many of its candidates were free (pooled) when it was tried.
    pub free: usize,
}

/// The step of Nova's `_filter_pools` that left fewer devices than requested.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shortfall {
    stage: String,
    found: usize,
}

fn describe(index: usize, request: &PciRequest) -> String {
    let specs = serde_json::to_string(&request.spec).unwrap_or_default();
    format!("#{index} ({} × {specs})", request.count)
}

fn failed(index: usize, request: &PciRequest, s: Shortfall) -> PoolError {
    PoolError::RequestFailed {
        request: describe(index, request),
        reason: format!(
            "{} free device(s) match after the {} filter, {} requested",
            s.found, s.stage, request.count
        ),
    }
}

/// Nova's `pci_device_prop_match` (`nova/pci/utils.py`): some spec has, for every key, a
/// value equal to the pool's under Python `==` after lower-casing strings.
///
/// A request's values are strings or `None` (Nova coerces `InstancePCIRequest.spec` to
/// nullable strings; see [`crate::request::Spec`]), so: a string matches a pool string
/// equal to it ignoring case (Python's `str.lower()`), and nothing else: not a pool's
/// `true` (a device_spec's JSON boolean), not its `numa_node` integer; `None` matches a
/// pool without the key or with a null value. The [`IGNORED_TAGS`] are skipped (Nova's
/// `_filter_pools_for_spec`).
pub fn spec_matches(key: &PoolKey, request: &PciRequest) -> bool {
    request.spec.iter().any(|spec| {
        spec.iter().all(|(k, v)| {
            if IGNORED_TAGS.contains(&k.as_str()) {
                return true;
            }
            let pool = key.get(k).unwrap_or(&Value::Null);
            match TagValue::parse(v) {
                TagValue::Str(want) => pool.as_str().is_some_and(|p| python::eq_lower(p, want)),
                typed if typed.is_none() => pool.is_null(),
                // Not produced by Nova's coercion; compared as the JSON value it carries.
                TagValue::Json(json) => {
                    serde_json::from_str::<Value>(json).is_ok_and(|w| *pool == w)
                }
            }
        })
    })
}

/// oslo's lenient reading of a request's value (a carried string, or `None`, which reads
/// as Python's `str(None)`, false).
fn request_value_is_true(value: Option<&String>) -> bool {
    value.is_some_and(|v| pcitrack_model::tag_value::bool_from_tag(v))
}

/// The device_spec tag and request key of Nova's live-migration filter (the same key as an
/// alias's, [`crate::request::SPEC_LIVE_MIGRATABLE`]).
pub const LIVE_MIGRATABLE: &str = crate::request::SPEC_LIVE_MIGRATABLE;

/// What Nova 34's `_filter_pools_for_live_migratable_devices` keeps for a request: when
/// every spec says `live_migratable` is exactly `"true"` (the normalised form an alias
/// gives, `nova/pci/request.py`), only pools whose `live_migratable` is the string
/// `"true"`; when every spec says exactly `"false"`, only pools whose value is `"false"`
/// (a pool without the tag is dropped: "we want to exclude the devices that don't have this
/// value yet"); otherwise (absent, mixed, or another spelling such as a spec's `"True"`)
/// no filtering. As in Nova, `all()` over a request with no specs is true.
pub fn live_migratable_wanted(request: &PciRequest) -> Option<&'static str> {
    let all = |want: &str| {
        request
            .spec
            .iter()
            .all(|s| s.get(LIVE_MIGRATABLE).is_some_and(|v| v == want))
    };
    if all("true") {
        Some("true")
    } else if all("false") {
        Some("false")
    } else {
        None
    }
}

fn numa_of(key: &PoolKey) -> Option<u32> {
    key.get("numa_node")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

/// A set of pools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolSet {
    pools: Vec<Pool>,
}

impl PoolSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pools the given devices in order, as successive `add_device` calls would.
    pub fn from_devices(devices: impl IntoIterator<Item = (PoolKey, PoolEntry)>) -> Self {
        let mut keys = Vec::new();
        let mut index: HashMap<PoolKey, usize> = HashMap::new();
        let mut entries = Vec::new();
        for (key, entry) in devices {
            let id = *index.entry(key).or_insert_with_key(|k| {
                keys.push(k.clone());
                keys.len() - 1
            });
            entries.push((id, entry));
        }
        Self::from_interned(&keys, entries)
    }

    /// Like [`PoolSet::from_devices`] with each device's key given as an index into `keys`, so
    /// that a caller holding thousands of devices with a few distinct keys (the tracker) builds
    /// pools without hashing or cloning a key per device.
    pub fn from_interned(
        keys: &[PoolKey],
        devices: impl IntoIterator<Item = (usize, PoolEntry)>,
    ) -> Self {
        let mut set = Self::new();
        let mut slot: Vec<Option<usize>> = vec![None; keys.len()];
        for (id, entry) in devices {
            let i = *slot[id].get_or_insert_with(|| {
                set.pools.push(Pool {
                    key: keys[id].clone(),
                    count: 0,
                    devices: Vec::new(),
                });
                set.pools.len() - 1
            });
            set.pools[i].count += 1;
            set.pools[i].devices.push(entry);
        }
        set.sort();
        set
    }

    /// Nova sorts pools by their number of keys after every change (stable), so untagged pools
    /// are tried first.
    fn sort(&mut self) {
        self.pools.sort_by_key(|p| p.key.len());
    }

    /// The pools, in the order requests try them.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// Every pooled device.
    pub fn free_devices(&self) -> impl Iterator<Item = &PoolEntry> {
        self.pools.iter().flat_map(|p| p.devices.iter())
    }

    /// Nova's `add_device`.
    pub fn add_device(&mut self, key: PoolKey, entry: PoolEntry) {
        match self.pools.iter_mut().find(|p| p.key == key) {
            Some(p) => {
                p.count += 1;
                p.devices.push(entry);
            }
            None => {
                self.pools.push(Pool {
                    key,
                    count: 1,
                    devices: vec![entry],
                });
                self.sort();
            }
        }
    }

    /// Nova's `remove_device`: takes a device out of its pool, deleting the pool when it
    /// empties. A device in no pool is refused with Nova's `PciDevicePoolEmpty` wording.
    pub fn remove_device(&mut self, address: PciAddress) -> Result<(), PoolError> {
        let mut dead = vec![false; self.pools.len()];
        if !self.take_out(address, &mut dead) {
            return Err(PoolError::EmptyPool { address });
        }
        self.compact(&dead);
        Ok(())
    }

    fn take_out(&mut self, address: PciAddress, dead: &mut [bool]) -> bool {
        for (i, pool) in self.pools.iter_mut().enumerate() {
            if let Some(pos) = pool.devices.iter().position(|d| d.address == address) {
                pool.devices.remove(pos);
                pool.count = pool.count.saturating_sub(1);
                if pool.count == 0 {
                    dead[i] = true;
                }
                return true;
            }
        }
        false
    }

    fn compact(&mut self, dead: &[bool]) {
        let mut i = 0;
        self.pools.retain(|_| {
            i += 1;
            !dead[i - 1]
        });
    }

    /// Nova's `_filter_pools`: the pools a request may use, in the order to use them, or the
    /// step that left too few devices. Steps: spec, NUMA affinity, unrequested PFs, unrequested
    /// vDPA, unrequested remote-managed, live_migratable (Nova 34's order; Placement's
    /// allocation filter, which comes before the last, does not apply to a host agent).
    fn filter(
        &self,
        request: &PciRequest,
        numa: Option<NumaContext<'_>>,
    ) -> Result<Vec<usize>, Shortfall> {
        let need = request.count as usize;
        let total = |ids: &[usize]| ids.iter().map(|&i| self.pools[i].count).sum::<usize>();
        let check = |ids: Vec<usize>, stage: &str| -> Result<Vec<usize>, Shortfall> {
            let found = total(&ids);
            if found < need {
                Err(Shortfall {
                    stage: stage.to_string(),
                    found,
                })
            } else {
                Ok(ids)
            }
        };
        let ids: Vec<usize> = (0..self.pools.len())
            .filter(|&i| spec_matches(&self.pools[i].key, request))
            .collect();
        let mut ids = check(ids, "spec")?;
        // Nova's `_filter_pools_for_numa_cells`: `if not numa_cells: return pools`, so an
        // instance without NUMA cells has no affinity to honour, whatever the policy.
        if let Some(ctx) = numa.filter(|c| !c.cells.is_empty()) {
            let policy = request.numa_policy.unwrap_or(NumaPolicy::Legacy);
            let mut stage = format!("NUMA affinity ({policy})");
            let in_cells =
                |i: &usize| numa_of(&self.pools[*i].key).is_some_and(|n| ctx.cells.contains(&n));
            let strict: Vec<usize> = ids.iter().copied().filter(in_cells).collect();
            ids = if policy == NumaPolicy::Required || total(&strict) >= need {
                strict
            } else if policy == NumaPolicy::Socket {
                match socket_nodes(ctx) {
                    Ok(allowed) => ids
                        .into_iter()
                        .filter(|&i| {
                            numa_of(&self.pools[i].key).is_some_and(|n| allowed.contains(&n))
                        })
                        .collect(),
                    Err(unknown) => {
                        stage = format!("NUMA affinity (socket: {unknown})");
                        Vec::new()
                    }
                }
            } else {
                let near = |i: &usize| in_cells(i) || numa_of(&self.pools[*i].key).is_none();
                let legacy: Vec<usize> = ids.iter().copied().filter(near).collect();
                if policy == NumaPolicy::Legacy || total(&legacy) >= need {
                    legacy
                } else {
                    // preferred: everything, the near pools first (stable).
                    let mut all = ids;
                    all.sort_by_key(|i| !near(i));
                    all
                }
            };
            ids = check(ids, &stage)?;
        }
        let wants = |t: DevType| {
            request
                .spec
                .iter()
                .any(|s| s.get("dev_type").is_some_and(|v| v == t.as_str()))
        };
        let is_type = |i: usize, t: DevType| {
            self.pools[i].key.get("dev_type").and_then(Value::as_str) == Some(t.as_str())
        };
        if !wants(DevType::Pf) {
            ids.retain(|&i| !is_type(i, DevType::Pf));
            ids = check(ids, "unrequested PF")?;
        }
        if !wants(DevType::Vdpa) {
            ids.retain(|&i| !is_type(i, DevType::Vdpa));
        }
        // Nova's `_filter_pools_for_unrequested_remote_managed_devices`: oslo's lenient
        // reading on both sides.
        let wants_remote = request
            .spec
            .iter()
            .any(|s| request_value_is_true(s.get("remote_managed")));
        if !wants_remote {
            ids.retain(|&i| {
                !self.pools[i]
                    .key
                    .get("remote_managed")
                    .is_some_and(pool_value_is_true)
            });
            ids = check(ids, "unrequested remote-managed")?;
        }
        if let Some(want) = live_migratable_wanted(request) {
            ids.retain(|&i| {
                self.pools[i]
                    .key
                    .get(LIVE_MIGRATABLE)
                    .and_then(Value::as_str)
                    == Some(want)
            });
            ids = check(ids, "live_migratable")?;
        }
        Ok(ids)
    }

    /// The pools a request may use, in order (Nova's `_filter_pools`), or `None` when they
    /// hold fewer devices than requested.
    pub fn filter_pools(
        &self,
        request: &PciRequest,
        numa: Option<NumaContext<'_>>,
    ) -> Option<Vec<&Pool>> {
        self.filter(request, numa)
            .ok()
            .map(|ids| ids.into_iter().map(|i| &self.pools[i]).collect())
    }

    /// Nova's `support_requests` (2022): every request, checked on its own against these
    /// pools, could be met. Not cumulative, no side effects.
    pub fn support_requests(&self, requests: &[PciRequest], numa: Option<NumaContext<'_>>) -> bool {
        requests.iter().all(|r| {
            self.filter(r, numa)
                .is_ok_and(|ids| !ids.is_empty() || r.count == 0)
        })
    }

    /// Nova's `apply_requests` (the scheduler's count-only claim), cumulative across requests.
    /// Unlike Nova it applies all of them or, on failure, none.
    pub fn apply_requests(
        &mut self,
        requests: &[PciRequest],
        numa: Option<NumaContext<'_>>,
    ) -> Result<(), PoolError> {
        let mut work = self.clone();
        for (n, request) in requests.iter().enumerate() {
            let ids = work
                .filter(request, numa)
                .map_err(|s| failed(n, request, s))?;
            let mut left = request.count as usize;
            let mut dead = vec![false; work.pools.len()];
            for i in ids {
                if left == 0 {
                    break;
                }
                let pool = &mut work.pools[i];
                if pool.count > left {
                    pool.count -= left;
                    left = 0;
                } else {
                    left -= pool.count;
                    pool.count = 0;
                    dead[i] = true;
                }
            }
            work.compact(&dead);
        }
        *self = work;
        Ok(())
    }

    /// Nova's `consume_requests`: chooses devices for every request, last added first, and
    /// takes each chosen device's dependants out of the pools (a PF's pooled children; a
    /// child's pooled PF). Returns the chosen addresses per request. All or nothing: on
    /// failure the set is unchanged (Nova puts the devices back but loses their dependants).
    pub fn consume_requests(
        &mut self,
        requests: &[PciRequest],
        numa: Option<NumaContext<'_>>,
    ) -> Result<Vec<Vec<PciAddress>>, PoolError> {
        let mut work = self.clone();
        let mut chosen = Vec::with_capacity(requests.len());
        for (n, request) in requests.iter().enumerate() {
            let ids = work
                .filter(request, numa)
                .map_err(|s| failed(n, request, s))?;
            let mut left = request.count as usize;
            let mut dead = vec![false; work.pools.len()];
            let mut got = Vec::with_capacity(left);
            for i in ids {
                if left == 0 {
                    break;
                }
                let take = left
                    .min(work.pools[i].count)
                    .min(work.pools[i].devices.len());
                work.pools[i].count -= take;
                left -= take;
                for _ in 0..take {
                    let entry = work.pools[i].devices.pop().expect("count checked");
                    work.take_dependants(&entry, &mut dead);
                    got.push(entry.address);
                }
            }
            if left > 0 {
                return Err(failed(
                    n,
                    request,
                    Shortfall {
                        stage: "dependant".into(),
                        found: request.count as usize - left,
                    },
                ));
            }
            work.compact(&dead);
            chosen.push(got);
        }
        *self = work;
        Ok(chosen)
    }

    /// Chooses `count` pooled devices among each group's `candidates` (a Placement provider's
    /// devices: Nova's claim keeps only the pools of the allocated provider,
    /// `nova/pci/stats.py` `_filter_pools_for_allocation`, and this is that filter by
    /// address), in the candidates' order, taking each chosen device's dependants out as
    /// [`PoolSet::consume_requests`] does. Free means pooled: the one rule of what is free
    /// stays where the pool set is built. All or nothing: on failure the set is unchanged and
    /// the error names the group and how many of its candidates were free then.
    ///
    /// # Errors
    ///
    /// [`Shortage`] for the first group with fewer free candidates than its count.
    pub fn consume_among(
        &mut self,
        groups: &[(&[PciAddress], usize)],
    ) -> Result<Vec<Vec<PciAddress>>, Shortage> {
        let mut work = self.clone();
        let mut chosen = Vec::with_capacity(groups.len());
        for (group, &(candidates, count)) in groups.iter().enumerate() {
            let pooled: BTreeSet<PciAddress> = work.free_devices().map(|d| d.address).collect();
            let free: Vec<PciAddress> = candidates
                .iter()
                .copied()
                .filter(|a| pooled.contains(a))
                .collect();
            if free.len() < count {
                return Err(Shortage {
                    group,
                    wanted: count,
                    free: free.len(),
                });
            }
            let mut dead = vec![false; work.pools.len()];
            let mut got = Vec::with_capacity(count);
            for a in free.into_iter().take(count) {
                // A device taken out as an earlier pick's dependant is no longer pooled.
                let Some(entry) = work.free_devices().find(|d| d.address == a).cloned() else {
                    continue;
                };
                work.take_out(a, &mut dead);
                work.take_dependants(&entry, &mut dead);
                got.push(a);
            }
            if got.len() < count {
                return Err(Shortage {
                    group,
                    wanted: count,
                    free: got.len(),
                });
            }
            work.compact(&dead);
            chosen.push(got);
        }
        *self = work;
        Ok(chosen)
    }

    /// Takes the pooled relatives of a consumed device out of the pools (only pooled ones,
    /// as since 3af2ecc13f).
    fn take_dependants(&mut self, entry: &PoolEntry, dead: &mut [bool]) {
        match entry.dev_type {
            DevType::Pf => {
                let children: Vec<PciAddress> = self
                    .free_devices()
                    .filter(|d| d.dev_type.is_child() && d.parent_addr == Some(entry.address))
                    .map(|d| d.address)
                    .collect();
                for c in children {
                    self.take_out(c, dead);
                }
            }
            t if t.is_child() => {
                if let Some(p) = entry.parent_addr {
                    self.take_out(p, dead);
                }
            }
            _ => {}
        }
    }

    /// Nova's `has_remote_managed_device_pools`: some pool matches the request spec
    /// `{'remote_managed': True}`, which Nova's object coerces to the string `'True'`, so
    /// only a string `remote_managed` equal to `true` ignoring case counts (a device_spec's
    /// JSON `true` does not, in Nova either). It decides the `COMPUTE_REMOTE_MANAGED_PORTS`
    /// trait.
    pub fn has_remote_managed_device_pools(&self) -> bool {
        let mut spec = crate::request::Spec::new();
        spec.insert("remote_managed".into(), "True".into());
        let probe = PciRequest::new(0, spec);
        self.pools.iter().any(|p| spec_matches(&p.key, &probe))
    }

    /// Nova's `_filter_pools_for_socket_affinity` over every pool (none when the host's
    /// socket topology is incomplete).
    pub fn socket_filter(&self, ctx: NumaContext<'_>) -> Vec<&Pool> {
        let allowed = socket_nodes(ctx).unwrap_or_default();
        self.pools
            .iter()
            .filter(|p| numa_of(&p.key).is_some_and(|n| allowed.contains(&n)))
            .collect()
    }
}

/// The host NUMA nodes in the sockets of the instance's cells (Nova's
/// `_filter_pools_for_socket_affinity`), or why there are none to choose from: Nova allows
/// nothing when some host cell has no socket information (or, with no host cells, when the
/// topology was not read at all); the reason says so, naming the nodes.
fn socket_nodes(ctx: NumaContext<'_>) -> Result<BTreeSet<u32>, String> {
    if ctx.host_cells.is_empty() {
        return Err("the host's socket topology is unknown (no NUMA nodes were read)".into());
    }
    let unknown: Vec<String> = ctx
        .host_cells
        .iter()
        .filter(|c| c.socket.is_none())
        .map(|c| c.id.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "the host's socket topology is unknown for NUMA node(s) {}",
            unknown.join(", ")
        ));
    }
    let sockets: BTreeSet<u32> = ctx
        .host_cells
        .iter()
        .filter(|c| ctx.cells.contains(&c.id))
        .filter_map(|c| c.socket)
        .collect();
    Ok(ctx
        .host_cells
        .iter()
        .filter(|c| c.socket.is_some_and(|s| sockets.contains(&s)))
        .map(|c| c.id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn pf_vf_and_vdpa_get_an_implicit_remote_managed_false() {
        let none = BTreeMap::new();
        let k = pool_key("8086", "1515", Some(0), DevType::Vf, &none, false, None);
        assert_eq!(k["remote_managed"], "false");
        assert_eq!(k["numa_node"], 0);
        let k = pool_key("8086", "1515", None, DevType::Pci, &none, false, None);
        assert!(!k.contains_key("remote_managed"));
        assert_eq!(k["numa_node"], Value::Null);
        // A device_spec's `"remote_managed": null` is missing to Nova: the VF gets "false".
        let null_tag = BTreeMap::from([("remote_managed".to_string(), "\u{1}null".to_string())]);
        let k = pool_key("8086", "1515", None, DevType::Vf, &null_tag, false, None);
        assert_eq!(k["remote_managed"], "false");
    }

    #[test]
    fn a_failed_consume_changes_nothing_and_names_the_filter() {
        let none = BTreeMap::new();
        let key = pool_key("8086", "1515", Some(0), DevType::Pci, &none, false, None);
        let mut set = PoolSet::from_devices([(
            key,
            PoolEntry {
                address: a("0000:00:00.1"),
                parent_addr: None,
                dev_type: DevType::Pci,
            },
        )]);
        let before = set.clone();
        let mut spec = BTreeMap::new();
        spec.insert("vendor_id".to_string(), "8086".to_string());
        let e = set
            .consume_requests(&[PciRequest::new(2, spec)], None)
            .unwrap_err();
        assert_eq!(set, before);
        assert!(
            e.to_string()
                .contains("1 free device(s) match after the spec filter, 2 requested"),
            "{e}"
        );
    }
}
