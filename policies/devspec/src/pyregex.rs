//! Python `re` patterns, with `re.match` semantics, run on the `regex-lite` crate.
//!
//! Nova compiles each field of a regex-dict address with `re.compile` and applies it with
//! `.match` (`nova/pci/devspec.py`, `PciAddressRegexSpec`): anchored at the start only, so
//! `{"bus": "0"}` matches bus `0a`. The subjects are short lower-case hex strings
//! (`'%04x'`, `'%02x'`, `'%02x'`, `'%1x'`), on which Unicode and ASCII matching agree (`\d`,
//! `\w`, `\s`, `\b`, case folding: no non-ASCII character folds to a hex digit or letter;
//! classes under `i` carry both cases themselves, see `Parser::class`),
//! and which hold no newline (so `$`, `^` and `.` agree under every flag).
//!
//! What must agree exactly is which patterns are accepted and what the accepted ones mean.
//! So the pattern is not handed to the engine as written: it is parsed here by Python's
//! grammar (CPython 3.11 `re/_parser.py`, the version Nova 34 runs on), with Python's
//! errors, and written out again in the engine's syntax with every literal but ASCII
//! letters and digits spelt `\x{..}` and every group balanced, so no Python text can mean something else to the engine (a
//! stray `)` closing the `^(?:...)` anchor, `--` inside a class, a `#` comment). Python's
//! rules carried over: the first `]` of a class is a literal; `{` that does not start
//! `{m}`, `{m,}`, `{,n}`, `{m,n}` or `{,}` is a literal; a quantifier after nothing or
//! after an anchor is "nothing to repeat", after a quantifier "multiple repeat"; global
//! flags only at the start; verbose mode (`x`) skips whitespace and `#` comments outside
//! classes; `\x` takes exactly two hex digits, `\u` four, `\U` eight; octal escapes; the
//! `a` and `u` flags (no-ops on hex text) but not both, nor `L`.
//!
//! Refused although Python accepts them (`PciDeviceWrongAddressFormat`), because the engine
//! has no backtracking or they have no meaning here: backreferences (`\1`, `(?P=name)`),
//! look-around (`(?=`, `(?!`, `(?<=`, `(?<!`), conditionals (`(?(1)`), atomic groups and
//! possessive quantifiers, `\N{NAME}`, the `t` (template) flag, surrogate code points
//! (`\ud800`), non-ASCII group names (`(?P<é>...)`), and patterns beyond the engine's limits (groups nested deeper than
//! [`MAX_DEPTH`], or repeats too large for its size limit). `tests/python_re_differential.rs`
//! compares all of this with Python's own `re`.

use regex_lite::{Regex, RegexBuilder};

/// Groups nested deeper than this are refused (the parser takes three stack frames per group,
/// in a guest with a small stack; the engine's own nesting limit is set to fit, below).
pub(crate) const MAX_DEPTH: usize = 64;

/// Compiles `pattern` with `re.match` semantics, or `None` where Python refuses it or it is
/// one of the refusals of the module documentation.
pub(crate) fn compile_match(pattern: &str) -> Option<Regex> {
    let translated = format!("^(?:{})", translate(pattern)?);
    // The engine's own nesting limit (50 by default) counts repeats and alternations as
    // well as groups; 250 (the `regex` crate's default) leaves room for [`MAX_DEPTH`] groups.
    RegexBuilder::new(&translated).nest_limit(250).build().ok()
}

/// The pattern in the engine's syntax, or `None` where it must be refused.
fn translate(pattern: &str) -> Option<String> {
    let mut p = Parser {
        chars: pattern.chars().collect(),
        pos: 0,
        names: Vec::new(),
        ascii: false,
        unicode: false,
    };
    let mut out = String::with_capacity(pattern.len() * 4 + 8);
    p.alternation(&mut out, Mode::default(), 0)?;
    // Anything left is a `)` without its `(`: "unbalanced parenthesis".
    (p.pos == p.chars.len()).then_some(out)
}

/// One token of Python's tokenizer: a character, or a backslash with the one after it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Plain(char),
    Escaped(char),
}

