//! A call's verdicts as the policy sent them, and each policy's last verdict per device for
//! when a call fails (the contract says a device then keeps its last verdict).
//!
//! Verdicts stay in their wire form, one word per device pointing into the call's tables of
//! tag sets and reasons, checked once. Decoding them into a value per device would cost an
//! allocation-free but atomic reference-count increment per device and per copy, on every
//! call, for thousands of devices; a word costs a copy. The memory keeps whole calls for
//! the same reason: the common case (the same devices as last time) replaces one call's
//! record with the next, and a failure (rare) looks devices up by binary search.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pcitrack_model::PciAddress;
use pcitrack_model::packed::verdict;

/// Tags shared by every device a policy gave the same set to.
pub type Tags = Arc<[(String, String)]>;

/// A verdict taken out of a call, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remembered {
    Abstain,
    Assign(Tags),
    Reject(Arc<str>),
}

/// One device's verdict, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict<'a> {
    Abstain,
    Assign(&'a Tags),
    Reject(&'a Arc<str>),
}

/// A call's verdicts, checked: one word per device asked about, in the order asked, each a
/// valid verdict whose index is inside its table.
#[derive(Debug, Default)]
pub(crate) struct Verdicts {
    words: Vec<u32>,
    sets: Vec<Tags>,
    reasons: Vec<Arc<str>>,
}

/// Why a call's words cannot be believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadWord {
    /// Not a verdict at all.
    Invalid(u32),
    /// Points past the end of its table.
    OutOfRange {
        table: &'static str,
        index: u32,
        len: usize,
    },
}

impl From<BadWord> for crate::error::CallError {
    fn from(bad: BadWord) -> Self {
        crate::error::CallError::Garbage(match bad {
            BadWord::Invalid(w) => format!("{w:#x} is not a verdict word"),
            BadWord::OutOfRange { table, index, len } => {
                format!("{table} index {index} out of range (there are {len})")
            }
        })
    }
}

/// `index` must point inside a table of `len` entries.
pub(crate) fn in_range(table: &'static str, index: u32, len: usize) -> Result<(), BadWord> {
    if (index as usize) < len {
        Ok(())
    } else {
        Err(BadWord::OutOfRange { table, index, len })
    }
}

/// A table of shared values, each entered once however many devices point at it. Values are
/// told apart by pointer: devices given the same set share one `Arc`, and comparing
/// contents would cost more than the table saves. Runs of neighbours usually share a value,
/// so the last one entered answers without hashing.
pub(crate) struct Interner<T: ?Sized> {
    table: Vec<Arc<T>>,
    index: HashMap<*const (), u32>,
    last: Option<(*const (), u32)>,
}

impl<T: ?Sized> Interner<T> {
    pub(crate) fn new() -> Self {
        Self {
            table: Vec::new(),
            index: HashMap::new(),
            last: None,
        }
    }

    /// The index of `value` in the table, entering it if new.
    pub(crate) fn index_of(&mut self, value: &Arc<T>) -> u32 {
        let ptr = Arc::as_ptr(value).cast::<()>();
        if let Some((p, i)) = self.last
            && p == ptr
        {
            return i;
        }
        let table = &mut self.table;
        let i = *self.index.entry(ptr).or_insert_with(|| {
            table.push(value.clone());
            (table.len() - 1) as u32
        });
        self.last = Some((ptr, i));
        i
    }

    /// The values, in the order they were entered.
    pub(crate) fn table(&self) -> &[Arc<T>] {
        &self.table
    }

    pub(crate) fn into_table(self) -> Vec<Arc<T>> {
        self.table
    }
}

impl Verdicts {
    /// Checks every word against the tables.
    pub(crate) fn check(
        words: Vec<u32>,
        sets: Vec<Tags>,
        reasons: Vec<Arc<str>>,
    ) -> Result<Self, BadWord> {
        for &w in &words {
            match verdict::decode(w) {
                verdict::Decoded::Abstain => {}
                verdict::Decoded::Assign(i) => in_range("tag set", i, sets.len())?,
                verdict::Decoded::Reject(i) => in_range("reason", i, reasons.len())?,
                verdict::Decoded::Invalid(w) => return Err(BadWord::Invalid(w)),
            }
        }
        Ok(Self {
            words,
            sets,
            reasons,
        })
    }

