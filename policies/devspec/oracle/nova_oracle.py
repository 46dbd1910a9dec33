#!/usr/bin/env python3
"""Nova as an oracle for pcitrack-devspec's differential test.

Reads a JSON list of cases on stdin; each case is
    {"specs": ["<device_spec JSON string>", ...],
     "host": {"devices": [{"address", "vendor_id", "product_id", "is_pf",
                           "vf_product_id"}], "netdevs": {"ifname": "address"}},
     "devices": [{"address", "vendor_id", "product_id", "parent_addr",
                  "card_serial_number"}]}
and writes a JSON list of answers, one per case:
    {"error": {"class": "...", "message": "..."}}   when Nova refuses the specs, or
    {"matches": [index of the first matching spec or null, per device]}.

Nova's sysfs helpers are replaced by look-ups in "host" (as Nova's own unit tests mock
them). One correction is applied, the same one pcitrack makes: Nova formats a glob or
regex address spec with the default object repr (<...PciAddressGlobSpec object at 0x..>)
when it looks up a PF for a remote_managed spec, so those classes get a __str__ that
prints the address. Requires Nova (pip install nova).
"""
import json
import sys

from nova import exception
from nova.pci import devspec
from nova.pci import utils
from nova.pci import whitelist


def _addr_str(self):
    return f"{self.domain}:{self.bus}:{self.slot}.{self.func}"


devspec.PciAddressGlobSpec.__str__ = _addr_str
devspec.PciAddressRegexSpec.__str__ = _addr_str


class Host:
    def __init__(self, host):
        self.devices = {d["address"]: d for d in host.get("devices", [])}
        self.netdevs = host.get("netdevs", {})

    def is_physical_function(self, domain, bus, slot, function):
        dev = self.devices.get(f"{domain}:{bus}:{slot}.{function}")
        return bool(dev and dev.get("is_pf"))

    def get_function_by_ifname(self, ifname):
        addr = self.netdevs.get(ifname)
        if addr is None:
            return None, False
        dev = self.devices.get(addr)
        return addr, bool(dev and dev.get("is_pf"))

    def get_vf_product_id_by_pf_addr(self, pf_addr):
        dev = self.devices.get(pf_addr)
        if not dev or not dev.get("vf_product_id"):
            raise exception.PciDeviceNotFoundById(id=pf_addr)
        return dev["vf_product_id"]

    def get_pci_ids_by_pci_addr(self, addr):
        dev = self.devices.get(addr)
        if not dev:
            raise exception.PciDeviceNotFoundById(id=addr)
        return dev["vendor_id"], dev["product_id"]


HELPERS = ("is_physical_function", "get_function_by_ifname",
           "get_vf_product_id_by_pf_addr", "get_pci_ids_by_pci_addr")


def answer(case):
    host = Host(case.get("host", {}))
    for name in HELPERS:
        setattr(utils, name, getattr(host, name))
    try:
        wl = whitelist.Whitelist(case["specs"])
    except exception.NovaException as e:
        return {"error": {"class": type(e).__name__, "message": str(e)}}
    except Exception as e:  # raw Python errors (Nova bugs): reported as such
        return {"error": {"class": type(e).__name__, "message": str(e)}}
    matches = []
    for d in case["devices"]:
        dev = {"vendor_id": d["vendor_id"], "product_id": d["product_id"],
               "address": d["address"], "parent_addr": d.get("parent_addr")}
        if d.get("card_serial_number") is not None:
            dev["capabilities"] = {
                "vpd": {"card_serial_number": d["card_serial_number"]}}
        spec = wl.device_assignable(dev)
        matches.append(None if spec is None else
                       next(i for i, s in enumerate(wl.specs) if s is spec))
    return {"matches": matches}


def main():
    cases = json.load(sys.stdin)
    json.dump([answer(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
