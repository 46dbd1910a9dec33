//! Test support: a real OpenStack Placement 16.0.0 (and the PostgreSQL and Keystone it can
//! sit on) for pcitrack's tests and benchmarks. Dev-only: no crate of the agent depends on it
//! outside `[dev-dependencies]`.
//!
//! Placement runs from a virtualenv (`pip install openstack-placement==16.0.0 gunicorn
//! psycopg2-binary keystonemiddleware`) named by `PCITRACK_PLACEMENT_PYTHON` ([`python`]).
//! Every service is started by the test that needs it, on a free port of 127.0.0.1 with its
//! files in a temporary folder, and stopped when its handle is dropped. How Placement runs
//! here (no `placement-api` script, `placement.wsgi.api:application` under gunicorn,
//! `OS_PLACEMENT_CONFIG_DIR`, SQLite only with one process and one thread) is measured in
//! `shared/placement/PLACEMENT.md`.
//!
//! [`FaultProxy`] stands between the agent and Placement to make it fail, slow or refuse.

#![deny(missing_docs)]

mod keystone;
mod placement;
mod postgres;
mod process;
mod proxy;

use std::path::PathBuf;

pub use keystone::Keystone;
pub use placement::{Placement, PlacementOptions};
pub use postgres::Postgres;
pub use proxy::{Fault, FaultProxy};

/// The environment variable naming the Python of the Placement virtualenv.
pub const PYTHON_VAR: &str = "PCITRACK_PLACEMENT_PYTHON";
/// The environment variable naming the Python of the Keystone virtualenv.
pub const KEYSTONE_PYTHON_VAR: &str = "PCITRACK_KEYSTONE_PYTHON";
/// When set (to anything), a missing Placement (or Keystone, or PostgreSQL) is a test failure
/// instead of a skip; `.ci/run` sets it so CI cannot pass by skipping.
pub const REQUIRE_VAR: &str = "PCITRACK_REQUIRE_PLACEMENT";

/// The microversion the raw REST helpers send (Placement 16.0.0's highest).
pub const MICROVERSION: &str = "placement 1.39";

/// The Placement virtualenv's Python, from `PCITRACK_PLACEMENT_PYTHON`; `None` (after
/// printing `SKIPPED <test>`) when it is unset.
///
/// # Panics
///
/// When `PCITRACK_REQUIRE_PLACEMENT` is set and `PCITRACK_PLACEMENT_PYTHON` is not.
pub fn python(test: &str) -> Option<PathBuf> {
    python_from(
        PYTHON_VAR,
        test,
        "openstack-placement==16.0.0 gunicorn psycopg2-binary keystonemiddleware",
    )
}

/// The Keystone virtualenv's Python, from `PCITRACK_KEYSTONE_PYTHON`; `None` (after printing
/// `SKIPPED <test>`) when it is unset.
///
/// # Panics
///
/// When `PCITRACK_REQUIRE_PLACEMENT` is set and `PCITRACK_KEYSTONE_PYTHON` is not.
pub fn keystone_python(test: &str) -> Option<PathBuf> {
    python_from(KEYSTONE_PYTHON_VAR, test, "keystone gunicorn")
}

fn python_from(var: &str, test: &str, packages: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ if std::env::var_os(REQUIRE_VAR).is_some() => {
            panic!(
                "{test}: {REQUIRE_VAR} is set but {var} names no Python (a venv with {packages})"
            )
        }
        _ => {
            println!("SKIPPED {test}: set {var} to the python of a venv with {packages}");
            None
        }
    }
}

/// Skips (prints `SKIPPED <test>: <why>`) or, when `PCITRACK_REQUIRE_PLACEMENT` is set,
/// panics with the reason. For a service the harness could not find (PostgreSQL binaries).
pub(crate) fn skip_or_fail(test: &str, why: &str) {
    if std::env::var_os(REQUIRE_VAR).is_some() {
        panic!("{test}: {REQUIRE_VAR} is set but {why}");
    }
    println!("SKIPPED {test}: {why}");
}