    /// Verdicts given one by one (a failed call's recalled ones); devices that were given
    /// the same tag set or reason share one table entry.
    pub(crate) fn from_remembered(verdicts: impl IntoIterator<Item = Remembered>) -> Self {
        let (mut sets, mut reasons) = (Interner::new(), Interner::new());
        let words = verdicts
            .into_iter()
            .map(|v| match v {
                Remembered::Abstain => verdict::ABSTAIN,
                Remembered::Assign(tags) => verdict::assign(sets.index_of(&tags)),
                Remembered::Reject(reason) => verdict::reject(reasons.index_of(&reason)),
            })
            .collect();
        Verdicts {
            words,
            sets: sets.into_table(),
            reasons: reasons.into_table(),
        }
    }

    /// How many devices.
    pub(crate) fn len(&self) -> usize {
        self.words.len()
    }

    /// The verdict for the `i`th device asked about.
    pub(crate) fn get(&self, i: usize) -> Verdict<'_> {
        match verdict::decode(self.words[i]) {
            verdict::Decoded::Assign(s) => Verdict::Assign(&self.sets[s as usize]),
            verdict::Decoded::Reject(r) => Verdict::Reject(&self.reasons[r as usize]),
            // Checked at construction: anything else is an abstention.
            verdict::Decoded::Abstain | verdict::Decoded::Invalid(_) => Verdict::Abstain,
        }
    }

    /// The verdicts in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Verdict<'_>> {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl Verdict<'_> {
    fn to_owned(self) -> Remembered {
        match self {
            Verdict::Abstain => Remembered::Abstain,
            Verdict::Assign(tags) => Remembered::Assign(tags.clone()),
            Verdict::Reject(reason) => Remembered::Reject(reason.clone()),
        }
    }
}

/// Calls remembered before they are folded into one: a chain rarely asks one policy about
/// more than two different sets of devices.
const MAX_CALLS: usize = 4;

/// One remembered call: the devices asked about (sorted) and what the policy said.
#[derive(Debug)]
struct Call {
    addresses: Vec<PciAddress>,
    verdicts: Arc<Verdicts>,
}

impl Call {
    fn recall(&self, address: PciAddress) -> Option<Remembered> {
        let i = self.addresses.binary_search(&address).ok()?;
        Some(self.verdicts.get(i).to_owned())
    }
}

/// Each device's last verdict, as the last calls that asked about it.
#[derive(Debug, Default)]
pub(crate) struct VerdictMemory {
    /// Oldest first; a device's last verdict is in the newest call that has it.
    calls: Mutex<Vec<Call>>,
}

impl VerdictMemory {
    /// Records a call's verdicts for `addresses` (sorted, one per verdict). Older calls about
    /// no other device are forgotten: in the common case this replaces one record with
    /// another and touches no verdict.
    pub(crate) fn record(&self, addresses: Vec<PciAddress>, verdicts: Arc<Verdicts>) {
        debug_assert_eq!(addresses.len(), verdicts.len());
        debug_assert!(addresses.is_sorted());
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.retain(|old| !is_subset(&old.addresses, &addresses));
        calls.push(Call {
            addresses,
            verdicts,
        });
        if calls.len() > MAX_CALLS {
            let folded = fold(&calls);
            *calls = vec![folded];
        }
    }

    /// The last verdict recorded for `address`.
    pub(crate) fn recall(&self, address: PciAddress) -> Option<Remembered> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.iter().rev().find_map(|c| c.recall(address))
    }
}

/// Whether every address of `small` is in `big` (both sorted).
fn is_subset(small: &[PciAddress], big: &[PciAddress]) -> bool {
    if small.len() > big.len() {
        return false;
    }
    if small == big {
        return true;
    }
    let mut big = big.iter();
    small.iter().all(|a| big.any(|b| b == a))
}

