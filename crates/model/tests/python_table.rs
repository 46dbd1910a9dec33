//! pcitrack-model's `python` and `oslo` modules against Python's own answers.
//!
//! `data/python_table.json` is written by `data/gen_python_table.py` running CPython with
//! oslo.utils (the versions are recorded in the file): every Unicode code point's
//! `str.isspace()`, and for a few hundred tricky strings `str.strip()` and oslo's lenient
//! and strict `bool_from_string`. A proptest then builds random strings from white space,
//! near-white-space and boolean words and checks them against a restatement of the table's
//! semantics.

use std::collections::BTreeSet;

use pcitrack_model::oslo::{self, FALSE_STRINGS, TRUE_STRINGS};
use pcitrack_model::python;
use pcitrack_model::tag_value::{TagValue, bool_from_tag};
use proptest::prelude::*;
use serde_json::Value;

fn table() -> Value {
    let text = include_str!("data/python_table.json");
    serde_json::from_str(text).expect("python_table.json is JSON")
}

fn python_spaces() -> BTreeSet<u32> {
    table()["isspace"]
        .as_array()
        .expect("isspace is a list")
        .iter()
        .map(|c| c.as_u64().expect("a code point") as u32)
        .collect()
}

#[test]
fn isspace_agrees_with_python_for_every_code_point() {
    let spaces = python_spaces();
    assert!(
        spaces.contains(&0x1c) && spaces.contains(&0x3000),
        "{spaces:?}"
    );
    for u in 0..=0x10ffffu32 {
        // Surrogates are not Rust chars; Python says they are not white space.
        let Some(c) = char::from_u32(u) else {
            assert!(!spaces.contains(&u));
            continue;
        };
        assert_eq!(python::is_space(c), spaces.contains(&u), "U+{u:04X}");
    }
}

#[test]
fn strip_and_bool_from_string_agree_with_oslo_on_every_row() {
    let t = table();
    let rows = t["strings"].as_array().expect("strings is a list");
    assert!(rows.len() > 400, "{} rows", rows.len());
    for row in rows {
        let s = row["s"].as_str().expect("s");
        assert_eq!(
            python::strip(s),
            row["strip"].as_str().unwrap(),
            "strip {s:?}"
        );
        let lenient = row["lenient"].as_bool().unwrap();
        assert_eq!(oslo::bool_from_string(s), lenient, "lenient {s:?}");
        // The carried form of a string reads the same.
        assert_eq!(
            bool_from_tag(&TagValue::Str(s).carried()),
            lenient,
            "tag {s:?}"
        );
        match (&row["strict"], oslo::bool_from_string_strict(s)) {
            (Value::Bool(want), Ok(got)) => assert_eq!(*want, got, "strict {s:?}"),
            (Value::Object(e), Err(got)) => {
                assert_eq!(
                    e["error"].as_str().unwrap(),
                    got.to_string(),
                    "strict {s:?}"
                )
            }
            (want, got) => panic!("strict {s:?}: oslo {want}, pcitrack {got:?}"),
        }
    }
}

#[test]
fn regression_oslo_bool_x1c_true_reads_true_everywhere() {
    // The row the bug was about, straight from oslo's answers.
    let t = table();
    let row = t["strings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["s"] == "\u{1c}true")
        .expect("the table has \\x1ctrue");
    assert_eq!(row["lenient"], true);
    assert!(oslo::bool_from_string("\u{1c}true"));
    assert!(bool_from_tag("\u{1c}true"));
}

/// The table's semantics restated: strip Python white space, lower-case, look up the words.
fn restated(s: &str, spaces: &BTreeSet<u32>) -> Option<bool> {
    let stripped = s.trim_matches(|c: char| spaces.contains(&(c as u32)));
    let lowered = stripped.to_lowercase();
    if TRUE_STRINGS.contains(&lowered.as_str()) {
        Some(true)
    } else if FALSE_STRINGS.contains(&lowered.as_str()) {
        Some(false)
    } else {
        None
    }
}

fn piece() -> impl Strategy<Value = String> {
    let spaces: Vec<char> = python_spaces()
        .into_iter()
        .filter_map(char::from_u32)
        .collect();
    let near: Vec<char> = vec![
        '\u{0}', '\u{1}', '\u{1b}', '\u{7f}', '\u{180e}', '\u{200b}', '\u{2060}', '\u{feff}',
        '\u{212a}', '\u{17f}', '\u{130}', '\u{131}',
    ];
    let words: Vec<&'static str> = TRUE_STRINGS
        .iter()
        .chain(&FALSE_STRINGS)
        .copied()
        .chain(["TRUE", "Yes", "oFf", "No", "2", "truee", ""])
        .collect();
    prop_oneof![
        4 => prop::sample::select(spaces).prop_map(String::from),
        1 => prop::sample::select(near).prop_map(String::from),
        3 => prop::sample::select(words).prop_map(String::from),
    ]
}

proptest! {
    #[test]
    fn random_strings_agree_with_the_restated_table(
        parts in prop::collection::vec(piece(), 0..6)
    ) {
        let spaces = python_spaces();
        let s: String = parts.concat();
        let want = restated(&s, &spaces);
        prop_assert_eq!(oslo::bool_from_string(&s), want == Some(true));
        prop_assert_eq!(oslo::bool_from_string_strict(&s).ok(), want);
        prop_assert_eq!(bool_from_tag(&TagValue::Str(&s).carried()), want == Some(true));
    }
}
