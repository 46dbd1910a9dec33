//! A running agent for end-to-end tests: the real binary, on a fake sysfs tree, with its
//! state in a temp dir, uevents injected through a relay socket, and the API on a unix
//! socket.
#![allow(dead_code)] // each test file uses a part

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use pcitrack::client::Client;
use pcitrack_discovery::fixture::FakeSysfs;
use serde_json::Value;

/// A Mellanox ConnectX PF with VFs whose netdevs sit behind port pf0.
pub const MLX: u16 = 0x15b3;
/// The PF's device id.
pub const MLX_PF: u16 = 0x101d;
/// The VFs' device id.
pub const MLX_VF: u16 = 0x101e;

/// An agent and its world.
pub struct Daemon {
    /// Temp dir with the config, state, policies and logs.
    pub dir: tempfile::TempDir,
    /// The host's sysfs.
    pub sysfs: FakeSysfs,
    /// The API.
    pub client: Client,
    child: Option<Child>,
    extra_config: String,
    env: Vec<(String, PathBuf)>,
}

/// Adds a ConnectX PF at `pf` with `n` VFs, each with a netdev `ens1f0v<k>` on port pf0.
pub fn add_connectx(sysfs: &FakeSysfs, pf: &str, n: u16) -> Vec<String> {
    let vfs = sysfs.add_pf_with_vfs(pf, MLX, MLX_PF, MLX_VF, n);
    for (k, vf) in vfs.iter().enumerate() {
        sysfs.add_device(vf, MLX, MLX_VF, 0x020000).net(
            &format!("ens1f0v{k}"),
            &format!("02:00:00:00:00:{k:02x}"),
            Some(&format!("pf0vf{k}")),
        );
    }
    vfs
}

impl Daemon {
    /// Writes the configuration (`extra` is appended: `[pci]`, `[policies.*]`...) and starts
    /// the agent on `sysfs`.
    pub fn start(sysfs: FakeSysfs, extra: &str) -> Daemon {
        let mut d = Daemon::prepare(sysfs, extra);
        d.spawn();
        d
    }

    /// Writes the configuration and the directories, but does not start the agent (set its
    /// environment with [`Daemon::env`] first, then [`Daemon::spawn`]).
    pub fn prepare(sysfs: FakeSysfs, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        let client = Client::new(dir.path().join("state/pcitrack.sock"));
        let mut d = Daemon {
            dir,
            sysfs,
            client,
            child: None,
            extra_config: extra.to_string(),
            env: Vec::new(),
        };
        d.write_config(extra);
        d
    }

    /// Sets an environment variable for the next start.
    pub fn env(&mut self, name: &str, value: impl Into<PathBuf>) {
        self.env.push((name.to_string(), value.into()));
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pcitrack.toml")
    }

    /// Rewrites the configuration with another `extra` part.
    pub fn write_config(&mut self, extra: &str) {
        let d = self.dir.path();
        // An `extra` beginning with its own `resync_interval_secs = N` line (still in
        // `[agent]`) replaces the default hour.
        let resync = if extra.starts_with("resync_interval_secs") {
            ""
        } else {
            "resync_interval_secs = 3600\n"
        };
        let text = format!(
            "[agent]\nsysfs_root = {:?}\npolicies_dir = {:?}\nstate_dir = {:?}\n\
             uevent_relay = {:?}\nnetlink = false\n{resync}{extra}\n",
            self.sysfs.root(),
            d.join("policies"),
            d.join("state"),
            d.join("uevents.sock"),
        );
        std::fs::write(self.config_path(), text).unwrap();
        self.extra_config = extra.to_string();
    }

    /// Starts the binary and waits until the API answers.
    pub fn spawn(&mut self) {
        self.spawn_detached();
        self.wait_up();
    }

    /// Starts the binary and returns at once. Its state directory is the temp dir's `state`
    /// (the configuration says so, and so does `$STATE_DIRECTORY`); it inherits no systemd
    /// variables unless a test sets them with [`Daemon::env`].
    pub fn spawn_detached(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pcitrack"));
        cmd.arg("--config")
            .arg(self.config_path())
            .arg("run")
            .env("RUST_LOG", "info")
            .env("STATE_DIRECTORY", self.dir.path().join("state"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID");
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
    }

    /// Waits until the API answers (panics with the log if the agent exits or never does).
    pub fn wait_up(&mut self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            if self.client.get("/v1/health").is_ok_and(|r| r.status == 200) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the agent exited ({status}); log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the agent did not come up; log:\n{}", self.log());
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The policies directory.
    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state/pcitrack.db")
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Polls `cond` every millisecond until it holds or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&Daemon) -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// `GET path` as JSON (panics on an error status, with the body).
    pub fn get(&self, path: &str) -> Value {
        let r = self.client.get(path).unwrap();
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        serde_json::from_slice(&r.body).unwrap()
    }

    /// The tracked devices' addresses.
    pub fn tracked(&self) -> Vec<String> {
        self.get("/v1/devices")
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["address"].as_str().unwrap().to_string())
            .collect()
    }

    /// Sends a uevent packet through the relay socket, in the kernel's framing.
    pub fn uevent(&self, action: &str, address: &str) {
        self.try_uevent(action, address)
            .unwrap_or_else(|e| panic!("cannot send the {action} uevent for {address}: {e}"));
    }

    /// Sends a uevent, or says why it could not be: the agent may be down (a crash test
    /// kills it while events are being sent), and then the relay socket refuses.
    pub fn try_uevent(&self, action: &str, address: &str) -> std::io::Result<()> {
        let devpath = format!("/devices/pci0000:00/{address}");
        let packet = format!(
            "{action}@{devpath}\0ACTION={action}\0DEVPATH={devpath}\0SUBSYSTEM=pci\0\
             PCI_SLOT_NAME={address}\0SEQNUM=1\0"
        );
        UnixDatagram::unbound()?
            .send_to(packet.as_bytes(), self.dir.path().join("uevents.sock"))?;
        Ok(())
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("the agent's pid");
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("cannot signal the agent ({pid:?}): {e}"));
    }

    /// Waits for the agent to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        let child = self.child.as_mut()?;
        while started.elapsed() < timeout {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// SIGKILLs the agent and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Copies a policy file into the policies directory the way an installer should (write
    /// aside, then rename), or straight (`atomic = false`) like a naive copy.
    pub fn drop_policy(&self, from: &Path, name: &str, atomic: bool) {
        let to = self.policies().join(name);
        if atomic {
            let tmp = self.dir.path().join(format!(".{name}.tmp"));
            std::fs::copy(from, &tmp).unwrap();
            std::fs::rename(&tmp, &to).unwrap();
        } else {
            std::fs::copy(from, &to).unwrap();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Daemon {
    /// Whether the agent process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}
