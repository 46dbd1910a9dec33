#!/usr/bin/env bash
# Regenerates host/symbol-order.txt, the order lld lays out the agent's functions in
# (host/build.rs; README, "Memory"). Run it after changing Cargo.lock or the toolchain, or
# when the memory bench says few of the list's functions are in the binary.
#
# 1. Builds the agent twice, as the README's `cargo build --release` and
#    `cargo bench --workspace` do. Their crate disambiguators differ (the profile, and the
#    features each unifies), so the list names each function in both spellings; a build
#    with other packages selected (`-p pcitrack`) spells some names a third way and gets
#    only part of the order.
# 2. Runs the release agent under callgrind through the memory bench's scenarios (a 6-device
#    and a 4112-device host, from `fake_host`; a first start, then a restart with three
#    `POST /v1/reconcile`), and takes every function that ran.
# 3. Twice: relinks with that list and runs the same scenarios natively under
#    `perf record -e page-faults`, adding the functions whose code still faults (what
#    callgrind cannot see: wasmtime's pooling allocator cannot reserve its 256 GiB under
#    valgrind, and code chosen by CPU features).
# Needs valgrind, perf (root or perf_event_paranoid <= 1), nm, readelf, curl. ~10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
for tool in valgrind perf nm readelf curl python3; do
    command -v "$tool" >/dev/null || { echo "symbol-order.sh needs $tool" >&2; exit 2; }
done
perf record -q -e page-faults -o /dev/null true 2>/dev/null || {
    echo "symbol-order.sh: perf cannot record page faults here (root, or kernel.perf_event_paranoid <= 1)" >&2
    exit 2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
list=host/symbol-order.txt

build() {
    cargo build --release --locked -q
    cp target/release/pcitrack "$work/release"
    cargo bench --workspace --locked -q --no-run
    cp target/release/pcitrack "$work/bench"
}

small=$(cargo run -q --locked -p pcitrack-discovery --features test-support --example fake_host -- 1 5 0)
big=$(cargo run -q --locked -p pcitrack-discovery --features test-support --example fake_host -- 16 255 16)
trap 'rm -rf "$work" "$small" "$big"' EXIT

# scenarios OUT_PREFIX COMMAND...: the memory bench's agents, each run as COMMAND.
scenarios() {
    local prefix=$1
    shift
    local tree dir run pid
    for tree in small big; do
        dir="$work/agent-$tree"
        rm -rf "$dir"
        mkdir -p "$dir/policies" "$dir/state"
        local root=$small
        [ "$tree" = big ] && root=$big
        cat >"$dir/pcitrack.toml" <<EOT
[agent]
sysfs_root = "$root"
policies_dir = "$dir/policies"
state_dir = "$dir/state"
uevent_relay = "$dir/uevents.sock"
netlink = false
resync_interval_secs = 3600
[pci]
device_spec = ['{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1"}']
EOT
        for run in first restart; do
            PREFIX="$prefix-$tree-$run" RUST_LOG=info STATE_DIRECTORY="$dir/state" \
                "$@" --config "$dir/pcitrack.toml" run >/dev/null 2>>"$dir/agent.log" &
            pid=$!
            for _ in $(seq 600); do
                curl -sf --unix-socket "$dir/state/pcitrack.sock" http://agent/v1/health >/dev/null && break
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            if [ "$run" = restart ]; then
                for _ in 1 2 3; do
                    curl -sf --unix-socket "$dir/state/pcitrack.sock" -X POST \
                        -H 'content-type: application/json' -d '{}' http://agent/v1/reconcile >/dev/null
                done
            fi
            sleep 2
            # The agent itself, or its process under perf.
            kill -TERM "$(pgrep -P "$pid" || echo "$pid")"
            wait "$pid" || { echo "the agent failed ($tree, $run):" >&2; tail "$dir/agent.log" >&2; exit 1; }
        done
    done
}

build
cp "$work/release" "$work/profiled"
# shellcheck disable=SC2016
scenarios "$work/cg" sh -c 'exec valgrind -q --tool=callgrind --callgrind-out-file="$PREFIX" \
    --demangle=no --dump-line=no --compress-strings=no --compress-pos=no "$0" "$@"' "$work/profiled"
sources=("$work/cg-small-restart" "$work/cg-small-first" "$work/cg-big-restart" "$work/cg-big-first")
scripts/symbol-order.py "$list" "$work/profiled" "${sources[@]}" -- "$work/release" "$work/bench"
for pass in 1 2; do
    build
    cp "$work/release" "$work/faults$pass"
    scenarios "$work/pf$pass" sh -c 'exec perf record -q -e page-faults -c 1 -d -o "$PREFIX" "$0" "$@"' \
        "$work/faults$pass"
    for s in small-restart small-first big-restart big-first; do
        sources+=("perf:$work/pf$pass-$s:$work/faults$pass")
    done
    scripts/symbol-order.py "$list" "$work/profiled" "${sources[@]}" -- "$work/release" "$work/bench"
done
cargo build --release --locked -q
echo "wrote $list; target/release/pcitrack is linked with it (commit the list with the change it was made for)" >&2
