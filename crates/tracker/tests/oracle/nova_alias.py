#!/usr/bin/env python3
"""Nova 34 as the oracle for [pci] alias parsing (crates/tracker/tests/alias_nova.rs).

Reads a JSON list of cases on stdin, each
    {"alias": [<[pci] alias entries>], "pci_in_placement": <bool>}
sets `[pci] alias` and `[filter_scheduler] pci_in_placement` with `CONF.set_override`, clears
the cache of `nova.pci.request.get_alias_from_config` and calls it, and writes a JSON list of
    {"ok": true, "aliases": {name: [numa_policy, [spec, ...]]}}
or  {"ok": false, "error": str(PciInvalidAlias)}
one per case. Requires Nova.
"""
import json
import sys

import nova.conf
from nova import exception
from nova.pci import request

CONF = nova.conf.CONF


def answer(case):
    CONF.set_override('alias', case["alias"], group='pci')
    CONF.set_override('pci_in_placement', case["pci_in_placement"],
                      group='filter_scheduler')
    request.get_alias_from_config.cache_clear()
    try:
        aliases = request.get_alias_from_config()
    except exception.PciInvalidAlias as e:
        return {"ok": False, "error": str(e)}
    return {"ok": True,
            "aliases": {n: [p, specs] for n, (p, specs) in aliases.items()}}


def main():
    CONF([], project='nova', default_config_files=[])
    cases = json.load(sys.stdin)
    json.dump([answer(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