/// One call holding every device's last verdict from `calls` (oldest first).
fn fold(calls: &[Call]) -> Call {
    let mut last: Vec<(PciAddress, Remembered)> = Vec::new();
    for call in calls {
        let fresh = call
            .addresses
            .iter()
            .zip(call.verdicts.iter())
            .map(|(a, v)| (*a, v.to_owned()));
        let old = std::mem::take(&mut last);
        let mut old = old.into_iter().peekable();
        for (address, verdict) in fresh {
            while let Some(entry) = old.next_if(|(a, _)| *a < address) {
                last.push(entry);
            }
            old.next_if(|(a, _)| *a == address);
            last.push((address, verdict));
        }
        last.extend(old);
    }
    let (addresses, remembered): (Vec<_>, Vec<_>) = last.into_iter().unzip();
    Call {
        addresses,
        verdicts: Arc::new(Verdicts::from_remembered(remembered)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(f: u8) -> PciAddress {
        PciAddress::new(0, 1, 0, f).unwrap()
    }

    fn verdicts(v: Vec<Remembered>) -> Arc<Verdicts> {
        Arc::new(Verdicts::from_remembered(v))
    }

    fn reject(r: &str) -> Remembered {
        Remembered::Reject(r.into())
    }

    #[test]
    fn later_verdicts_replace_earlier_ones_and_others_stay() {
        let m = VerdictMemory::default();
        m.record(
            vec![a(1), a(3)],
            verdicts(vec![Remembered::Abstain, Remembered::Abstain]),
        );
        m.record(vec![a(2), a(3)], verdicts(vec![reject("x"), reject("y")]));
        assert_eq!(m.recall(a(1)), Some(Remembered::Abstain));
        assert_eq!(m.recall(a(2)), Some(reject("x")));
        assert_eq!(m.recall(a(3)), Some(reject("y")));
        assert_eq!(m.recall(a(4)), None);
        // The same devices again: the older calls are forgotten.
        m.record(
            vec![a(1), a(2), a(3)],
            verdicts(vec![reject("p"), Remembered::Abstain, Remembered::Abstain]),
        );
        assert_eq!(m.calls.lock().unwrap().len(), 1);
        m.record(
            vec![a(1), a(2), a(3)],
            verdicts(vec![Remembered::Abstain, reject("q"), Remembered::Abstain]),
        );
        assert_eq!(m.recall(a(1)), Some(Remembered::Abstain));
        assert_eq!(m.recall(a(2)), Some(reject("q")));
        assert_eq!(m.calls.lock().unwrap().len(), 1);
    }

    #[test]
    fn many_partial_calls_fold_into_one_and_keep_the_newest_verdicts() {
        let m = VerdictMemory::default();
        let tags: Tags = Arc::new([("k".to_string(), "v".to_string())]);
        for f in 0..8u8 {
            // Each call asks about two neighbours; the newest says "f" for both.
            let f2 = (f + 1) % 8;
            let mut addresses = vec![a(f), a(f2)];
            addresses.sort();
            let v = if f % 2 == 0 {
                vec![reject(&f.to_string()), reject(&f.to_string())]
            } else {
                vec![
                    Remembered::Assign(tags.clone()),
                    Remembered::Assign(tags.clone()),
                ]
            };
            m.record(addresses, verdicts(v));
            assert!(m.calls.lock().unwrap().len() <= MAX_CALLS);
        }
        // a(0) was last asked about by the call for 7 (assign), a(f) for f>0 by call f.
        assert_eq!(m.recall(a(0)), Some(Remembered::Assign(tags.clone())));
        for f in 1..8u8 {
            let expected = if f % 2 == 0 {
                reject(&f.to_string())
            } else {
                Remembered::Assign(tags.clone())
            };
            assert_eq!(m.recall(a(f)), Some(expected), "function {f}");
        }
    }

    #[test]
    fn the_interner_enters_each_shared_value_once_by_identity() {
        let (x, y): (Arc<str>, Arc<str>) = ("same".into(), "same".into());
        let mut interner = Interner::new();
        let indices: Vec<u32> = [&x, &x, &y, &x, &y]
            .into_iter()
            .map(|v| interner.index_of(v))
            .collect();
        // Equal contents in two allocations are two entries; the last value is not the only
        // one remembered.
        assert_eq!(indices, [0, 0, 1, 0, 1]);
        assert_eq!(interner.table().len(), 2);
        assert!(Arc::ptr_eq(&interner.into_table()[1], &y));
    }

    #[test]
    fn words_are_checked_against_the_tables() {
        let tags: Tags = Arc::new([]);
        let ok = Verdicts::check(
            vec![verdict::assign(0), verdict::reject(0), verdict::ABSTAIN],
            vec![tags.clone()],
            vec!["no".into()],
        )
        .unwrap();
        assert_eq!(ok.get(0), Verdict::Assign(&tags));
        assert!(matches!(ok.get(1), Verdict::Reject(r) if &**r == "no"));
        assert_eq!(ok.get(2), Verdict::Abstain);
        assert_eq!(
            Verdicts::check(vec![verdict::assign(1)], vec![tags], vec![]).unwrap_err(),
            BadWord::OutOfRange {
                table: "tag set",
                index: 1,
                len: 1
            }
        );
        assert_eq!(
            Verdicts::check(vec![verdict::reject(0)], vec![], vec![]).unwrap_err(),
            BadWord::OutOfRange {
                table: "reason",
                index: 0,
                len: 0
            }
        );
        assert_eq!(
            Verdicts::check(vec![3 << 30], vec![], vec![]).unwrap_err(),
            BadWord::Invalid(3 << 30)
        );
    }
}
