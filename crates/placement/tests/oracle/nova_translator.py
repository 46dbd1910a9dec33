#!/usr/bin/env python3
"""Nova 34's PCI-in-Placement translator as the oracle of
crates/placement/tests/nova_translator.rs.

Reads one JSON object on stdin: {"cases": [case, ...]} where a case is
    {"host": str, "root_uuid": str, "device_spec": [json text, ...],
     "devname_address": the PF address every interface name resolves to,
     "devices": [{"address", "vendor_id", "product_id", "dev_type", "parent_addr",
                  "status", "instance_uuid"}, ...],
     "tree": [{"name", "uuid", "traits": [...], "inventory": {rc: {...}}}, ...],
     "allocations": {consumer: {"allocations": {rp_uuid: {"resources": {rc: n}}}}}}
and writes {"cases": [answer, ...]}, an answer being {"error": str(exception)} or
{"providers": [{"name", "uuid", "parent_uuid", "inventory", "traits"}, ...]} (the root's
children after the call, by name, traits sorted).

Each case runs `update_provider_tree_for_pci` as nova-compute does: `[pci]
report_in_placement = true`, the tracker's `dev_filter` a `Whitelist` of the device_spec,
its `pci_devs` `PciDevice` objects in the given order, a `ProviderTree` holding the root
(and `tree`, children of the root, as Placement had them). Requires Nova.
"""
import json
import sys
import types

import nova.conf
from nova import exception
from nova import objects
from nova.compute import pci_placement_translator as translator
from nova.compute import provider_tree
from nova.pci import utils as pci_utils
from nova.pci import whitelist

CONF = nova.conf.CONF


def run_case(case):
    CONF.set_override('report_in_placement', True, group='pci')
    # A devname spec resolves its interface on the host at parse time: answer for a
    # fake host, where every interface is the PF `devname_address`.
    pci_utils.get_function_by_ifname = (
        lambda ifname: (case.get("devname_address"), True))
    try:
        wl = whitelist.Whitelist(case["device_spec"])
    except exception.NovaException as e:
        return {"error": "whitelist: " + str(e)}
    devs = []
    for d in case["devices"]:
        dev = objects.PciDevice.create(None, dict(
            address=d["address"], vendor_id=d["vendor_id"],
            product_id=d["product_id"], dev_type=d["dev_type"],
            parent_addr=d.get("parent_addr"), numa_node=None,
            compute_node_id=1, status="available", request_id=None))
        dev.status = d.get("status", "available")
        dev.instance_uuid = d.get("instance_uuid")
        devs.append(dev)
    tracker = types.SimpleNamespace(
        pci_devs=devs, dev_filter=wl,
        stats=types.SimpleNamespace(
            populate_pools_metadata_from_assigned_devices=lambda: None))
    host = case["host"]
    tree = provider_tree.ProviderTree()
    tree.new_root(host, case["root_uuid"])
    for p in case.get("tree", []):
        tree.new_child(p["name"], host, uuid=p["uuid"])
        tree.update_inventory(p["name"], p.get("inventory", {}))
        tree.update_traits(p["name"], p.get("traits", []))
    try:
        translator.update_provider_tree_for_pci(
            tree, host, tracker, case.get("allocations", {}), [])
    except exception.NovaException as e:
        return {"error": str(e)}
    providers = []
    for uuid in tree.get_provider_uuids(host):
        data = tree.data(uuid)
        if data.name == host:
            continue
        providers.append({
            "name": data.name, "uuid": data.uuid, "parent_uuid": data.parent_uuid,
            "inventory": data.inventory, "traits": sorted(data.traits)})
    return {"providers": sorted(providers, key=lambda p: p["name"])}


def main():
    CONF([], project='nova', default_config_files=[])
    objects.register_all()
    cases = json.load(sys.stdin)["cases"]
    json.dump({"cases": [run_case(c) for c in cases]}, sys.stdout)


if __name__ == "__main__":
    main()
