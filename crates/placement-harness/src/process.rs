//! Processes the harness starts: free ports, process groups, readiness, log tails.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a service may take to answer after it was started (the machine is shared and
/// slow; Placement's import alone takes a few seconds).
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A port of 127.0.0.1 that was free a moment ago (bound to port 0, read, closed). The
/// caller retries with another when the service then fails to bind it.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// The last `lines` lines of a log file (or a note that it cannot be read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Runs `cmd` to completion with its output appended to `log`; panics naming `what`, the
/// log and its tail when it fails.
pub(crate) fn run_logged(mut cmd: Command, what: &str, log: &Path) {
    let out = open_log(log);
    let err = out.try_clone().expect("cloning a log file handle");
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    if !status.success() {
        panic!(
            "{what} failed ({status}); log {}:\n{}",
            log.display(),
            tail(log, 40)
        );
    }
}

pub(crate) fn open_log(log: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("opening log {}: {e}", log.display()))
}

/// A server process in its own process group (so stopping it also stops the workers it
/// forked), with its output in a log file.
pub(crate) struct Server {
    child: Child,
    pub(crate) log: PathBuf,
}

impl Server {
    /// Spawns `cmd` as the leader of a new process group, output appended to `log`.
    pub(crate) fn spawn(mut cmd: Command, what: &str, log: &Path) -> Server {
        let out = open_log(log);
        let err = out.try_clone().expect("cloning a log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
        Server {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Whether the process has exited (its status then).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `probe` returns true; `Err` with the log's tail when the process exits
    /// first, panics when it does not answer within [`READY_TIMEOUT`].
    pub(crate) fn wait_ready(
        &mut self,
        what: &str,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if probe() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{what} exited ({status}) before answering; log {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 40)
                ));
            }
            if start.elapsed() > READY_TIMEOUT {
                let log = self.log.clone();
                self.stop();
                panic!(
                    "{what} did not answer within {READY_TIMEOUT:?}; log {}:\n{}",
                    log.display(),
                    tail(&log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the whole process group: SIGTERM, then SIGKILL after 10 s.
    pub(crate) fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        if self.exited().is_none() {
            signal_group("TERM", &group);
            let start = Instant::now();
            while self.exited().is_none() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Workers may outlive a master that was killed; the group goes in any case.
        signal_group("KILL", &group);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(signal: &str, group: &str) {
    // `kill` from procps/util-linux: std has no way to signal a process group without unsafe.
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// An HTTP agent that returns every status as a response (tests look at 4xx themselves).
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// What `log` holds past byte `offset` (the output of the latest start).
pub(crate) fn log_since(log: &Path, offset: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let from = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}
