#!/usr/bin/env python3
"""Writes host/symbol-order.txt, the function order the agent binary is linked with
(host/build.rs). Called by scripts/symbol-order.sh, which runs the agent under callgrind.

usage: symbol-order.py OUT PROFILED_BINARY SOURCE... -- BINARY...

SOURCE is a callgrind output (the functions with a cost in it), or `perf:DATA:BIN`, a
`perf record -e page-faults -d` of BIN (the functions whose code took a page fault: a
function the list misses faults outside the front of `.text`; callgrind misses what only
runs natively, e.g. wasmtime's pooling allocator, which cannot reserve its 256 GiB under
valgrind). The functions are taken source by source (the first scenario's first, each
source's in address order) and written with their names in every BINARY. A build's mangled names carry crate
disambiguators that change with the profile and features (`cargo build --release` and
`cargo bench` give two), so names are matched through their demangled form without
disambiguators or LLVM's `.llvm.N` suffixes, and each BINARY's own spelling is written.
"""
import bisect
import hashlib
import os
import re
import subprocess
import sys


def symbols(binary):
    """(mangled, demangled key, address) of each defined function of `binary`."""
    def nm(*flags):
        out = subprocess.run(["nm", "--defined-only", *flags, binary], check=True,
                             capture_output=True, text=True).stdout
        return out.splitlines()
    rows = []
    for raw, dem in zip(nm(), nm("--demangle")):
        p, d = raw.split(maxsplit=2), dem.split(maxsplit=2)
        if len(p) != 3 or p[1] not in "tTwW":
            continue
        key = re.sub(r"\.llvm\.\d+", "", d[2])
        rows.append((p[2], key, int(p[0], 16)))
    return rows


def called(path):
    """Function names (mangled) with a cost in a callgrind output."""
    names = set()
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                names.add(re.sub(r"^\(\d+\) ?", "", line[3:].strip()))
    return names


def faulted(data, binary):
    """Demangled keys of the functions of `binary` whose code took a fault in `data`."""
    out = subprocess.run(["perf", "script", "-i", data, "--show-mmap-events", "-F",
                          "pid,addr"], check=True, capture_output=True, text=True).stdout
    text = [(a, a + sz) for a, sz in segments(binary)]
    maps, keys = {}, set()
    rows = sorted((a, m, k) for m, k, a in symbols(binary))
    starts = [r[0] for r in rows]
    name = os.path.basename(binary)
    for line in out.splitlines():
        if "PERF_RECORD_MMAP" in line:
            if name in line and " r-xp " in line:
                m = re.search(r"(\d+)/\d+: \[(0x[0-9a-f]+)\((0x[0-9a-f]+)\) @ (0x[0-9a-f]+|\d+)", line)
                pid, start, size, off = int(m[1]), int(m[2], 16), int(m[3], 16), int(m[4], 0)
                maps.setdefault(pid, []).append((start, start + size, off))
            continue
        p = line.split()
        if len(p) != 2 or not p[0].isdigit():
            continue
        pid, addr = int(p[0]), int(p[1], 16)
        for start, end, off in maps.get(pid, []):
            if start <= addr < end:
                # file offset -> link-time address, through the executable segment
                at = addr - start + off
                for vaddr, offset, filesz in load_segments(binary):
                    if offset <= at < offset + filesz:
                        at = at - offset + vaddr
                        i = bisect.bisect_right(starts, at) - 1
                        if i >= 0:
                            keys.add(rows[i][2])
    return keys


def load_segments(binary, cache={}):
    """(vaddr, offset, filesz) of `binary`'s executable LOAD segments."""
    if binary not in cache:
        out = subprocess.run(["readelf", "-lW", binary], check=True, capture_output=True,
                             text=True).stdout
        cache[binary] = [(int(p[2], 16), int(p[1], 16), int(p[4], 16))
                         for p in (l.split() for l in out.splitlines())
                         if p and p[0] == "LOAD" and "E" in p[6:-1]]
    return cache[binary]


def segments(binary):
    return [(v, f) for v, _, f in load_segments(binary)]


def main():
    args = sys.argv[1:]
    if "--" not in args or args.index("--") < 3 or args[-1] == "--":
        sys.exit(__doc__)
    sep = args.index("--")
    out, profiled, outputs, binaries = args[0], args[1], args[2:sep], args[sep + 1:]
    prof = {m: (k, a) for m, k, a in symbols(profiled)}
    addr = {k: a for _, (k, a) in prof.items()}
    keys, seen = [], set()
    for output in outputs:
        if output.startswith("perf:"):
            _, data, binary = output.split(":", 2)
            found = faulted(data, binary)
        else:
            found = {prof[f][0] for f in called(output) if f in prof}
        for k in sorted(found - seen, key=lambda k: addr.get(k, 0)):
            seen.add(k)
            keys.append(k)
    names, written = [], set()
    by_key = {}
    for binary in binaries:
        for m, k, _ in symbols(binary):
            by_key.setdefault(k, []).append(m)
    for k in keys:
        for m in by_key.get(k, []):
            if m not in written:
                written.add(m)
                names.append(m)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "Cargo.lock"), "rb") as f:
        lock = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(root, "rust-toolchain.toml")) as f:
        channel = re.search(r'^channel = "([^"]+)"', f.read(), re.M)[1]
    with open(out, "w") as f:
        # The names' crate disambiguators follow Cargo.lock and the compiler: the digest and
        # channel below are what `link_order` (host/src/lib.rs) checks the list against.
        f.write("# The agent's functions in the order lld lays them out (host/build.rs): the ones\n"
                "# it runs from start to idle. Generated by scripts/symbol-order.sh; do not edit.\n"
                f"# functions: {len(keys)}\n"
                f"# Cargo.lock sha256: {lock}\n"
                f"# toolchain: {channel}\n")
        f.write("\n".join(names) + "\n")
    print(f"{len(keys)} functions run, {len(names)} names in {len(binaries)} builds -> {out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
