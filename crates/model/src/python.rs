//! Python's reading of text, where Nova's rules depend on it: which characters are white
//! space (`str.isspace()`) and what `str.strip()` removes.
//!
//! One definition for every room (the device_spec matcher, the tagger, the runtime and the
//! tracker): copies of it drifted once, `"\x1ctrue"` reading true in one room and false in
//! another, because Rust's `trim()` and Python's `strip()` disagree on four ASCII characters.
//! The set below is CPython 3.11's (Unicode 14.0): a character is white space when its
//! bidirectional class is WS, B or S or its category is Zs. `tests/python_table.rs` checks
//! it against Python's own answer for every code point.

/// Python's `str.isspace()` for one character.
///
/// Rust's [`char::is_whitespace`] (the Unicode `White_Space` property) is the same set minus
/// U+001C..=U+001F, the ASCII information separators, which Python counts as white space
/// (their bidirectional class is B or S).
pub const fn is_space(c: char) -> bool {
    matches!(
        c,
        '\u{09}'..='\u{0d}'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `str.strip()` with no argument: white space ([`is_space`]) removed from both
/// ends.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python's `str.lower() == other.lower()`, without allocating when both are ASCII.
///
/// Rust's [`str::to_lowercase`] and Python's `str.lower()` both apply Unicode's full
/// lower-case mapping (`'İ'` becomes `"i̇"`, a final `'Σ'` becomes `'ς'`), so the comparison
/// agrees with Python's wherever both use the same Unicode version.
pub fn eq_lower(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_information_separators_are_python_white_space() {
        for c in '\u{1c}'..='\u{1f}' {
            assert!(is_space(c) && !c.is_whitespace(), "{c:?}");
        }
        assert_eq!(strip("\u{1c}true\u{1f}"), "true");
        assert_eq!(strip("\u{200b}true"), "\u{200b}true");
    }

    #[test]
    fn lower_case_comparison_follows_python() {
        assert!(eq_lower("TRUE", "true"));
        // Python: "ΟΔΟΣ".lower() == "οδος" (final sigma), != "οδοσ".
        assert!(eq_lower(
            "\u{39f}\u{394}\u{39f}\u{3a3}",
            "\u{3bf}\u{3b4}\u{3bf}\u{3c2}"
        ));
        assert!(!eq_lower(
            "\u{39f}\u{394}\u{39f}\u{3a3}",
            "\u{3bf}\u{3b4}\u{3bf}\u{3c3}"
        ));
        assert!(!eq_lower("\u{130}", "i"));
    }
}