/// What a sequence's last item was, for the quantifier rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A literal, class, `.` or group: repeatable.
    Atom,
    /// `^`, `$`, `\A`, `\Z`, `\b`, `\B`: "nothing to repeat".
    Anchor,
    /// Already repeated: "multiple repeat".
    Repeat,
}

/// The flags that change how the rest of a pattern is read here.
#[derive(Clone, Copy, Default)]
struct Mode {
    /// `x`: whitespace and `#` comments outside classes are skipped.
    verbose: bool,
    /// `i`: classes carry both cases of their letters (see [`Parser::class`]).
    ignore_case: bool,
}

/// A class member.
enum Member {
    Char(char),
    Range(char, char),
    /// `\d`, `\D`, `\s`, `\S`, `\w`, `\W`.
    Category(char),
}

/// Python's inline flags (`re/_parser.py` `FLAGS`).
const FLAGS: &str = "iLmsxatu";
/// Verbose mode's whitespace (`WHITESPACE`).
const WHITESPACE: &str = " \t\n\r\u{b}\u{c}";
/// Characters that are not literals outside a class (`SPECIAL_CHARS`).
const SPECIAL: &str = ".\\[{()*+?^$|";
/// Python's `MAXREPEAT` on 64-bit builds: a repeat count this large is an `OverflowError`.
const MAX_REPEAT: u64 = 4_294_967_295;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    /// Named groups seen (a name defined twice is an error).
    names: Vec<String>,
    /// Global `a` and `u` flags seen (both together is an error).
    ascii: bool,
    unicode: bool,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// The next token; `Err` for a backslash at the end ("bad escape (end of pattern)").
    fn token(&mut self) -> Result<Option<Tok>, ()> {
        let Some(c) = self.peek() else {
            return Ok(None);
        };
        self.pos += 1;
        if c != '\\' {
            return Ok(Some(Tok::Plain(c)));
        }
        let e = self.peek().ok_or(())?;
        self.pos += 1;
        Ok(Some(Tok::Escaped(e)))
    }

    /// The next token, `None` at the end or on a bad trailing backslash.
    fn next(&mut self) -> Option<Tok> {
        self.token().ok().flatten()
    }

    /// Consumes `c` if the next token is exactly the plain character `c`.
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) && c != '\\' {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Up to `n` characters of `set`.
    fn take_while(&mut self, n: usize, set: fn(char) -> bool) -> String {
        let mut s = String::new();
        while s.len() < n && self.peek().is_some_and(set) {
            s.push(self.chars[self.pos]);
            self.pos += 1;
        }
        s
    }

    /// `a|b|...` up to a `)` or the end (`_parse_sub`). Returns the mode after it (global
    /// flags at the start can turn on verbose mode and case folding).
    fn alternation(&mut self, out: &mut String, mode: Mode, depth: usize) -> Option<Mode> {
        let mut mode = mode;
        let mut first = depth == 0;
        loop {
            mode = self.sequence(out, mode, depth, first)?;
            if !self.eat('|') {
                return Some(mode);
            }
            out.push('|');
            first = false;
        }
    }

    /// One branch (`_parse`): items up to `|`, `)` or the end.
    fn sequence(
        &mut self,
        out: &mut String,
        mut mode: Mode,
        depth: usize,
        first: bool,
    ) -> Option<Mode> {
        let mut last: Option<Item> = None;
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let tok = self.token().ok()??;
            if let (true, Tok::Plain(c)) = (mode.verbose, tok) {
                if WHITESPACE.contains(c) {
                    continue;
                }
                if c == '#' {
                    // A comment runs to a newline (not an escaped one) or the end.
                    loop {
                        match self.token().ok()? {
                            None | Some(Tok::Plain('\n')) => break,
                            Some(_) => {}
                        }
                    }
                    continue;
                }
            }
            let c = match tok {
                Tok::Escaped(e) => {
                    last = Some(self.escape(e, out)?);
                    continue;
                }
                Tok::Plain(c) if !SPECIAL.contains(c) => {
                    hex_char(c, out);
                    last = Some(Item::Atom);
                    continue;
                }
                Tok::Plain(c) => c,
            };
            match c {
                '[' => {
                    self.class(out, mode.ignore_case)?;
                    last = Some(Item::Atom);
                }
                '.' => {
                    out.push('.');
                    last = Some(Item::Atom);
                }
                '^' | '$' => {
                    out.push(c);
                    last = Some(Item::Anchor);
                }
                '*' | '+' | '?' | '{' => {
                    let here = self.pos;
                    let quantifier = match c {
                        '{' => match self.counted()? {
                            Some(q) => q,
                            None => {
                                // Not a repeat: a literal `{`, and what follows is read again.
                                self.pos = here;
                                hex_char('{', out);
                                last = Some(Item::Atom);
                                continue;
                            }
                        },
                        c => c.to_string(),
                    };
                    match last {
                        None | Some(Item::Anchor) | Some(Item::Repeat) => return None,
                        Some(Item::Atom) => {}
                    }
                    out.push_str(&quantifier);
                    if self.eat('?') {
                        out.push('?');
                    } else if self.peek() == Some('+') {
                        return None; // possessive: refused (module docs)
                    }
                    last = Some(Item::Repeat);
                }
                '(' => match self.group(out, mode, depth, first && last.is_none())? {
                    Group::Item => last = Some(Item::Atom),
                    Group::Comment => {}
                    Group::GlobalFlags(on) => {
                        mode.verbose |= on.contains('x');
                        mode.ignore_case |= on.contains('i');
                    }
                },
                _ => return None,
            }
        }
        Some(mode)
    }

    /// After `{`: `Some(Some(quantifier))` for a counted repeat, `Some(None)` when the brace
    /// is a literal, `None` for an error (a count too large, max below min).
    fn counted(&mut self) -> Option<Option<String>> {
        if self.peek() == Some('}') {
            return Some(None);
        }
        let digit = |c: char| c.is_ascii_digit();
        let lo = self.take_while(usize::MAX, digit);
        let hi = if self.eat(',') {
            Some(self.take_while(usize::MAX, digit))
        } else {
            None
        };
        if !self.eat('}') {
            return Some(None);
        }
        let count = |s: &str| -> Option<u64> {
            let v = s.trim_start_matches('0');
            (v.len() <= 10)
                .then(|| v.parse::<u64>().unwrap_or(0))
                .filter(|&n| n < MAX_REPEAT)
        };
        let min = if lo.is_empty() { 0 } else { count(&lo)? };
        Some(Some(match hi {
            None => format!("{{{min}}}"),
            Some(hi) if hi.is_empty() => format!("{{{min},}}"),
            Some(hi) => {
                let max = count(&hi)?;
                if max < min {
                    return None;
                }
                format!("{{{min},{max}}}")
            }
        }))
    }

    /// A backslash escape outside a class (`_escape`).
    fn escape(&mut self, e: char, out: &mut String) -> Option<Item> {
        let anchor = match e {
            'A' => "\\A",
            'Z' => "\\z",
            'b' => "\\b",
            'B' => "\\B",
            _ => "",
        };
        if !anchor.is_empty() {
            out.push_str(anchor);
            return Some(Item::Anchor);
        }
        let c = match e {
            'd' | 'D' | 's' | 'S' | 'w' | 'W' => {
                out.push('\\');
                out.push(e);
                return Some(Item::Atom);
            }
            '0' => octal(&format!("0{}", self.take_while(2, is_octal)))?,
            '1'..='9' => {
                // Three octal digits are a character; anything else is a group reference
                // (refused: a backreference, or Python's "invalid group reference").
                let d2 = self.peek().filter(|&c| is_octal(c));
                let d3 = self
                    .chars
                    .get(self.pos + 1)
                    .copied()
                    .filter(|&c| is_octal(c));
                match (is_octal(e), d2, d3) {
                    (true, Some(d2), Some(d3)) => {
                        self.pos += 2;
                        octal(&format!("{e}{d2}{d3}"))?
                    }
                    _ => return None,
                }
            }
            e => self.char_escape(e)?,
        };
        hex_char(c, out);
        Some(Item::Atom)
    }

    /// The escapes that are one character, in or out of a class: `\a`, `\f`, `\n`, `\r`,
    /// `\t`, `\v`, `\\`, `\xhh`, `\uhhhh`, `\Uhhhhhhhh`, and any non-letter as itself.
    fn char_escape(&mut self, e: char) -> Option<char> {
        let hex = |p: &mut Self, n: usize| {
            let digits = p.take_while(n, |c| c.is_ascii_hexdigit());
            (digits.len() == n)
                .then(|| u32::from_str_radix(&digits, 16).ok())
                .flatten()
        };
        Some(match e {
            'a' => '\u{7}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            // Above U+10FFFF Python refuses; a surrogate it accepts but is refused here.
            'x' => char::from_u32(hex(self, 2)?)?,
            'u' => char::from_u32(hex(self, 4)?)?,
            'U' => char::from_u32(hex(self, 8)?)?,
            // `\N{...}` is refused; other letters are "bad escape".
            c if c.is_ascii_alphabetic() => return None,
            c => c,
        })
    }

    /// A class, after its `[`. Under `i`, each range's letters are written in both cases:
    /// Python folds every member (`[0-a]` holds `b`, the lower case of `B`), while
    /// regex-lite 0.1.9 merges the ranges first and then adds only the upper case of their
    /// `a`-`z` part, so `(?i)[0-a]` missed `b` (found in review).
    fn class(&mut self, out: &mut String, ignore_case: bool) -> Option<()> {
        let negate = self.eat('^');
        let mut members: Vec<Member> = Vec::new();
        loop {
            let tok = self.next()?; // the end: "unterminated character set"
            if tok == Tok::Plain(']') && !members.is_empty() {
                break;
            }
            let first = self.class_member(tok)?;
            if !self.eat('-') {
                members.push(first);
                continue;
            }
            let second = self.next()?;
            if second == Tok::Plain(']') {
                members.push(first);
                members.push(Member::Char('-'));
                break;
            }
            match (first, self.class_member(second)?) {
                (Member::Char(lo), Member::Char(hi)) if lo <= hi => {
                    members.push(Member::Range(lo, hi));
                }
                _ => return None, // "bad character range"
            }
        }
        if ignore_case {
            let mut other_cases = Vec::new();
            for m in &members {
                let (lo, hi) = match *m {
                    Member::Char(c) => (c, c),
                    Member::Range(lo, hi) => (lo, hi),
                    Member::Category(_) => continue,
                };
                for (from, to) in [('A', 'Z'), ('a', 'z')] {
                    let (l, h) = (lo.max(from), hi.min(to));
                    if l <= h {
                        let swap = |c: char| char::from(c as u8 ^ 0x20);
                        other_cases.push(Member::Range(swap(l), swap(h)));
                    }
                }
            }
            members.extend(other_cases);
        }
        out.push('[');
        if negate {
            out.push('^');
        }
        for m in members {
            match m {
                Member::Char(c) => hex_char(c, out),
                Member::Range(lo, hi) => {
                    hex_char(lo, out);
                    out.push('-');
                    hex_char(hi, out);
                }
                Member::Category(c) => {
                    out.push('\\');
                    out.push(c);
                }
            }
        }
        out.push(']');
        Some(())
    }

    /// One member of a class (`_class_escape` for escapes).
    fn class_member(&mut self, tok: Tok) -> Option<Member> {
        let c = match tok {
            Tok::Plain(c) => c,
            Tok::Escaped(e @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                return Some(Member::Category(e));
            }
            Tok::Escaped('b') => '\u{8}',
            Tok::Escaped(d @ '0'..='7') => octal(&format!("{d}{}", self.take_while(2, is_octal)))?,
            Tok::Escaped('8' | '9') => return None,
            Tok::Escaped(e) => self.char_escape(e)?,
        };
        Some(Member::Char(c))
    }

    /// A group, after its `(`.
    fn group(
        &mut self,
        out: &mut String,
        mode: Mode,
        depth: usize,
        may_set_global: bool,
    ) -> Option<Group> {
        let mut open = String::from("(?:");
        let mut inner = mode;
        if self.eat('?') {
            match self.next()? {
                Tok::Plain('P') => {
                    if !self.eat('<') {
                        return None; // `(?P=name)`: refused; `(?Px`: "unknown extension"
                    }
                    let end = self.pos + self.chars[self.pos..].iter().position(|&c| c == '>')?;
                    let name: String = self.chars[self.pos..end].iter().collect();
                    self.pos = end + 1;
                    if !is_identifier(&name) || self.names.contains(&name) {
                        return None;
                    }
                    self.names.push(name);
                }
                Tok::Plain(':') => {}
                Tok::Plain('#') => {
                    // A comment: to the first `)` token; nothing is emitted.
                    loop {
                        if self.next()? == Tok::Plain(')') {
                            return Some(Group::Comment);
                        }
                    }
                }
                Tok::Plain(c) if FLAGS.contains(c) || c == '-' => match self.flags(c)? {
                    Flags::Global { on } => {
                        // `t` (template mode) is refused (module docs).
                        if !may_set_global || on.contains('t') {
                            return None;
                        }
                        self.ascii |= on.contains('a');
                        self.unicode |= on.contains('u');
                        if self.ascii && self.unicode {
                            return None; // "ASCII and UNICODE flags are incompatible"
                        }
                        let kept = engine_flags(&on);
                        if !kept.is_empty() {
                            out.push_str(&format!("(?{kept})"));
                        }
                        return Some(Group::GlobalFlags(on));
                    }
                    Flags::Scoped { on, off } => {
                        let set = |now: bool, f: char| (now || on.contains(f)) && !off.contains(f);
                        inner.verbose = set(mode.verbose, 'x');
                        inner.ignore_case = set(mode.ignore_case, 'i');
                        let (on, off) = (engine_flags(&on), engine_flags(&off));
                        open = match (on.is_empty(), off.is_empty()) {
                            (true, true) => "(?:".into(),
                            (false, true) => format!("(?{on}:"),
                            (_, false) => format!("(?{on}-{off}:"),
                        };
                    }
                },
                // Look-around, conditionals, atomic groups: refused; anything else is
                // Python's "unknown extension".
                _ => return None,
            }
        }
        if depth + 1 > MAX_DEPTH {
            return None;
        }
        out.push_str(&open);
        self.alternation(out, inner, depth + 1)?;
        if !self.eat(')') {
            return None; // "missing ), unterminated subpattern"
        }
        out.push(')');
        Some(Group::Item)
    }

    /// Inline flags after `(?` and their first character (`_parse_flags`).
    fn flags(&mut self, first: char) -> Option<Flags> {
        let mut on = String::new();
        let mut c = Tok::Plain(first);
        if first != '-' {
            loop {
                let Tok::Plain(f) = c else { return None };
                // `L`: "cannot use 'L' flag with a str pattern".
                if !FLAGS.contains(f) || f == 'L' {
                    return None;
                }
                if f == 'a' && on.contains('u') || f == 'u' && on.contains('a') {
                    return None; // "flags 'a', 'u' and 'L' are incompatible"
                }
                on.push(f);
                c = self.next()?;
                if matches!(c, Tok::Plain(')' | '-' | ':')) {
                    break;
                }
            }
        }
        if c == Tok::Plain(')') {
            return Some(Flags::Global { on });
        }
        if on.contains('t') {
            return None; // "cannot turn on global flag"
        }
        let mut off = String::new();
        if c == Tok::Plain('-') {
            c = self.next()?;
            loop {
                let Tok::Plain(f) = c else { return None };
                if !FLAGS.contains(f) || "aLu".contains(f) || f == 't' {
                    return None;
                }
                off.push(f);
                c = self.next()?;
                if c == Tok::Plain(':') {
                    break;
                }
            }
        }
        if c != Tok::Plain(':') || on.chars().any(|f| off.contains(f)) {
            return None;
        }
        Some(Flags::Scoped { on, off })
    }
}

