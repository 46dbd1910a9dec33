//! Python's reading of text, where Nova's rules depend on it: which characters are white
//! space (`str.isspace()`), what `str.strip()` removes, and how `repr()` prints a `str` (Nova's
//! and jsonschema's messages quote values that way).
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

/// Appends Python's `repr()` of a `str` to `out`: single quotes unless the text holds a `'` and
/// no `"`; backslash escapes for the quote, the backslash, `\n`, `\r`, `\t` and characters
/// that are not printable (`\xNN`, `\uNNNN`, `\UNNNNNNNN`), as CPython's `unicode_repr` does.
/// The printable test is exact for ASCII and Latin-1 and for the usual invisible characters
/// (format and separator code points), which is what the messages meet.
pub fn str_repr_into(s: &str, out: &mut String) {
    use std::fmt::Write;
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if printable(c) => out.push(c),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
}

/// Python's `repr()` of a `str` (see [`str_repr_into`]).
pub fn str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    str_repr_into(s, &mut out);
    out
}

/// Python's `str.isprintable()` for one character, exact for ASCII and Latin-1 and for the
/// usual invisible code points (format characters including the tag characters, separators,
/// private use in every plane).
fn printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x20 || (0x7f..=0xa0).contains(&u) || u == 0xad {
        return false;
    }
    !matches!(u,
        0x1680 | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x3000 | 0xfeff
        | 0xfff9..=0xfffb | 0xe000..=0xf8ff | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_repr_is_pythons() {
        // Python 3.11's own answers: repr(s) for each s.
        let cases = [
            ("it's", r#""it's""#),
            ("a\"b'c", r#"'a"b\'c'"#),
            ("\x1c", r"'\x1c'"),
            ("\u{200b}", r"'\u200b'"),
            ("\u{e9}\t\\", "'\u{e9}\\t\\\\'"),
            ("\u{1f600}", "'\u{1f600}'"),
            ("\u{e0001}", r"'\U000e0001'"),
        ];
        for (s, want) in cases {
            assert_eq!(str_repr(s), want, "repr of {s:?}");
        }
    }

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
