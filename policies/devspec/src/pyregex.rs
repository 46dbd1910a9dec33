//! Python `re` patterns run on Rust's `regex` crate, with `re.match` semantics.
//!
//! `re.match` is anchored at the start only, so a pattern `p` becomes `^(?:p)` (no `$`):
//! `{"bus": "0"}` matches bus `0a`. The subjects are always short lower-case hex strings,
//! so the Unicode details of `\d`, `\w`, `.` and `$` (which in Python also matches before a
//! final newline) cannot change a result; what matters is which patterns are accepted and
//! what the accepted ones mean. The translation below makes the two syntaxes agree on:
//!
//! * `\Z` (Python's end of text) becomes `\z`;
//! * `{` that does not start a valid quantifier is a literal in Python, so it is escaped;
//!   `{,n}` (Python: 0 to n) becomes `{0,n}`; a lone `}` is escaped;
//! * inside a class, `[`, `&&`, `--`, `~~` are literals in Python but nested classes or
//!   set operations in Rust, so `[`, `&`, `~` and a second `-` are escaped;
//! * an escaped punctuation character (`\<`, `\>`, `\-`, ...) is always a literal in
//!   Python, while Rust gives some of them meaning (`\<` is a word boundary), so it is
//!   written as `\x{..}`;
//! * escapes of ASCII letters that Python refuses (`\p`, `\z`, `\e`, `\h`, `\q`, ...)
//!   are refused here too, although Rust would accept some.
//!
//! Refused although Python accepts them (the `regex` crate has no backtracking, so the
//! spec is rejected at parse time, with Nova's `PciDeviceWrongAddressFormat`):
//! backreferences (`\1`, `(?P=name)`), octal escapes (`\0`), look-around (`(?=`, `(?<=`,
//! `(?!`), conditionals, atomic groups and possessive quantifiers, `(?#comments)`, the
//! `a` and `L` flags, and `\N{NAME}`. Accepted by Rust but refused by Python 3.11, so
//! accepted more liberally here: flags in the middle of a pattern, `(?<name>...)`,
//! `\x{41}`, `a**`.

use regex::bytes::{Regex, RegexBuilder};

/// Compiles `pattern` with `re.match` semantics, or `None` where it must be refused.
///
/// The subjects are ASCII, on which Unicode and ASCII-only matching agree (`.`, `\w`, `\d`,
/// classes, case folding), so the pattern is first compiled without Unicode support, which
/// is several times cheaper to build (the policy re-parses its configuration for every
/// batch). A pattern that needs Unicode mode to be valid (a non-ASCII literal) is compiled
/// with it; validity is decided by the Unicode form, which is what Python's is closest to.
pub(crate) fn compile_match(pattern: &str) -> Option<Regex> {
    let translated = format!("^(?:{})", translate(pattern)?);
    let unicode_ok = || RegexBuilder::new(&translated).build().ok();
    match RegexBuilder::new(&translated).unicode(false).build() {
        Ok(re) if pattern.is_ascii() => Some(re),
        _ => unicode_ok(),
    }
}

