//! Where a command's devices come from: the sysfs tree, or a JSON file of device records.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use pcitrack_model::{Device, packed};

use crate::config::Config;

/// Read devices from sysfs (default) or from a JSON file.
#[derive(Debug, Args)]
pub struct DeviceSource {
    /// Root of the sysfs tree (default: the configuration's, else /sys).
    #[arg(long, value_name = "DIR", conflicts_with = "devices")]
    pub sysfs_root: Option<PathBuf>,
    /// Devices as JSON (the output of `pcitrack discover --format json`) instead of sysfs.
    #[arg(long, value_name = "FILE")]
    pub devices: Option<PathBuf>,
}

/// The devices named by `source`, sorted by address. Devices sysfs could not read are
/// skipped with a warning naming them; the others are returned.
pub fn read_devices(source: &DeviceSource, config: &Config) -> anyhow::Result<Vec<Device>> {
    match &source.devices {
        Some(file) => {
            // Read whole and parsed in place into typed records: ids and addresses are read
            // from the buffer, not copied out first. The UTF-8 is checked once over the
            // text (an ASCII fast path), not string by string as serde_json does on bytes,
            // part by part where the parts are parsed. A large file is read and parsed on
            // every core (`parse_list`), each part sorted by address on the thread that
            // parsed it; the sorted parts are then merged (`merge_sorted`).
            let bytes = read_file(file).with_context(|| format!("reading {}", file.display()))?;
            let not_devices = || format!("{} is not a JSON list of devices", file.display());
            let parts = parse_list(&bytes, super::output::threads(), sort_by_address)
                .with_context(not_devices)?;
            let devices = merge_sorted(parts);
            each_address_once(&devices).with_context(|| file.display().to_string())?;
            // Handing a buffer of tens of megabytes back to the kernel takes milliseconds
            // (and holds the memory map the merge grows): it is done after the merge,
            // beside what follows.
            if bytes.len() >= PARALLEL_MIN_BYTES {
                drop_aside(bytes);
            }
            Ok(devices)
        }
        None => {
            let root = source
                .sysfs_root
                .clone()
                .unwrap_or_else(|| config.sysfs_root());
            Ok(join_by_address(vec![scan(&root)?]))
        }
    }
}

/// Refuses a list of devices, sorted by address, that names an address more than once: it
/// is one host's inventory, and the policy contract gives a policy each address once and in
/// order (`pcitrack_runtime` `contract::inventory`), which is how a policy finds a VF's PF.
/// `discover` and sysfs never repeat one; a file edited by hand, or two hosts' files joined,
/// can.
///
/// # Errors
///
/// The first repeated address, and how many times it is listed.
pub fn each_address_once(devices: &[Device]) -> anyhow::Result<()> {
    if let Some(at) = devices
        .windows(2)
        .position(|w| w[0].address == w[1].address)
    {
        let address = devices[at].address;
        let times = devices[at..]
            .iter()
            .take_while(|d| d.address == address)
            .count();
        anyhow::bail!(
            "device {address} is listed {times} times: a list of devices is one host's \
             inventory, each address once (as `pcitrack discover` writes it)"
        );
    }
    Ok(())
}

/// Below this size a file is read and parsed on one thread: a thread costs more than it saves.
const PARALLEL_MIN_BYTES: usize = 256 << 10;

