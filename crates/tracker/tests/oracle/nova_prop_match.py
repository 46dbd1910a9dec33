#!/usr/bin/env python3
"""Nova as the oracle for typed tag matching (crates/tracker/tests/typed_tags.rs).

Reads a JSON list of cases on stdin, each
    {"spec": {<device_spec dict>}, "request": {<request spec dict>}}
and writes a JSON list of booleans: whether Nova's stats would let the pool built from a
device matching that device_spec (vendor 8086, product 154c, numa node 0, type-VF) pass the
spec filter for that request, i.e. `nova.pci.utils.pci_device_prop_match(pool, specs)`
with the pool built as `PciDeviceStats._create_pool_keys_from_dev` builds it (device
fields, then `devspec.get_tags()`, then `_ensure_remote_managed_tag`) and the request's
spec coerced by `objects.InstancePCIRequest` (nullable strings). Requires Nova.
"""
import json
import sys

from nova import objects
from nova.pci import devspec
from nova.pci import stats
from nova.pci import utils


class _Dev:
    dev_type = "type-VF"


def answer(case):
    tags = devspec.PciDeviceSpec(dict(case["spec"])).get_tags()
    pool = {"vendor_id": "8086", "product_id": "154c", "numa_node": 0,
            "dev_type": "type-VF"}
    pool.update(tags)
    stats.PciDeviceStats._ensure_remote_managed_tag(_Dev(), pool)
    request = objects.InstancePCIRequest(count=1, spec=[case["request"]])
    return utils.pci_device_prop_match(pool, request.spec)


def main():
    objects.register_all()
    cases = json.load(sys.stdin)
    json.dump([answer(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