enum Group {
    /// A group: an item.
    Item,
    /// `(?#...)`: nothing.
    Comment,
    /// `(?flags)` at the start.
    GlobalFlags(String),
}

enum Flags {
    Global { on: String },
    Scoped { on: String, off: String },
}

/// The flags the engine is given, each once (Python accepts `(?ii)`, regex-lite does not):
/// `i`, `m`, `s`. Verbose mode is applied here, and `a` and `u` change nothing on hex text.
fn engine_flags(flags: &str) -> String {
    "ims".chars().filter(|f| flags.contains(*f)).collect()
}

/// A literal character, spelt so that nothing in it is syntax to the engine.
fn hex_char(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        out.push_str(&format!("\\x{{{:x}}}", c as u32));
    }
}

fn is_octal(c: char) -> bool {
    matches!(c, '0'..='7')
}

/// An octal escape's character; `None` above 0o377 ("octal escape value outside of range").
fn octal(digits: &str) -> Option<char> {
    let value = u32::from_str_radix(digits, 8).ok()?;
    (value <= 0o377).then(|| char::from_u32(value)).flatten()
}

/// Python's `str.isidentifier` for an ASCII group name: a letter or `_`, then letters,
/// digits or `_`. Non-ASCII names are refused (module docs): Python decides them by the
/// Unicode 14 XID tables, which Rust's newer tables do not reproduce (found in review).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> Option<bool> {
        compile_match(p).map(|r| r.is_match(s))
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
    fn pythons_grammar_decides_what_is_accepted() {
        // A `)` without its `(` may not close the anchoring group.
        assert_eq!(m(")0", "0"), None);
        assert_eq!(m("0)|(1", "1"), None);
        // Verbose mode: whitespace and comments outside classes only.
        assert_eq!(m("(?x) 0 a # comment", "0a"), Some(true));
        assert_eq!(m("(?x)[ #]", " "), Some(true));
        assert_eq!(m("(?x)0 # c\n*", ""), Some(true));
        assert_eq!(m("(?x:0 a)", "0a"), Some(true));
        // Quantifiers.
        assert_eq!(m("0{,}1", "001"), Some(true));
        assert_eq!(m("0{}", "0{}"), Some(true));
        assert_eq!(m("0**", "0"), None);
        assert_eq!(m("^*", "0"), None);
        assert_eq!(m("\\b+", "0"), None);
        assert_eq!(m("0{4294967295}", "0"), None);
        // Flags: only at the start; `a` and `u` accepted, not together.
        assert_eq!(m("(?a)0", "0"), Some(true));
        assert_eq!(m("(?u)0", "0"), Some(true));
        assert_eq!(m("(?au)0", "0"), None);
        assert_eq!(m("0(?i)", "0"), None);
        assert_eq!(m("(?-i:A)", "a"), Some(false));
        // Classes: `--` is a range from `-` in Python; a category cannot bound a range.
        assert_eq!(m("[a-z--b]", "0"), Some(true));
        assert_eq!(m("[\\d-f]", "0"), None);
        // Escapes: octal, exactly two hex digits, comments.
        assert_eq!(m("\\060", "0"), Some(true));
        assert_eq!(m("\\x3", "0"), None);
        assert_eq!(m("\\x{30}", "0"), None);
        assert_eq!(m("(?#c)0", "0"), Some(true));
        // Found in review: a flag given twice; case-insensitive ranges across the cases;
        // group names.
        assert_eq!(m("(?ii)0", "0"), Some(true));
        assert_eq!(m("(?i)[0-a]", "b"), Some(true));
        assert_eq!(m("(?i)[^A-a]", "b"), Some(false));
        assert_eq!(m("(?i)(?-i:[A-Z])", "b"), Some(false));
        assert_eq!(m("(?P<_n1>0)", "0"), Some(true));
        assert_eq!(m("(?P<\u{e9}>0)", "0"), None);
        // Nesting up to the limit.
        let deep = |n: usize| format!("{}0{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(m(&deep(MAX_DEPTH), "0"), Some(true));
        assert_eq!(m(&deep(MAX_DEPTH + 1), "0"), None);
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
