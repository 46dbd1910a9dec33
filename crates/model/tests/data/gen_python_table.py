#!/usr/bin/env python3
"""Writes python_table.json: Python's own answers for pcitrack-model's `python` and `oslo`
modules, read by crates/model/tests/python_table.rs.

Run with the Python that has Nova's oslo.utils (the oracle), from the repository root:

    /work/nova-venv/bin/python crates/model/tests/data/gen_python_table.py \
        > crates/model/tests/data/python_table.json

When oslo.utils cannot be imported the script stops: a restatement of oslo's rule would
test pcitrack against itself.

The table holds
  * "isspace": every code point of Unicode (0..=0x10FFFF, surrogates included) for which
    `str.isspace()` is true (all others are false);
  * "strings": tricky subjects with `str.strip()` and oslo's `bool_from_string` in its
    lenient (default=False) and strict forms (`{"error": message}` when strict raises).
"""
import json
import sys
import unicodedata

from oslo_utils import strutils
import oslo_utils.version

WORDS = ["true", "yes", "0", "off", "on", "1", "t", "f", "n", "y", "no", "false", "TRUE",
         "Yes", "oFF"]


def isspace_points():
    return [c for c in range(0x110000) if chr(c).isspace()]


def subjects(spaces):
    out = []
    # every whitespace character around a few words, alone, before, after and both sides
    for c in spaces:
        ch = chr(c)
        for w in ["true", "yes", "0", "off"]:
            out += [ch + w, w + ch, ch + w + ch]
        out.append(ch)
    # near misses: characters that look or behave like white space but are not
    for ch in ["\x00", "\x01", "\x1b", "\x7f", "\u180e", "\u200b", "\u200c", "\u200d",
               "\u2060", "\ufeff", "\u00ad", "\u034f", "\u3164", "\uffa0"]:
        for w in ["true", "no"]:
            out += [ch + w, w + ch]
    # case: ASCII mixes, and non-ASCII letters that case-map near ASCII
    out += WORDS
    out += ["TrUe", "YeS", "ON", "oN", "T", "Y", "N", "F", "OfF", "FALSE", "No"]
    out += ["\u0130", "yes\u0130", "\u0131", "on\u0131",        # dotted/dotless i
            "ye\u017f", "YE\u017f",                               # long s (casefolds to s)
            "\u212a", "tru\u0435", "\uff54\uff52\uff55\uff45",    # Kelvin, Cyrillic e, fullwidth
            "\uff34\uff32\uff35\uff25", "\u0661", "\uff11", "\u00b9",
            "y\u0308es", "\u1e9e", "tr\u00fce"]
    # shapes
    out += ["", " ", "\t\n", "\x00", "true\x00", "\x00true", "1.0", "01", "+1", "-0",
            "truee", "tru", "yess", "true true", "t r u e", "None", "True", "False",
            "'true'", '"yes"', "\x1ctrue", "true\x1f", "\x1c\x1d\x1e\x1ftrue\x1f",
            "\u3000on\u3000", "\u0085yes\u2028", "\u00a0true\u2003", "\u180etrue"]
    seen, uniq = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


def strict(s):
    try:
        return strutils.bool_from_string(s, strict=True)
    except ValueError as e:
        return {"error": str(e)}


def main():
    spaces = isspace_points()
    rows = [{"s": s, "strip": s.strip(),
             "lenient": strutils.bool_from_string(s),
             "strict": strict(s)} for s in subjects(spaces)]
    table = {
        "generated_by": "crates/model/tests/data/gen_python_table.py",
        "python": sys.version.split()[0],
        "unicode": unicodedata.unidata_version,
        "oslo_utils": oslo_utils.version.version_info.version_string(),
        "isspace": spaces,
        "strings": rows,
    }
    json.dump(table, sys.stdout, indent=0, ensure_ascii=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