/// Python-to-Rust syntax translation (see the module documentation).
pub(crate) fn translate(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                i += 1;
                let e = *chars.get(i)?;
                out.push_str(&translate_escape(e)?);
                i += 1;
            }
            '[' => {
                i = translate_class(&chars, i, &mut out)?;
            }
            '{' => {
                if let Some((quant, next)) = quantifier(&chars, i) {
                    out.push_str(&quant);
                    i = next;
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
            }
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// A backslash escape outside or inside a class.
fn translate_escape(e: char) -> Option<String> {
    match e {
        'Z' => Some("\\z".into()),
        // Escapes Python knows and Rust reads the same way.
        'a' | 'b' | 'B' | 'd' | 'D' | 'f' | 'n' | 'r' | 's' | 'S' | 't' | 'v' | 'w' | 'W' | 'A'
        | 'x' | 'u' | 'U' => Some(format!("\\{e}")),
        // Backreferences and octal escapes: no equivalent without backtracking.
        '0'..='9' => None,
        // Any other ASCII letter is a "bad escape" in Python.
        c if c.is_ascii_alphabetic() => None,
        // Punctuation, whitespace and non-ASCII: always the literal character in Python.
        c => Some(format!("\\x{{{:x}}}", c as u32)),
    }
}

/// Copies the class starting at `chars[start] == '['`; returns the index after its `]`.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> Option<usize> {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A `]` first in a class is a literal in Python.
    if chars.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    let mut prev_dash = false;
    loop {
        let c = *chars.get(i)?; // unterminated class: Python refuses it too
        match c {
            ']' => {
                out.push(']');
                return Some(i + 1);
            }
            '\\' => {
                i += 1;
                let e = *chars.get(i)?;
                // `\b` is a backspace inside a Python class.
                if e == 'b' {
                    out.push_str("\\x{8}");
                } else if e == 'Z' || e == 'A' || e == 'B' {
                    return None; // "bad escape" inside a class
                } else {
                    out.push_str(&translate_escape(e)?);
                }
                prev_dash = false;
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                prev_dash = false;
            }
            '-' if prev_dash => {
                out.push_str("\\-");
                prev_dash = false;
            }
            '-' => {
                out.push('-');
                prev_dash = true;
            }
            c => {
                out.push(c);
                prev_dash = false;
            }
        }
        i += 1;
    }
}

/// A Python repeat `{m}`, `{m,}`, `{,n}` or `{m,n}` at `chars[start]`, translated, with
/// the index after it; `None` when the brace is a literal.
fn quantifier(chars: &[char], start: usize) -> Option<(String, usize)> {
    let close = start + chars[start..].iter().position(|&c| c == '}')?;
    let body: String = chars[start + 1..close].iter().collect();
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let translated = match body.split_once(',') {
        None if !body.is_empty() && digits(&body) => format!("{{{body}}}"),
        Some((m, n)) if digits(m) && digits(n) && !(m.is_empty() && n.is_empty()) => {
            let m = if m.is_empty() { "0" } else { m };
            format!("{{{m},{n}}}")
        }
        _ => return None,
    };
    Some((translated, close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> Option<bool> {
        compile_match(p).map(|r| r.is_match(s.as_bytes()))
    }

    #[test]
    fn anchored_at_start_only() {
        assert_eq!(m("0", "0a"), Some(true));
        assert_eq!(m("a", "0a"), Some(false));
        assert_eq!(m("0A", "0a"), Some(false));
        assert_eq!(m("(?i)0A", "0a"), Some(true));
        assert_eq!(m("1|0", "0a"), Some(true));
        assert_eq!(m("0a$", "0a"), Some(true));
        assert_eq!(m("0\\Z", "0a"), Some(false));
        assert_eq!(m("", "ff"), Some(true));
    }

    #[test]
    fn python_syntax_differences() {
        assert_eq!(m("*", "0"), None);
        assert_eq!(m("[6[-7]", "6"), None);
        assert_eq!(m("[[]", "["), Some(true));
        assert_eq!(m("0{", "0{"), Some(true));
        assert_eq!(m("0{,2}1", "001"), Some(true));
        assert_eq!(m("0{2}", "00"), Some(true));
        assert_eq!(m("a{x}", "a{x}"), Some(true));
        assert_eq!(m("\\<0", "<0"), Some(true));
        assert_eq!(m("\\pL", "a"), None);
        assert_eq!(m("(a)\\1", "aa"), None);
        assert_eq!(m("(?=0)", "0"), None);
        assert_eq!(m("[]a]", "]"), Some(true));
        assert_eq!(m("[^]a]", "b"), Some(true));
        assert_eq!(m("[a&&b]", "&"), Some(true));
        assert_eq!(m("\\", "x"), None);
    }
}
