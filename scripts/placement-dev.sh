#!/usr/bin/env bash
# Installs what the Placement tests run against, reusing what is already there, and prints the
# environment to export (everything else goes to stderr):
#
#   eval "$(scripts/placement-dev.sh)"
#   cargo test --workspace --locked
#
# - a venv with openstack-placement==16.0.0, gunicorn, psycopg2-binary, keystonemiddleware
#   (versions pinned: the ones the tests were written against)
#   (~50 s on first run), PCITRACK_PLACEMENT_PYTHON;
# - a venv with keystone 30.0.0 and gunicorn (~85 s on first run), PCITRACK_KEYSTONE_PYTHON;
# - Debian's postgresql server package when no /usr/lib/postgresql/*/bin/initdb exists.
# Venvs live in ${XDG_CACHE_HOME:-~/.cache}/pcitrack-ci (override: PCITRACK_PLACEMENT_VENV,
# PCITRACK_KEYSTONE_VENV), outside the clone. Nothing is started here: the tests start each
# service on a free port of 127.0.0.1 and stop it themselves (crates/placement-harness).
# .ci/run uses this script and adds PCITRACK_REQUIRE_PLACEMENT=1 (a missing service fails
# the tests instead of skipping them).
set -euo pipefail

CI_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pcitrack-ci"
PLACEMENT_VENV="${PCITRACK_PLACEMENT_VENV:-$CI_CACHE/placement-16.0.0}"
KEYSTONE_VENV="${PCITRACK_KEYSTONE_VENV:-$CI_CACHE/keystone}"

venv() { # venv DIR IMPORT-CHECK PACKAGE...
    local dir="$1" check="$2"
    shift 2
    if ! "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        echo "placement-dev: installing $* into $dir" >&2
        python3 -m venv "$dir" >&2
        "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
    fi
}
venv "$PLACEMENT_VENV" 'import placement.deploy, gunicorn, psycopg2, keystonemiddleware' \
    openstack-placement==16.0.0 gunicorn==27.0.1 psycopg2-binary==2.9.13 keystonemiddleware==13.0.1
venv "$KEYSTONE_VENV" 'import keystone.server.wsgi, gunicorn' keystone==30.0.0 gunicorn==27.0.1

# PostgreSQL's server binaries (initdb, pg_ctl) for Placement with several workers.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "placement-dev: installing postgresql" >&2
    SUDO=()
    [ "$(id -u)" = 0 ] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq >&2
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

printf 'export PCITRACK_PLACEMENT_PYTHON=%q\n' "$PLACEMENT_VENV/bin/python"
printf 'export PCITRACK_KEYSTONE_PYTHON=%q\n' "$KEYSTONE_VENV/bin/python"
