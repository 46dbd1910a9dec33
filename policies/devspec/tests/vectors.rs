//! Every vector of Nova's `devspec_parse`, `devspec_match` and `whitelist` groups, and the
//! device_spec ones of `later_changes_not_executed`, run against pcitrack-devspec.
//!
//! The vectors live in `shared/nova-pci/VECTORS.json` beside the repository (CI clones it
//! there). Where pcitrack deliberately differs from Nova, the vector id is listed in
//! `ADAPTED` with the reason and the test asserts pcitrack's documented behaviour instead.
//! Vectors recorded with the 2022 exception name and prefix are compared with current
//! Nova's (`PciConfigInvalidSpec`, `Invalid [pci]device_spec config: `).

use std::collections::BTreeMap;
use std::path::PathBuf;

use pcitrack_devspec::{
    AddressKind, DeviceFacts, DeviceInput, DeviceSpec, GlobSpec, HostView, RegexSpec, SpecError,
    Value, Whitelist, from_json, parse_physical_address,
};
use pcitrack_model::PciAddress;

/// Vectors whose Nova result pcitrack deliberately does not reproduce, and why.
const ADAPTED: &[(&str, &str)] = &[
    (
        "phys_dict_too_big_domain",
        "domains above 0xFFFF are valid PCI domains",
    ),
    (
        "phys_str_too_big_65536:0a:00.5",
        "domains above 0xFFFF are valid PCI domains",
    ),
    (
        "phys_str_32bit_domain",
        "domains above 0xFFFF are valid PCI domains",
    ),
    (
        "glob_too_big_65536:0a:00.5",
        "domains above 0xFFFF are valid PCI domains",
    ),
    (
        "spec_max_domain",
        "domains above 0xFFFF are valid PCI domains",
    ),
    (
        "spec_vendor_id_json_int",
        "Nova crashes with a raw AttributeError; refused as PciConfigInvalidSpec",
    ),
    (
        "spec_product_id_json_int",
        "Nova crashes with a raw TypeError; refused as PciConfigInvalidSpec",
    ),
    (
        "spec_tags_kept_verbatim",
        "current Nova normalises the managed tag (\"no\" -> \"false\")",
    ),
    (
        "rm_pf_ids_raises",
        "Nova's message is a Python object repr; pcitrack names the PF address",
    ),
    (
        "rm_vf_by_pf_any_any",
        "Nova's message is a Python object repr; pcitrack names the PF address",
    ),
    (
        "rm_vf_by_pf_vendor_any_product",
        "Nova's message is a Python object repr; pcitrack names the PF address",
    ),
    (
        "rm_vf_by_pf_mismatch_8080_5050",
        "Nova's message has a Python object repr; pcitrack names the PF address",
    ),
    (
        "rm_vf_by_pf_mismatch_8086_5050",
        "Nova's message has a Python object repr; pcitrack names the PF address",
    ),
    (
        "rm_vf_by_pf_mismatch_8080_5058",
        "Nova's message has a Python object repr; pcitrack names the PF address",
    ),
    (
        "rm_pf_address_real_sysfs",
        "Nova reads sysfs at a bogus path; pcitrack uses the PF's address (no VF id known -> PciDeviceNotFoundById for that address)",
    ),
    (
        "vendor_compare_device_not_normalised",
        "device ids are integers in pcitrack; an upper-case device id cannot exist, so 15B3 matches",
    ),
    (
        "device_32bit_domain",
        "domains above 0xFFFF are valid PCI domains: the device matches",
    ),
    (
        "pf_spec_bad_parent_raises",
        "a 32-bit-domain parent is a valid address: no error, and it is not the PF",
    ),
    (
        "non_pf_spec_ignores_bad_parent",
        "parent_addr is a parsed address in pcitrack; garbage cannot reach the matcher (tested with no parent)",
    ),
    (
        "plain_string_not_list",
        "the Rust API takes a list; Nova's iteration of a bare string is reproduced by passing its characters",
    ),
    (
        "head_one_time_use_normalised",
        "pcitrack does not report to Placement, so one_time_use=true is refused as Nova does without report_in_placement; normalisation checked with a false value",
    ),
];

/// Vectors that are not about device specs.
const SKIPPED: &[(&str, &str)] = &[
    (
        "head_pool_split_per_parent",
        "pool keys: the stats/pooling side, not device_spec",
    ),
    (
        "head_free_of_unconfigured_device_removes_it",
        "tracker state machine, not device_spec",
    ),
    (
        "head_save_deletes_all_removed",
        "tracker persistence, not device_spec",
    ),
];

