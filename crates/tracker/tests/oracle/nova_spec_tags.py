#!/usr/bin/env python3
"""Nova 34 as the oracle for the device_spec tags that act beyond matching
(crates/tracker/tests/spec_tags_nova.rs): resource_class, traits, live_migratable,
one_time_use.

Reads one JSON object on stdin:
    {"pools": [{"device_spec": [...], "report_in_placement": bool,
                "devices": [{"address", "vendor_id", "product_id", "dev_type",
                             "numa_node", "parent_addr"}, ...],
                "requests": [[<request spec dict>, ...], ...]}, ...],
     "traits": ["<traits tag value>", ...],
     "resource_classes": [[<resource_class tag or null>, vendor_id, product_id], ...]}
and writes
    {"pools": [{"error": str(exception)}
               | {"pools": [{"key": {...}, "devices": [address, ...]}, ...],
                  "filtered": [[address, ...] | null, ...]}, ...],
     "traits": [[name, ...] (sorted), ...],
     "resource_classes": [name, ...]}
Pools are built as the compute node builds them: `PciDeviceStats(None,
dev_filter=Whitelist(device_spec))` with `[pci] report_in_placement` overridden, devices added
in order; a pool's key is the pool dict without `count`, `devices` and `address`, and pools
that then have the same key are one (Nova 34 splits pools by Placement provider, `address`
being the PF's or the device's own; pcitrack does not). Each request is an
`InstancePCIRequest(count=1, spec=...)` through `_filter_pools(pools, request, None,
rp_uuids=[])`; the answer is the sorted addresses of the devices in the pools it keeps, or null.
Names go through `pci_placement_translator.get_traits` and `get_resource_class`. Requires Nova.
"""
import json
import sys

import nova.conf
from nova import exception
from nova import objects
from nova.compute import pci_placement_translator as translator
from nova.pci import stats
from nova.pci import whitelist

CONF = nova.conf.CONF


def pools_case(case):
    CONF.set_override('report_in_placement', case["report_in_placement"], group='pci')
    try:
        wl = whitelist.Whitelist(case["device_spec"])
    except exception.NovaException as e:
        return {"error": str(e)}
    pci_stats = stats.PciDeviceStats(None, dev_filter=wl)
    for d in case["devices"]:
        dev = objects.PciDevice.create(None, dict(
            d, compute_node_id=1, status="available", request_id=None))
        pci_stats.add_device(dev)
    pools = []
    for pool in pci_stats.pools:
        key = {k: v for k, v in pool.items()
               if k not in ("count", "devices", "address")}
        same = [p for p in pools if p["key"] == key]
        if same:
            same[0]["devices"] = sorted(
                same[0]["devices"] + [d.address for d in pool["devices"]])
        else:
            pools.append({"key": key,
                          "devices": sorted(d.address for d in pool["devices"])})
    filtered = []
    for spec in case["requests"]:
        request = objects.InstancePCIRequest(count=1, spec=spec)
        kept = pci_stats._filter_pools(pci_stats.pools, request, None, rp_uuids=[])
        filtered.append(None if kept is None else
                        sorted(d.address for p in kept for d in p["devices"]))
    return {"pools": pools, "filtered": filtered}


def main():
    CONF([], project='nova', default_config_files=[])
    objects.register_all()
    case = json.load(sys.stdin)
    json.dump({
        "pools": [pools_case(c) for c in case["pools"]],
        "traits": [sorted(translator.get_traits(t)) for t in case["traits"]],
        "resource_classes": [translator.get_resource_class(rc, v, p)
                             for rc, v, p in case["resource_classes"]],
    }, sys.stdout)


if __name__ == "__main__":
    main()