/// The whole of `file`. A large file is read in as many parts as there are threads, each
/// part by its own thread into its place in one buffer: the kernel's copy into the buffer
/// and the first touch of its pages are most of the read, and they divide.
fn read_file(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let threads = super::output::threads();
    let f = std::fs::File::open(file)?;
    let meta = f.metadata()?;
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    if threads < 2 || len < PARALLEL_MIN_BYTES || !meta.is_file() {
        return std::fs::read(file);
    }
    let mut bytes = vec![0u8; len];
    let part = len.div_ceil(threads);
    let read = std::thread::scope(|s| {
        let workers: Vec<_> = bytes
            .chunks_mut(part)
            .enumerate()
            .map(|(i, chunk)| {
                let f = &f;
                s.spawn(move || f.read_exact_at(chunk, (i * part) as u64))
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("a reading thread panicked"))
    });
    // A file that changed size while it was read (shorter: an early end; longer: a byte
    // past the length) is read again whole, as `std::fs::read` sees it.
    match read {
        Ok(()) if f.read_at(&mut [0u8], len as u64)? == 0 => Ok(bytes),
        Ok(()) => std::fs::read(file),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => std::fs::read(file),
        Err(e) => Err(e),
    }
}

/// `bytes` (a JSON list of device records) parsed as serde_json parses it, on up to
/// `threads` threads: the records in order, in one or more parts.
///
/// The list is cut into parts at guessed element boundaries (a `},` then `{` near each
/// `k/threads` of the text) and each part is checked for UTF-8 and parsed on its own thread,
/// element by element (a cut is at an ASCII byte, so the text is UTF-8 exactly when every
/// part is). A guess could fall inside a string; it is proven when the part before it,
/// parsed from a proven start, ends exactly there (the first part starts at the list's `[`).
/// Anything short of that (a guess disproven, any syntax or record error, a part that is
/// not UTF-8) parses the whole file again on this thread with serde_json, so the result,
/// and an error's text (its line and column), are exactly the sequential parse's.
///
/// `finish` is applied to each part on the thread that parsed it (the file's order when it
/// does nothing).
fn parse_list(
    bytes: &[u8],
    threads: usize,
    finish: fn(&mut [Device]),
) -> serde_json::Result<Vec<Vec<Device>>> {
    let finished = |mut part: Vec<Device>| {
        finish(&mut part);
        part
    };
    let whole = || whole_list(bytes).map(|d| vec![finished(d)]);
    if threads < 2 || bytes.len() < PARALLEL_MIN_BYTES {
        return parse_part(bytes, 0, None).map_or_else(whole, |d| Ok(vec![finished(d)]));
    }
    let mut starts = vec![0];
    for k in 1..threads {
        let from = (bytes.len() * k / threads).max(*starts.last().expect("not empty"));
        match element_start_after(bytes, from) {
            Some(at) if at > *starts.last().expect("not empty") => starts.push(at),
            _ => break,
        }
    }
    if starts.len() < 2 {
        return whole();
    }
    let parts: Vec<Option<Vec<Device>>> = std::thread::scope(|s| {
        let workers: Vec<_> = starts
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &at)| {
                let end = starts.get(i + 1).copied();
                s.spawn(move || parse_part(bytes, at, end).map(finished))
            })
            .collect();
        let first = parse_part(bytes, 0, Some(starts[1])).map(finished);
        std::iter::once(first)
            .chain(
                workers
                    .into_iter()
                    .map(|w| w.join().expect("a parsing thread panicked")),
            )
            .collect()
    });
    match parts.into_iter().collect::<Option<Vec<_>>>() {
        Some(parts) => Ok(parts),
        None => whole(),
    }
}

/// The whole file parsed by serde_json: as text when it is UTF-8, else as bytes (serde_json
/// skips an unknown field's string unread, whatever its encoding: a file that is not UTF-8
/// throughout is parsed as it always was).
fn whole_list(bytes: &[u8]) -> serde_json::Result<Vec<Device>> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// JSON's insignificant whitespace.
fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && matches!(bytes[at], b' ' | b'\t' | b'\n' | b'\r') {
        at += 1;
    }
    at
}

/// The first `{` at or after `from` that follows `},` (whitespace between): where a list
/// element would start, if that `},` is not inside a string.
fn element_start_after(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let close = at + bytes.get(at..)?.windows(2).position(|w| w == b"},")?;
        let open = skip_whitespace(bytes, close + 2);
        if bytes.get(open) == Some(&b'{') {
            return Some(open);
        }
        at = close + 2;
    }
}

/// The records of the list `bytes` from `start` (0: the list's beginning; else the first
/// byte of an element) up to the element starting at `end`, or to the list's end and the
/// end of the text when `end` is `None`. `None` when the text there is not that: not UTF-8,
/// a syntax or record error, or no element starting exactly at `end`.
fn parse_part(bytes: &[u8], start: usize, end: Option<usize>) -> Option<Vec<Device>> {
    // The part alone: positions below are in it, and its end is `end`'s place.
    let text = std::str::from_utf8(&bytes[start..end.unwrap_or(bytes.len())]).ok()?;
    let (bytes, end) = (text.as_bytes(), end.map(|_| text.len()));
    let mut at = 0;
    if start == 0 {
        at = skip_whitespace(bytes, at);
        if bytes.get(at) != Some(&b'[') {
            return None;
        }
        at = skip_whitespace(bytes, at + 1);
    }
    let mut devices = Vec::new();
    loop {
        match end {
            Some(end) if at == end => return Some(devices),
            Some(end) if at > end => return None,
            _ => {}
        }
        // The layout `discover` writes, read directly; anything else by serde_json.
        let (device, size) = match pcitrack_model::device_prefix(&text[at..]) {
            Some(read) => read,
            None => {
                let mut element =
                    serde_json::Deserializer::from_str(&text[at..]).into_iter::<Device>();
                let device = element.next()?.ok()?;
                (device, element.byte_offset())
            }
        };
        if devices.is_empty() {
            // Room for the part at the first record's size: no growing copies after.
            let part = text.len() - at;
            devices.reserve(part / size.max(1) + 1);
        }
        devices.push(device);
        at = skip_whitespace(bytes, at + size);
        match bytes.get(at) {
            Some(b',') => at = skip_whitespace(bytes, at + 1),
            Some(b']') if end.is_none() => {
                return (skip_whitespace(bytes, at + 1) == bytes.len()).then_some(devices);
            }
            _ => return None,
        }
    }
}