fn vectors() -> Value {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared/nova-pci/VECTORS.json");
        if candidate.is_file() {
            let text = std::fs::read_to_string(&candidate).expect("read VECTORS.json");
            return from_json(&text).expect("VECTORS.json is JSON");
        }
        assert!(
            dir.pop(),
            "shared/nova-pci/VECTORS.json not found in any parent of {}: clone the shared \
             repository beside this one (CI does)",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

fn group(name: &str) -> Vec<Value> {
    match vectors().get(name) {
        Some(Value::List(items)) => items.clone(),
        _ => panic!("group {name} missing"),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn id(v: &Value) -> String {
    s(v, "id").expect("vector id").to_string()
}

fn adapted(id: &str) -> bool {
    ADAPTED.iter().any(|(a, _)| *a == id)
}

/// Current Nova's class and message for a vector's recorded (2022) error.
fn expected_error(v: &Value) -> (String, Option<String>) {
    let class = s(v, "error")
        .unwrap()
        .replace("PciConfigInvalidWhitelist", "PciConfigInvalidSpec");
    let message = s(v, "message").map(|m| {
        m.replace(
            "Invalid PCI devices Whitelist config: ",
            "Invalid [pci]device_spec config: ",
        )
    });
    (class, message)
}

fn check_error(v: &Value, got: &SpecError) -> Result<(), String> {
    let (class, message) = expected_error(v);
    if got.class_name() != class {
        return Err(format!(
            "class {} != {class} ({})",
            got.class_name(),
            got.message
        ));
    }
    if let Some(m) = message
        && got.message != m
    {
        return Err(format!("message {:?} != {m:?}", got.message));
    }
    Ok(())
}

/// The vectors' sysfs mock as a host view.
struct MockHost {
    devices: BTreeMap<PciAddress, DeviceFacts>,
    netdevs: BTreeMap<String, PciAddress>,
}

impl MockHost {
    fn from_vector(v: &Value) -> Self {
        let sysfs = v.get("sysfs");
        let get = |k: &str| sysfs.and_then(|s| s.get(k));
        let hex = |t: &str| u16::from_str_radix(t, 16).unwrap();
        let (vendor_id, product_id) = match get("pf_ids") {
            Some(Value::List(ids)) => {
                (hex(ids[0].as_str().unwrap()), hex(ids[1].as_str().unwrap()))
            }
            _ => (0x8086, 0x5057),
        };
        let vf_product_id = get("vf_product_id").and_then(Value::as_str).map(hex);
        let facts = |is_pf| DeviceFacts {
            vendor_id,
            product_id,
            is_pf,
            vf_product_id,
        };
        let mut host = MockHost {
            devices: BTreeMap::new(),
            netdevs: BTreeMap::new(),
        };
        if let Some(Value::List(pfs)) = get("is_pf") {
            for a in pfs {
                host.devices
                    .insert(a.as_str().unwrap().parse().unwrap(), facts(true));
            }
        }
        if let Some(Value::Object(names)) = get("ifname") {
            for (name, entry) in names {
                let Value::List(e) = entry else { panic!() };
                let addr: PciAddress = e[0].as_str().unwrap().parse().unwrap();
                host.devices.insert(addr, facts(e[1] == Value::Bool(true)));
                host.netdevs.insert(name.clone(), addr);
            }
        }
        host
    }
}

impl HostView for MockHost {
    fn device(&self, address: PciAddress) -> Option<DeviceFacts> {
        self.devices.get(&address).copied()
    }
    fn netdev(&self, name: &str) -> Option<PciAddress> {
        self.netdevs.get(name).copied()
    }
}

fn fields_of(v: &Value) -> Vec<String> {
    match v.get("fields") {
        Some(Value::List(f)) => f.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        _ => panic!("no fields"),
    }
}

fn phys_fields(a: PciAddress) -> Vec<String> {
    vec![
        format!("{:04x}", a.domain),
        format!("{:02x}", a.bus),
        format!("{:02x}", a.slot),
        format!("{:x}", a.function),
    ]
}

fn sorted_object(v: &Value) -> Vec<(String, Value)> {
    let Value::Object(entries) = v else {
        panic!("not an object: {v:?}")
    };
    let mut e = entries.clone();
    e.sort_by(|a, b| a.0.cmp(&b.0));
    e
}

/// Parses a spec and binds it to the vector's host, as Nova's constructor does in one go.
fn parse_and_bind(v: &Value) -> Result<(Whitelist, pcitrack_devspec::Resolution), SpecError> {
    let spec = v.get("spec").unwrap();
    let wl = Whitelist::parse_entries(&[pcitrack_devspec::Entry::Native(spec.clone())])?;
    let host = MockHost::from_vector(v);
    let resolution = wl.bind(&host)?.resolution(0);
    Ok((wl, resolution))
}

fn check_parsed_spec(
    v: &Value,
    wl: &Whitelist,
    res: pcitrack_devspec::Resolution,
) -> Result<(), String> {
    let spec: &DeviceSpec = &wl.specs()[0];
    let p = v.get("parsed").unwrap();
    let eq = |what: &str, got: &str, want: Option<&str>| {
        if Some(got) == want {
            Ok(())
        } else {
            Err(format!("{what}: {got:?} != {want:?}"))
        }
    };
    eq("vendor_id", spec.vendor_id().text(), s(p, "vendor_id"))?;
    eq("product_id", spec.product_id().text(), s(p, "product_id"))?;
    if spec.devname() != s(p, "devname") {
        return Err(format!("devname {:?}", spec.devname()));
    }
    if Value::Bool(spec.remote_managed()) != *p.get("remote_managed").unwrap() {
        return Err("remote_managed".into());
    }
    if sorted_object(&spec.tags().to_value()) != sorted_object(p.get("tags").unwrap()) {
        return Err(format!("tags {:?}", spec.tags().to_value()));
    }
    let addr = p.get("address").unwrap();
    match (spec.address(), addr) {
        (None, Value::Null) => {
            if let Some(resolved) = p.get("devname_resolved") {
                let pcitrack_devspec::Resolution::Device { address, is_pf } = res else {
                    return Err(format!("devname not resolved: {res:?}"));
                };
                if phys_fields(address) != fields_of(resolved)
                    || Value::Bool(is_pf) != *resolved.get("is_physical_function").unwrap()
                {
                    return Err(format!("devname resolved to {address} pf={is_pf}"));
                }
            } else if res != pcitrack_devspec::Resolution::Absent {
                return Err(format!("unknown devname resolved: {res:?}"));
            }
        }
        (Some(a), Value::Object(_)) => {
            let texts: Vec<String> = a.field_texts().iter().map(|t| t.to_string()).collect();
            if texts != fields_of(addr) {
                return Err(format!("address fields {texts:?}"));
            }
            let kind = match a.kind() {
                AddressKind::Glob => "PciAddressGlobSpec",
                AddressKind::Regex => "PciAddressRegexSpec",
            };
            eq("kind", kind, s(addr, "kind"))?;
            if Value::Bool(res.pf().is_some()) != *addr.get("is_physical_function").unwrap() {
                return Err(format!("is_physical_function: {res:?}"));
            }
        }
        (a, b) => return Err(format!("address {a:?} vs {b:?}")),
    }
    Ok(())
}

fn run_parse_vector(v: &Value) -> Result<(), String> {
    let ok = v.get("ok") == Some(&Value::Bool(true));
    match s(v, "parser").unwrap() {
        "PhysicalPciAddress" => match (parse_physical_address(v.get("input").unwrap()), ok) {
            (Ok(a), true) => (phys_fields(a) == fields_of(v.get("parsed").unwrap()))
                .then_some(())
                .ok_or(format!("{a}")),
            (Err(e), false) => check_error(v, &e),
            (r, _) => Err(format!("unexpected {r:?}")),
        },
        "PciAddressGlobSpec" => {
            match (
                GlobSpec::parse(v.get("input").unwrap().as_str().unwrap()),
                ok,
            ) {
                (Ok(g), true) => {
                    let t: Vec<String> = g.field_texts().iter().map(|x| x.to_string()).collect();
                    (t == fields_of(v.get("parsed").unwrap()))
                        .then_some(())
                        .ok_or(format!("{t:?}"))
                }
                (Err(e), false) => check_error(v, &e),
                (r, _) => Err(format!("unexpected {r:?}")),
            }
        }
        "PciAddressRegexSpec" => match (RegexSpec::parse(v.get("input").unwrap()), ok) {
            (Ok(r), true) => {
                let t: Vec<String> = r.patterns().iter().map(|x| x.to_string()).collect();
                (t == fields_of(v.get("parsed").unwrap()))
                    .then_some(())
                    .ok_or(format!("{t:?}"))
            }
            (Err(e), false) => check_error(v, &e),
            (r, _) => Err(format!("unexpected {r:?}")),
        },
        "PciDeviceSpec" => match (parse_and_bind(v), ok) {
            (Ok((wl, res)), true) => check_parsed_spec(v, &wl, res),
            (Err(e), false) => check_error(v, &e),
            (Ok(_), false) => Err("parsed, but Nova refuses it".into()),
            (Err(e), true) => Err(format!("refused: {e:?}")),
        },
        other => Err(format!("unknown parser {other}")),
    }
}

fn hex16(v: &Value, key: &str) -> u16 {
    u16::from_str_radix(s(v, key).unwrap(), 16).unwrap()
}

fn addr_of(v: &Value, key: &str) -> Option<PciAddress> {
    s(v, key).map(|a| a.parse().unwrap_or_else(|e| panic!("{a}: {e}")))
}

fn serial_of(dev: &Value) -> Option<&str> {
    dev.get("capabilities")
        .and_then(|c| c.get("vpd"))
        .and_then(|c| s(c, "card_serial_number"))
}

fn device_input(dev: &Value) -> DeviceInput<'_> {
    DeviceInput {
        address: addr_of(dev, "address").unwrap(),
        vendor_id: hex16(dev, "vendor_id"),
        product_id: hex16(dev, "product_id"),
        parent_addr: addr_of(dev, "parent_addr"),
        card_serial_number: serial_of(dev),
    }
}

fn run_match_vector(v: &Value) -> Result<(), String> {
    let dev = device_input(v.get("device").unwrap());
    let (wl, _) = parse_and_bind(v).map_err(|e| format!("spec refused: {e:?}"))?;
    let host = MockHost::from_vector(v);
    let got = wl.bind(&host).unwrap().find(&dev).is_some();
    match v.get("match") {
        Some(Value::Bool(want)) => (got == *want).then_some(()).ok_or(format!("match {got}")),
        _ => Err("Nova raises here".into()),
    }
}

fn run_whitelist_vector(v: &Value) -> Result<(), String> {
    let entries: Vec<String> = match v.get("device_spec").unwrap() {
        Value::List(items) => items
            .iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect(),
        other => panic!("{other:?}"),
    };
    let wl = match (Whitelist::parse(&entries), v.get("ok")) {
        (Err(e), Some(Value::Bool(false))) => return check_error(v, &e),
        (Err(e), _) => return Err(format!("refused: {e:?}")),
        (Ok(_), Some(Value::Bool(false))) => return Err("accepted, Nova refuses".into()),
        (Ok(wl), _) => wl,
    };
    if let Some(Value::Int(n)) = v.get("n_specs")
        && wl.len() as i128 != *n
    {
        return Err(format!("{} specs", wl.len()));
    }
    if let Some(dev) = v.get("device") {
        let found = wl
            .bind(&MockHost::from_vector(v))
            .unwrap()
            .find(&device_input(dev));
        let want = v.get("assignable") == Some(&Value::Bool(true));
        if found.is_some() != want {
            return Err(format!("assignable {found:?}"));
        }
        match (found, v.get("get_devspec_tags").unwrap()) {
            (None, Value::Null) => {}
            (Some(i), tags) => {
                if sorted_object(&wl.specs()[i].tags().to_value()) != sorted_object(tags) {
                    return Err("tags".into());
                }
            }
            (None, _) => return Err("no spec".into()),
        }
    }
    Ok(())
}

/// pcitrack's behaviour for the adapted vectors.
fn run_adapted(v: &Value) -> Result<(), String> {
    let id = id(v);
    let pf: PciAddress = "0000:0a:00.0".parse().unwrap();
    let refused = |class: &str, message: &str| -> Result<(), String> {
        match parse_and_bind(v) {
            Err(e) if e.class_name() == class && e.message == message => Ok(()),
            other => Err(format!("{other:?}")),
        }
    };
    match id.as_str() {
        "phys_dict_too_big_domain" | "phys_str_too_big_65536:0a:00.5" | "phys_str_32bit_domain" => {
            let a = parse_physical_address(v.get("input").unwrap()).map_err(|e| e.message)?;
            let want = if id == "phys_str_32bit_domain" {
                0x10000
            } else {
                0x65536
            };
            (a.domain == want).then_some(()).ok_or(format!("{a}"))
        }
        "glob_too_big_65536:0a:00.5" => {
            let g = GlobSpec::parse("65536:0a:00.5").map_err(|e| e.message)?;
            (g.field_texts() == ["65536", "0a", "00", "5"])
                .then_some(())
                .ok_or("fields".into())
        }
        "spec_max_domain" => {
            let (wl, _) = parse_and_bind(v).map_err(|e| e.message)?;
            let a = wl.specs()[0].address().unwrap();
            (a.field_texts()[0] == "10000")
                .then_some(())
                .ok_or("domain".into())
        }
        "spec_vendor_id_json_int" => refused(
            "PciConfigInvalidSpec",
            "Invalid [pci]device_spec config: property vendor_id (8086) is not a string.",
        ),
        "spec_product_id_json_int" => refused(
            "PciConfigInvalidSpec",
            "Invalid [pci]device_spec config: property product_id (8086) is not a string.",
        ),
        "spec_tags_kept_verbatim" => {
            let (wl, _) = parse_and_bind(v).map_err(|e| e.message)?;
            let t = wl.specs()[0].tags();
            let ok = t.get("managed") == Some("false")
                // Non-string values travel typed (pcitrack_model::tag_value).
                && t.get("physical_network") == Some("\u{1}null")
                && t.get("foo") == Some("\u{1}[\"bar\"]")
                && t.get("remote_managed") == Some("false")
                && t.get("traits") == Some("a,b")
                && t.len() == 7;
            ok.then_some(()).ok_or(format!("{t:?}"))
        }
        "rm_pf_ids_raises" | "rm_vf_by_pf_any_any" | "rm_vf_by_pf_vendor_any_product" => {
            refused("PciDeviceInvalidPFRemoteManaged", "0000:0a:00.0")
        }
        "rm_vf_by_pf_mismatch_8080_5050"
        | "rm_vf_by_pf_mismatch_8086_5050"
        | "rm_vf_by_pf_mismatch_8080_5058" => {
            let spec = v.get("spec").unwrap();
            refused(
                "PciConfigInvalidSpec",
                &format!(
                    "Invalid [pci]device_spec config: the specified VF vendor ID {} and product ID \
                     {} do not match the expected VF IDs based on the corresponding PF identified \
                     by PCI address {pf}",
                    s(spec, "vendor_id").unwrap(),
                    s(spec, "product_id").unwrap()
                ),
            )
        }
        "rm_pf_address_real_sysfs" => {
            refused("PciDeviceNotFoundById", "PCI device 0000:0a:00.0 not found")
        }
        "vendor_compare_device_not_normalised" | "device_32bit_domain" => {
            let (wl, _) = parse_and_bind(v).map_err(|e| e.message)?;
            let dev = device_input(v.get("device").unwrap());
            wl.bind(&MockHost::from_vector(v))
                .unwrap()
                .find(&dev)
                .map(|_| ())
                .ok_or("no match".into())
        }
        "pf_spec_bad_parent_raises" => {
            let (wl, _) = parse_and_bind(v).map_err(|e| e.message)?;
            let dev = device_input(v.get("device").unwrap());
            match wl.bind(&MockHost::from_vector(v)).unwrap().find(&dev) {
                None => Ok(()),
                Some(_) => Err("matched".into()),
            }
        }
        "non_pf_spec_ignores_bad_parent" => {
            let (wl, _) = parse_and_bind(v).map_err(|e| e.message)?;
            let dev = v.get("device").unwrap();
            let stripped = strip_parent(dev);
            let input = DeviceInput {
                parent_addr: None,
                ..device_input(&stripped)
            };
            wl.bind(&MockHost::from_vector(v))
                .unwrap()
                .find(&input)
                .map(|_| ())
                .ok_or("no match".into())
        }
        "plain_string_not_list" => {
            let text = v.get("device_spec").unwrap().as_str().unwrap();
            let chars: Vec<String> = text.chars().map(String::from).collect();
            match Whitelist::parse(&chars) {
                Err(e) => check_error(v, &e),
                Ok(_) => Err("accepted".into()),
            }
        }
        "head_one_time_use_normalised" => {
            let mut spec = v.get("spec").unwrap().clone();
            let Value::Object(entries) = &mut spec else {
                panic!()
            };
            for (k, val) in entries.iter_mut() {
                if k == "one_time_use" {
                    *val = Value::Str("FaLsE".into());
                }
            }
            let spec = DeviceSpec::parse(&spec).map_err(|e| e.message)?;
            let refused_true = DeviceSpec::parse(v.get("spec").unwrap()).is_err();
            (spec.tags().get("one_time_use") == Some("false") && refused_true)
                .then_some(())
                .ok_or("one_time_use".into())
        }
        other => Err(format!("no adaptation written for {other}")),
    }
}

fn strip_parent(dev: &Value) -> Value {
    let Value::Object(e) = dev else { panic!() };
    Value::Object(
        e.iter()
            .filter(|(k, _)| k != "parent_addr")
            .cloned()
            .collect(),
    )
}

fn later_vector(v: &Value) -> Result<(), String> {
    match id(v).as_str() {
        "head_managed_live_migratable_normalised" => {
            let Some(Value::List(rows)) = v.get("table") else {
                panic!()
            };
            for row in rows {
                let Value::List(r) = row else { panic!() };
                let (tag, input, want) = (
                    r[0].as_str().unwrap(),
                    r[1].as_str().unwrap(),
                    r[2].as_str().unwrap(),
                );
                let wl = Whitelist::parse(&[format!(
                    r#"{{"product_id":"0001", "vendor_id":"8086", "{tag}": "{input}"}}"#
                )])
                .map_err(|e| e.message)?;
                if wl.specs()[0].tags().get(tag) != Some(want) {
                    return Err(format!("{tag}={input}"));
                }
            }
            let wl = Whitelist::parse(&[r#"{"product_id":"0001", "vendor_id":"8086"}"#]).unwrap();
            wl.specs()[0]
                .tags()
                .get("managed")
                .is_none()
                .then_some(())
                .ok_or("managed set".into())
        }
        "head_managed_invalid_value" | "head_one_time_use_requires_placement" => {
            match DeviceSpec::parse(v.get("spec").unwrap()) {
                Err(e) => check_error(v, &e),
                Ok(_) => Err("accepted".into()),
            }
        }
        other => Err(format!("unhandled later vector {other}")),
    }
}

struct Tally {
    run: usize,
    adapted: usize,
    skipped: usize,
    failures: Vec<String>,
}

fn run_group(name: &str, runner: fn(&Value) -> Result<(), String>) -> Tally {
    let mut t = Tally {
        run: 0,
        adapted: 0,
        skipped: 0,
        failures: vec![],
    };
    for v in group(name) {
        let id = id(&v);
        let result = if SKIPPED.iter().any(|(s, _)| *s == id) {
            t.skipped += 1;
            continue;
        } else if adapted(&id) {
            t.adapted += 1;
            run_adapted(&v)
        } else {
            t.run += 1;
            runner(&v)
        };
        if let Err(e) = result {
            t.failures.push(format!("{name}/{id}: {e}"));
        }
    }
    println!(
        "{name}: {} run as Nova, {} adapted, {} skipped",
        t.run, t.adapted, t.skipped
    );
    t
}

fn assert_tally(t: Tally) {
    assert!(
        t.failures.is_empty(),
        "failing vectors:\n{}",
        t.failures.join("\n")
    );
}

#[test]
fn devspec_parse_vectors() {
    let t = run_group("devspec_parse", run_parse_vector);
    assert_eq!(t.run + t.adapted, 95);
    assert_tally(t);
}

#[test]
fn devspec_match_vectors() {
    let t = run_group("devspec_match", run_match_vector);
    assert_eq!(t.run + t.adapted, 55);
    assert_tally(t);
}

#[test]
fn whitelist_vectors() {
    let t = run_group("whitelist", run_whitelist_vector);
    assert_eq!(t.run + t.adapted, 16);
    assert_tally(t);
}

#[test]
fn later_change_vectors() {
    let t = run_group("later_changes_not_executed", later_vector);
    assert_eq!(t.run + t.adapted + t.skipped, 7);
    assert_tally(t);
}

#[test]
fn every_listed_id_exists() {
    let all: Vec<String> = [
        "devspec_parse",
        "devspec_match",
        "whitelist",
        "later_changes_not_executed",
    ]
    .iter()
    .flat_map(|g| group(g))
    .map(|v| id(&v))
    .collect();
    for (id, _) in ADAPTED.iter().chain(SKIPPED) {
        assert!(all.iter().any(|a| a == id), "{id} is not a vector id");
    }
}
