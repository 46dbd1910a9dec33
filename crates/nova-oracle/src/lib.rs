//! Nova 34 as the oracle of differential tests (test support only; no crate of the agent
//! depends on it outside `[dev-dependencies]`).
//!
//! A differential test asks [`python`] for the interpreter named by `PCITRACK_NOVA_PYTHON`
//! (a venv with `pip install nova==34.0.0`), sends its cases as one JSON document to a Python
//! script on stdin and reads Nova's answers as one JSON document from stdout ([`run`],
//! [`run_source`]). One process per test, so Nova's import cost is paid once.
//!
//! When the variable is unset the test is skipped with a line saying so, unless
//! `PCITRACK_REQUIRE_NOVA` is set (`.ci/run` sets both): then a missing oracle fails the test,
//! so CI cannot pass by skipping every comparison.

#![deny(missing_docs)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The environment variable naming the Python with Nova installed.
pub const PYTHON_VAR: &str = "PCITRACK_NOVA_PYTHON";
/// When set (to anything), a missing oracle is a failure rather than a skip.
pub const REQUIRE_VAR: &str = "PCITRACK_REQUIRE_NOVA";

/// The Python to run Nova with, or `None` (after printing `SKIPPED: <test>`) when none is
/// configured.
///
/// # Panics
///
/// When `PCITRACK_REQUIRE_NOVA` is set and `PCITRACK_NOVA_PYTHON` is not.
pub fn python(test: &str) -> Option<String> {
    match std::env::var(PYTHON_VAR) {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os(REQUIRE_VAR).is_some() => {
            panic!("{test}: {REQUIRE_VAR} is set but {PYTHON_VAR} names no Python with Nova")
        }
        _ => {
            println!("SKIPPED {test}: set {PYTHON_VAR} to a Python with nova==34.0.0 installed");
            None
        }
    }
}

/// Runs the Python script at `script` with `input` as JSON on stdin and returns its stdout
/// parsed as JSON.
///
/// # Panics
///
/// When Python cannot be started, the script exits non-zero (its stderr is in the message) or
/// prints something that is not JSON. A test wants exactly that.
pub fn run(python: &str, script: &Path, input: &Value) -> Value {
    let mut cmd = Command::new(python);
    cmd.arg(script);
    exchange(cmd, &script.display().to_string(), input)
}

/// Like [`run`], with the script given as source text (`python -c`).
///
/// # Panics
///
/// As [`run`].
pub fn run_source(python: &str, source: &str, input: &Value) -> Value {
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(source);
    exchange(cmd, "inline oracle script", input)
}

fn exchange(mut cmd: Command, what: &str, input: &Value) -> Value {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the Nova oracle ({what}): {e}"));
    let text = serde_json::to_vec(input).expect("JSON input");
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Write from a thread: a script that answers while reading could fill the stdout pipe.
    let writer = std::thread::spawn(move || stdin.write_all(&text));
    let out = child.wait_with_output().expect("wait for the Nova oracle");
    let written = writer.join().expect("stdin writer");
    // A script that dies early (not found, an import error) closes its stdin: its exit status
    // and stderr say why, the broken pipe does not, so they are checked first.
    assert!(
        out.status.success(),
        "the Nova oracle ({what}) failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    written.unwrap_or_else(|e| panic!("writing to the Nova oracle ({what}): {e}"));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the Nova oracle ({what}) printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