/// The records of `parts` (a list in order, cut in parts) as one list sorted by address,
/// stably: each part sorted, then the parts merged ([`merge_sorted`]).
fn join_by_address(mut parts: Vec<Vec<Device>>) -> Vec<Device> {
    for part in &mut parts {
        sort_by_address(part);
    }
    merge_sorted(parts)
}

/// `parts` (a list in order, cut in parts, each part sorted by address) merged into one
/// list sorted by address, stably: into the first part, grown once.
fn merge_sorted(parts: Vec<Vec<Device>>) -> Vec<Device> {
    let total: usize = parts.iter().map(Vec::len).sum();
    let mut parts = parts.into_iter();
    let mut devices = parts.next().unwrap_or_default();
    devices.reserve_exact(total - devices.len());
    for part in parts {
        merge_into(&mut devices, part);
    }
    devices
}

/// Merges `later` (sorted by address, records that came after `devices`' in the file)
/// into `devices` (sorted by address), stably: equal addresses keep `devices`' records
/// first. Only the overlap is merged: `devices`' records up to `later`'s first address stay
/// where they are, the rest of `devices` is set aside and merged with `later` onto the end.
/// Parts of one file overlap little (a file is one host's list, or several hosts' one after
/// another), so most records stay put and the rest are moved twice at most. A part following
/// in address order is appended; one that comes wholly before sets all of `devices` aside,
/// so the records are briefly held twice (as a merge into a new list would).
fn merge_into(devices: &mut Vec<Device>, later: Vec<Device>) {
    let key = |d: &Device| packed::address_key(d.address);
    let Some(first) = later.first().map(key) else {
        return;
    };
    let stay = devices.partition_point(|d| key(d) <= first);
    let set_aside = devices.split_off(stay);
    devices.reserve(set_aside.len() + later.len());
    let (mut mine, mut theirs) = (
        set_aside.into_iter().peekable(),
        later.into_iter().peekable(),
    );
    loop {
        let next = match (mine.peek(), theirs.peek()) {
            (Some(m), Some(t)) if key(m) <= key(t) => mine.next(),
            (_, Some(_)) => theirs.next(),
            (Some(_), None) => mine.next(),
            (None, None) => break,
        };
        devices.extend(next);
    }
}

/// Drops `value` on a thread of its own: freeing a large allocation (its pages handed back
/// to the kernel) is then off the way of what follows. The process may end first. Where no
/// thread can be started, the value is dropped here.
fn drop_aside<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new().spawn(move || drop(value));
}

/// Sorts `devices` by address, stably, moving each record at most once: the order is found
/// on (address, position) keys, then applied by following its cycles. A merge sort of the
/// records themselves moved each of them (a few hundred bytes) once per merge pass, and a
/// file is often out of order (several hosts' inventories, or one edited by hand).
fn sort_by_address(devices: &mut [Device]) {
    if devices.is_sorted_by_key(|d| d.address) {
        return;
    }
    // The positions make the keys distinct: unstable is stable here.
    let mut keys: Vec<u128> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| u128::from(packed::address_key(d.address)) << 64 | i as u128)
        .collect();
    keys.sort_unstable();
    // `from[k]`: where the record that goes to `k` is now.
    let mut from: Vec<u32> = keys.into_iter().map(|k| k as u32).collect();
    for start in 0..from.len() {
        let mut at = start;
        // Each swap puts one record in its place; a cycle's last is in place by then.
        while from[at] as usize != start && from[at] as usize != at {
            let next = from[at] as usize;
            devices.swap(at, next);
            from[at] = at as u32;
            at = next;
        }
        from[at] = at as u32;
    }
}

