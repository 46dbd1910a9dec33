//! oslo.utils' `bool_from_string` on a spec value, which Nova uses for `remote_managed`
//! (lenient) and for the `managed`, `live_migratable` and `one_time_use` tags (strict).
//!
//! The word lists, Python's white space and oslo's message live once, in
//! [`pcitrack_model::oslo`]; this wrapper adds what needs the JSON-typed value: a JSON
//! boolean is itself, anything else is read as Python's `str(value)`.

use pcitrack_model::oslo;

use crate::value::Value;

/// The lenient form: a JSON `true`, or a value whose `str()` reads as true; anything else
/// (a missing value included: `bool_from_string(None)`) is false.
pub(crate) fn lenient(value: Option<&Value>) -> bool {
    match value {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Str(s)) => oslo::bool_from_string(s),
        Some(other) => oslo::bool_from_string(&other.py_str()),
    }
}

/// The strict form: `Ok(bool)`, or `Err(text)` where text is oslo's reason for refusing it.
pub(crate) fn strict(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Str(s) => oslo::bool_from_string_strict(s),
        other => oslo::bool_from_string_strict(&other.py_str()),
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_and_strict() {
        let s = |t: &str| Value::Str(t.into());
        assert!(lenient(Some(&s(" YES "))));
        assert!(lenient(Some(&Value::Bool(true))));
        assert!(lenient(Some(&Value::Int(1))));
        assert!(!lenient(Some(&s("nope"))));
        assert!(!lenient(Some(&Value::Null)));
        assert!(!lenient(None));
        assert_eq!(strict(&s("Off")), Ok(false));
        assert_eq!(strict(&Value::Int(0)), Ok(false));
        assert_eq!(
            strict(&s("invalid")).unwrap_err(),
            "Unrecognized value 'invalid', acceptable values are: '0', '1', 'f', 'false', \
             'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
        );
        assert_eq!(
            strict(&Value::Float(1.0)).unwrap_err(),
            "Unrecognized value '1.0', acceptable values are: '0', '1', 'f', 'false', \
             'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
        );
    }

    #[test]
    fn regression_oslo_bool_x1c_true_reads_true_everywhere() {
        // Nova's matcher: `"remote_managed": "\x1ctrue"` is remote-managed (Python's
        // str.strip() removes U+001C), and `"managed": "\x1fno"` normalises to "false".
        assert!(lenient(Some(&Value::Str("\u{1c}true".into()))));
        assert_eq!(strict(&Value::Str("\u{1f}no".into())), Ok(false));
        let wl = crate::Whitelist::parse(&[
            r#"{"vendor_id": "8086", "remote_managed": "\u001ctrue", "managed": "\u001fno"}"#,
        ])
        .unwrap();
        assert!(wl.specs()[0].remote_managed());
        assert_eq!(wl.specs()[0].tags().get("managed"), Some("false"));
    }
}
