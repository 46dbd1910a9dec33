//! oslo.utils' `bool_from_string`, which Nova uses for `remote_managed` (lenient) and for
//! the `managed`, `live_migratable` and `one_time_use` tags (strict).

use crate::value::Value;

const TRUE_STRINGS: [&str; 6] = ["1", "t", "true", "on", "y", "yes"];
const FALSE_STRINGS: [&str; 6] = ["0", "f", "false", "off", "n", "no"];

/// The lenient form: a JSON `true`, or a text that reads as true; anything else is false.
pub(crate) fn lenient(value: Option<&Value>) -> bool {
    match value {
        None => false,
        Some(v) => strict(v) == Ok(true),
    }
}

/// The strict form: `Ok(bool)`, or `Err(text)` where text is oslo's reason for refusing it.
pub(crate) fn strict(value: &Value) -> Result<bool, String> {
    if let Value::Bool(b) = value {
        return Ok(*b);
    }
    let subject = value.py_str();
    let lowered = crate::pyint::py_strip(&subject).to_lowercase();
    if TRUE_STRINGS.contains(&lowered.as_str()) {
        Ok(true)
    } else if FALSE_STRINGS.contains(&lowered.as_str()) {
        Ok(false)
    } else {
        let mut acceptable: Vec<&str> =
            TRUE_STRINGS.iter().chain(&FALSE_STRINGS).copied().collect();
        acceptable.sort_unstable();
        let acceptable: Vec<String> = acceptable.iter().map(|s| format!("'{s}'")).collect();
        Err(format!(
            "Unrecognized value '{subject}', acceptable values are: {}",
            acceptable.join(", ")
        ))
    }
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
        assert!(!lenient(None));
        assert_eq!(strict(&s("Off")), Ok(false));
        assert_eq!(
            strict(&s("invalid")).unwrap_err(),
            "Unrecognized value 'invalid', acceptable values are: '0', '1', 'f', 'false', \
             'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
        );
        assert!(strict(&Value::Float(1.0)).is_err());
    }
}
