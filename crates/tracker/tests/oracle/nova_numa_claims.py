#!/usr/bin/env python3
"""Nova as the oracle for claims with a NUMA context (crates/tracker/tests/claims_nova.rs).

Reads a JSON list of cases on stdin, each
    {"device_spec": [<device_spec JSON strings>],
     "host_cells": [{"id": 0, "socket": 0 | null}, ...],
     "devices": [{"address", "vendor_id", "product_id", "dev_type", "numa_node",
                  "parent_addr"}, ...],
     "requests": [{"count": 2, "spec": [{...}], "numa_policy": "socket" | null}, ...],
     "cells": [<the instance's NUMA cell ids>] | null}
and writes a JSON list: for each case, the addresses Nova 34's
`PciDeviceStats.consume_requests` hands to each request (a list per request), or null when
it raises `PciDeviceRequestFailed`. The stats are built as the compute node builds them:
`PciDeviceStats(NUMATopology(cells), dev_filter=Whitelist(device_spec))`, devices added
in the order given with their PF/VF tree linked (`PciDevTracker._build_device_tree`),
instance cells as `InstanceNUMACell(id=...)`. Requires Nova.
"""
import json
import sys

from nova import exception
from nova import objects
from nova.pci import stats
from nova.pci import whitelist


def answer(case):
    host = objects.NUMATopology(cells=[
        objects.NUMACell(id=c["id"], socket=c["socket"], cpuset=set(),
                         pcpuset=set(), memory=0, cpu_usage=0,
                         memory_usage=0, mempages=[], siblings=[],
                         pinned_cpus=set())
        for c in case["host_cells"]])
    pci_stats = stats.PciDeviceStats(
        host, dev_filter=whitelist.Whitelist(case["device_spec"]))
    devs = {}
    for d in case["devices"]:
        dev = objects.PciDevice.create(None, dict(
            d, compute_node_id=1, status="available", request_id=None))
        devs[d["address"]] = dev
    for dev in devs.values():
        parent = devs.get(dev.parent_addr) if dev.parent_addr else None
        if parent is not None:
            dev.parent_device = parent
            parent.child_devices.append(dev)
    for dev in devs.values():
        pci_stats.add_device(dev)
    requests = [
        objects.InstancePCIRequest(
            count=r["count"], spec=r["spec"], numa_policy=r.get("numa_policy"),
            request_id="%08d-0000-4000-8000-000000000000" % i)
        for i, r in enumerate(case["requests"])]
    cells = case.get("cells")
    numa_cells = ([objects.InstanceNUMACell(id=c) for c in cells]
                  if cells is not None else None)
    try:
        got = pci_stats.consume_requests(requests, numa_cells)
    except exception.PciDeviceRequestFailed:
        return None
    if got is None:
        return None
    out = [[] for _ in requests]
    for dev in got:
        out[int(dev.request_id[:8])].append(dev.address)
    return out


def main():
    objects.register_all()
    cases = json.load(sys.stdin)
    json.dump([answer(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