fn scan(root: &std::path::Path) -> anyhow::Result<Vec<Device>> {
    let report = pcitrack_discovery::scan(root);
    warn_skipped(&report);
    Ok(report.devices)
}

/// The NUMA node sockets of the tree `source` reads (none for a devices file, whose records
/// carry no topology): what the policies' device facts (`host.get-device-facts`) give as a
/// device's socket.
pub fn read_node_sockets(source: &DeviceSource, config: &Config) -> pcitrack_runtime::NodeSockets {
    if source.devices.is_some() {
        return pcitrack_runtime::NodeSockets::default();
    }
    let root = source
        .sysfs_root
        .clone()
        .unwrap_or_else(|| config.sysfs_root());
    let topology = pcitrack_discovery::numa_topology(&root);
    crate::pipeline::node_sockets(&crate::ops::host_cells(&topology))
}

/// Names every device sysfs could not read, on stderr; the others are used as usual.
pub fn warn_skipped(report: &pcitrack_discovery::ScanReport) {
    for s in &report.skipped {
        eprintln!("pcitrack: skipped {}: {}", s.entry, s.reason);
    }
}

#[cfg(test)]
mod tests {
    use pcitrack_model::{DevType, Device, PciAddress};

    /// Devices in a scrambled order, with repeated addresses told apart by their vendor id
    /// (the file's order among them must stay).
    fn scrambled(n: u32, seed: u64) -> Vec<Device> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        (0..n)
            .map(|i| {
                let r = next() % (n / 2 + 1);
                let address = PciAddress {
                    domain: r / 256,
                    bus: (r % 256) as u8,
                    slot: 0,
                    function: 0,
                };
                Device::new(address, i as u16, 0x154c, DevType::Pci)
            })
            .collect()
    }

    /// A list large enough to be cut: `n` records, compact or pretty.
    fn list_text(n: u32, pretty: bool) -> String {
        let devices = scrambled(n, 7);
        if pretty {
            serde_json::to_string_pretty(&devices).unwrap()
        } else {
            serde_json::to_string(&devices).unwrap()
        }
    }

    #[test]
    fn a_list_cut_into_parts_parses_as_the_whole_with_every_guess_proven() {
        for pretty in [false, true] {
            let text = list_text(4000, pretty);
            assert!(text.len() > 2 * super::PARALLEL_MIN_BYTES);
            let whole: Vec<Device> = serde_json::from_str(&text).unwrap();
            for threads in [2, 3, 5] {
                assert_eq!(
                    super::parse_list(text.as_bytes(), threads, |_| {})
                        .unwrap()
                        .concat(),
                    whole
                );
            }
            // The parallel path itself, not its fallback: the parts end where the guesses are.
            let mid = super::element_start_after(text.as_bytes(), text.len() / 2).unwrap();
            let head =
                super::parse_part(text.as_bytes(), 0, Some(mid)).expect("the guess is proven");
            let tail = super::parse_part(text.as_bytes(), mid, None).expect("the tail parses");
            assert_eq!(head.len() + tail.len(), whole.len());
            assert_eq!([head, tail].concat(), whole);
        }
    }

    #[test]
    fn a_guess_inside_a_string_is_disproven_and_the_whole_is_parsed() {
        let mut values: Vec<serde_json::Value> =
            serde_json::from_str(&list_text(3000, false)).unwrap();
        for v in &mut values {
            v["note"] = "x},{y".into();
        }
        let text = serde_json::to_string(&values).unwrap();
        let note = text.len() / 2 + text[text.len() / 2..].find("x},{y").unwrap();
        let mid = super::element_start_after(text.as_bytes(), note).unwrap();
        assert!(text[mid..].starts_with("{y"), "the guess falls in a note");
        assert_eq!(super::parse_part(text.as_bytes(), 0, Some(mid)), None);
        let whole: Vec<Device> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            super::parse_list(text.as_bytes(), 2, |_| {})
                .unwrap()
                .concat(),
            whole
        );
    }

    #[test]
    fn a_part_that_is_not_utf8_is_parsed_with_the_whole_file_as_bytes() {
        // The last record carries an unknown field whose string holds a byte that is not
        // UTF-8: the last part fails its check, and the file is parsed as bytes, as a file
        // that is not UTF-8 always was (serde_json skips the string unread).
        let mut bytes = list_text(4000, false).into_bytes();
        let close = bytes.len() - 2;
        assert_eq!(&bytes[close..], b"}]");
        bytes.splice(close..close, b",\"note\":\"\xff\"".iter().copied());
        assert!(std::str::from_utf8(&bytes).is_err());
        let whole: Vec<Device> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(whole.len(), 4000);
        for threads in [1, 2, 3] {
            assert_eq!(
                super::parse_list(&bytes, threads, |_| {}).unwrap().concat(),
                whole
            );
        }
    }

    #[test]
    fn an_error_anywhere_is_the_whole_parse_error() {
        let text = list_text(4000, false);
        let at = text.len() * 9 / 10;
        // A product id (`scrambled` gives every device 154c) made "z54c".
        let bad_at = at + text[at..].find("\"154c\"").unwrap();
        let mut bad = text.clone();
        bad.replace_range(bad_at + 1..bad_at + 2, "z");
        for text in [bad, format!("{text} x"), text[..text.len() - 1].to_string()] {
            let want = serde_json::from_str::<Vec<Device>>(&text)
                .unwrap_err()
                .to_string();
            let got = super::parse_list(text.as_bytes(), 2, |_| {})
                .unwrap_err()
                .to_string();
            assert_eq!(got, want);
        }
    }

    /// `devices` sorted by address as a stable sort orders them.
    fn stably_sorted(devices: &[Device]) -> Vec<Device> {
        let mut stable = devices.to_vec();
        stable.sort_by_key(|d| d.address);
        stable
    }

    #[test]
    fn a_file_parsed_and_sorted_in_parts_then_merged_is_in_stable_order() {
        // Addresses repeat (`scrambled` draws from n/2 + 1), across the parts too.
        let devices = scrambled(4000, 11);
        let text = serde_json::to_string(&devices).unwrap();
        for threads in [1, 2, 3, 5] {
            let parts =
                super::parse_list(text.as_bytes(), threads, super::sort_by_address).unwrap();
            assert_eq!(
                parts.len(),
                threads,
                "{threads} threads: cut in as many parts"
            );
            for part in &parts {
                assert!(part.is_sorted_by_key(|d| d.address), "{threads} threads");
            }
            assert_eq!(
                super::merge_sorted(parts),
                stably_sorted(&devices),
                "{threads} threads"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(200))]

        /// Parts sorted on their own then merged give the order of one stable sort of
        /// the whole list, whatever the addresses repeated within and across the parts.
        #[test]
        fn parts_sorted_then_merged_give_the_order_of_a_stable_sort(
            parts in proptest::collection::vec(
                proptest::collection::vec(0u8..12, 0..40),
                0..5,
            ),
        ) {
            let mut n = 0u16;
            let parts: Vec<Vec<Device>> = parts
                .iter()
                .map(|part| {
                    part.iter()
                        .map(|&bus| {
                            n += 1;
                            // The vendor id is the record's place in the file.
                            let address = PciAddress { domain: 0, bus, slot: 0, function: 0 };
                            Device::new(address, n, 0x154c, DevType::Pci)
                        })
                        .collect()
                })
                .collect();
            let stable = stably_sorted(&parts.concat());
            proptest::prop_assert_eq!(&super::join_by_address(parts.clone()), &stable);
            let sorted: Vec<Vec<Device>> = parts.iter().map(|p| stably_sorted(p)).collect();
            proptest::prop_assert_eq!(&super::merge_sorted(sorted), &stable);
        }
    }

    #[test]
    fn sorting_by_address_gives_the_order_of_a_stable_sort() {
        for (n, seed) in [(0, 1), (1, 2), (2, 3), (7, 4), (100, 5), (5000, 6)] {
            let mut ours = scrambled(n, seed);
            let mut stable = ours.clone();
            stable.sort_by_key(|d| d.address);
            ours = super::join_by_address(vec![ours]);
            assert_eq!(ours, stable, "{n} devices");
            // Already in order: left as it is.
            ours = super::join_by_address(vec![ours]);
            assert_eq!(ours, stable, "{n} devices, sorted again");
            // In parts (a file parsed on several threads), in order or not.
            for parts in [stable.clone(), scrambled(n, seed)] {
                let third = parts.len() / 3;
                let mut rest = parts;
                let tail = rest.split_off(2 * third);
                let middle = rest.split_off(third);
                let joined = super::join_by_address(vec![rest, middle, tail]);
                assert_eq!(joined, stable, "{n} devices in 3 parts");
            }
        }
    }
}
