//! oslo.utils' `strutils.bool_from_string`, the one reading of a boolean word in pcitrack, and
//! oslo.config's `BoolOpt` ([`config_bool`]), the one reading of a configuration boolean.
//!
//! Nova reads `remote_managed` with the lenient form (device_spec in `nova/pci/devspec.py`,
//! pool filtering in `nova/pci/stats.py` `_filter_pools_for_unrequested_remote_managed_devices`)
//! and the `managed`, `live_migratable` and `one_time_use` tags with the strict form
//! (`devspec.py` `_normalize_device_spec_tag`). oslo's rule (oslo.utils 10.2, `strutils.py`):
//! a `bool` is itself; anything else becomes `str(subject)`, is stripped with Python's
//! `str.strip()` and lower-cased with `str.lower()`, then looked up in two word lists.
//! The lenient form answers `false` for anything else; the strict form raises `ValueError`
//! naming the subject (unstripped) and the accepted words, sorted.
//!
//! The case-insensitive comparison is ASCII-only, which is exact here: no non-ASCII
//! character lower-cases (Python's `str.lower()`, not `casefold()`) to one of the ASCII
//! letters of the word lists (`'K'`, U+212A, becomes `'k'`, which no word has; `'ſ'` stays
//! `'ſ'`). `tests/python_table.rs` checks this against oslo itself.

use thiserror::Error;

use crate::python;

/// The words that read as true (oslo's `TRUE_STRINGS`).
pub const TRUE_STRINGS: [&str; 6] = ["1", "t", "true", "on", "y", "yes"];

/// The words that read as false (oslo's `FALSE_STRINGS`).
pub const FALSE_STRINGS: [&str; 6] = ["0", "f", "false", "off", "n", "no"];

/// oslo's strict refusal: the subject is neither a true nor a false word.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "Unrecognized value '{subject}', acceptable values are: '0', '1', 'f', 'false', 'n', \
     'no', 'off', 'on', 't', 'true', 'y', 'yes'"
)]
pub struct UnrecognizedBool {
    /// The subject as given (`str(subject)`, not stripped), as oslo prints it.
    pub subject: String,
}

/// The word `subject` is, after Python's `strip()`, ignoring ASCII case: `Some(true)` for a
/// true word, `Some(false)` for a false word.
fn read(subject: &str) -> Option<bool> {
    let s = python::strip(subject);
    // Every word is 1 to 5 ASCII bytes; anything longer is no word (and is not compared).
    if s.is_empty() || s.len() > 5 {
        return None;
    }
    if TRUE_STRINGS.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if FALSE_STRINGS.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// oslo's `bool_from_string(subject)` (lenient, `default=False`) on a Python `str`: true
/// for `1`, `t`, `true`, `on`, `y`, `yes` in any case with any Python white space around
/// them, false for anything else. Does not allocate.
pub fn bool_from_string(subject: &str) -> bool {
    read(subject) == Some(true)
}

/// oslo's `bool_from_string(subject, strict=True)` on a Python `str`.
///
/// # Errors
///
/// [`UnrecognizedBool`], with oslo's message, when `subject` is neither a true nor a false
/// word.
pub fn bool_from_string_strict(subject: &str) -> Result<bool, UnrecognizedBool> {
    read(subject).ok_or_else(|| UnrecognizedBool {
        subject: subject.to_string(),
    })
}

/// The words oslo.config's `BoolOpt` reads as true (`oslo_config.types.Boolean.TRUE_VALUES`).
pub const CONFIG_TRUE_VALUES: [&str; 4] = ["true", "1", "on", "yes"];

/// The words oslo.config's `BoolOpt` reads as false (`Boolean.FALSE_VALUES`).
pub const CONFIG_FALSE_VALUES: [&str; 4] = ["false", "0", "off", "no"];

/// oslo.config's refusal of a boolean option's value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Unexpected boolean value '{value}'")]
pub struct UnexpectedBool {
    /// The value as given.
    pub value: String,
}

/// oslo.config's `BoolOpt` (`oslo_config.types.Boolean`, oslo.config 10), which reads
/// nova.conf options such as `[pci] report_in_placement`: a different rule from
/// `bool_from_string`, with fewer words (`y`, `t`, `n`, `f` are refused) and no stripping,
/// compared after Python's `str.lower()` (ASCII-only is exact here for the same reason as
/// above).
///
/// # Errors
///
/// [`UnexpectedBool`], with oslo.config's message, for any other word.
pub fn config_bool(value: &str) -> Result<bool, UnexpectedBool> {
    if CONFIG_TRUE_VALUES
        .iter()
        .any(|w| value.eq_ignore_ascii_case(w))
    {
        Ok(true)
    } else if CONFIG_FALSE_VALUES
        .iter()
        .any(|w| value.eq_ignore_ascii_case(w))
    {
        Ok(false)
    } else {
        Err(UnexpectedBool {
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bool_is_oslo_configs_word_list() {
        assert_eq!(config_bool("Yes"), Ok(true));
        assert_eq!(config_bool("OFF"), Ok(false));
        assert_eq!(
            config_bool("y").unwrap_err().to_string(),
            "Unexpected boolean value 'y'"
        );
        assert!(config_bool(" yes").is_err());
    }

    #[test]
    fn regression_oslo_bool_x1c_true_reads_true_everywhere() {
        assert!(bool_from_string("\u{1c}true"));
        assert_eq!(bool_from_string_strict("\u{1f}OFF\u{1c}"), Ok(false));
    }

    #[test]
    fn strict_message_is_oslos() {
        assert_eq!(
            bool_from_string_strict(" invalid").unwrap_err().to_string(),
            "Unrecognized value ' invalid', acceptable values are: '0', '1', 'f', 'false', \
             'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
        );
        let mut sorted: Vec<&str> = TRUE_STRINGS.iter().chain(&FALSE_STRINGS).copied().collect();
        sorted.sort_unstable();
        let listed: Vec<String> = sorted.iter().map(|w| format!("'{w}'")).collect();
        assert!(
            UnrecognizedBool {
                subject: String::new()
            }
            .to_string()
            .ends_with(&listed.join(", "))
        );
    }
}
