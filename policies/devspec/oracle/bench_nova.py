#!/usr/bin/env python3
"""Nova's side of the device_spec benchmark: Whitelist.device_assignable per device.

Builds 4096 devices (16 SR-IOV PFs with 255 VFs each, 4080 VFs, plus 16 plain PCI
devices; Intel X710/XXV710 and Mellanox ConnectX-6 Dx ids, realistic addresses) and a
realistic [pci] device_spec list (vendor/product, glob address, regex address, a PF
address, tags), times Nova's in-process matching over all devices several times and
prints the median ns/device as JSON.

    /work/nova-venv/bin/python bench_nova.py [--runs 7] [--dump DIR]

--dump DIR writes DIR/device_spec.json (the list of JSON strings, as in nova.conf) and
DIR/devices.json (the devices, plus the PFs the host also has) so that pcitrack's chain
can be run on exactly the same input. sysfs is replaced by the device list, as Nova's
own unit tests mock nova.pci.utils.
"""
import argparse
import importlib.metadata
import json
import os
import statistics
import time

from nova.pci import utils
from nova.pci import whitelist

INTEL = ("8086", "1572", "154c")      # X710 PF, its VF (XL710/X710 VF)
MELLANOX = ("15b3", "101d", "101e")   # ConnectX-6 Dx PF, its VF
VFS_PER_PF = 255

DEVICE_SPEC = [
    # A PF by address: the PF and all of its VFs (by parent_addr).
    '{"address": "0000:20:00.0", "physical_network": "physnet0", "trusted": "true"}',
    # Mellanox VFs on buses 0x30-0x3f, regex form.
    '{"vendor_id": "15b3", "product_id": "101e", "address": {"domain": "0000", '
    '"bus": "3[0-9a-f]", "slot": ".*", "function": "[0-7]"}, '
    '"physical_network": "physnet2", "remote_managed": "false"}',
    # Intel VFs behind one PF, glob form.
    '{"vendor_id": "8086", "product_id": "154c", "address": "*:23:*.*", '
    '"physical_network": "physnet1", "trusted": "true"}',
    # Remaining Intel and Mellanox VFs by ids.
    '[{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1"}, '
    '{"vendor_id": "15b3", "product_id": "101e", "physical_network": "physnet3"}]',
    # GPUs, unmanaged by libvirt.
    '{"vendor_id": "10de", "product_id": "20b5", "managed": "no"}',
    # NVMe drives by glob on one bus, then by regex on others.
    '{"vendor_id": "144d", "address": ":c1:00."}',
    '{"vendor_id": "144d", "product_id": "a80a", "address": {"bus": "c[4-7]"}}',
]


def build_devices():
    pfs, devices = [], []
    for i in range(16):
        vendor, pf_product, vf_product = INTEL if i < 8 else MELLANOX
        pf_bus = 0x20 + 2 * i if i < 8 else 0x30 + 2 * (i - 8)
        pf_addr = f"0000:{pf_bus:02x}:00.0"
        pfs.append({"address": pf_addr, "vendor_id": vendor,
                    "product_id": pf_product, "dev_type": "type-PF",
                    "sriov_totalvfs": VFS_PER_PF, "vf_product_id": vf_product,
                    "numa_node": 0 if i < 8 else 1})
        for k in range(VFS_PER_PF):
            devices.append({
                "address": f"0000:{pf_bus + 1:02x}:{k // 8:02x}.{k % 8}",
                "vendor_id": vendor, "product_id": vf_product,
                "dev_type": "type-VF", "parent_addr": pf_addr,
                "numa_node": 0 if i < 8 else 1, "label": "label_%s_%s" % (
                    vendor, vf_product),
                "dev_id": "pci_0000_%02x_%02x_%d" % (pf_bus + 1, k // 8, k % 8),
            })
    plain = ([("10de", "20b5", 0x81 + i) for i in range(4)] +
             [("144d", "a808", 0xc1 + i) for i in range(2)] +
             [("144d", "a80a", 0xc3 + i) for i in range(6)] +
             [("8086", "a1d2", 0), ("8086", "a1ba", 0), ("8086", "15b8", 0),
              ("1a03", "2000", 0x02)])
    for n, (vendor, product, bus) in enumerate(plain):
        slot = 0x14 + n - 12 if bus == 0 else 0
        devices.append({"address": f"0000:{bus:02x}:{slot:02x}.0",
                        "vendor_id": vendor, "product_id": product,
                        "dev_type": "type-PCI", "parent_addr": None,
                        "numa_node": 0, "label": "label_%s_%s" % (vendor, product),
                        "dev_id": "pci_0000_%02x_%02x_0" % (bus, slot)})
    assert len(devices) == 4096, len(devices)
    return pfs, devices


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dump", metavar="DIR")
    args = ap.parse_args()
    pfs, devices = build_devices()
    pf_set = {p["address"] for p in pfs}
    utils.is_physical_function = (
        lambda d, b, s, f: f"{d}:{b}:{s}.{f}" in pf_set)
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
        with open(os.path.join(args.dump, "device_spec.json"), "w") as f:
            json.dump(DEVICE_SPEC, f, indent=1)
        with open(os.path.join(args.dump, "devices.json"), "w") as f:
            json.dump({"pfs": pfs, "devices": devices}, f)

    wl = whitelist.Whitelist(DEVICE_SPEC)
    assignable = sum(1 for d in devices if wl.device_assignable(d) is not None)
    per_run = []
    for _ in range(args.runs):
        start = time.perf_counter_ns()
        for d in devices:
            wl.device_assignable(d)
        per_run.append((time.perf_counter_ns() - start) / len(devices))
    print(json.dumps({
        "implementation": "nova",
        "nova_version": importlib.metadata.version("nova"),
        "devices": len(devices),
        "specs": len(wl.specs),
        "assignable": assignable,
        "runs": args.runs,
        "ns_per_device_median": round(statistics.median(per_run), 1),
        "ns_per_device_min": round(min(per_run), 1),
    }))


if __name__ == "__main__":
    main()
