//! The agent's TOML configuration.
//!
//! `[pci]` takes Nova's options verbatim (`device_spec` and `alias` as lists of JSON
//! strings), so an operator can paste them from `nova.conf`. Every other setting has a
//! default, so no configuration file at all is a valid configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (line, column, key).
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where things are, and how often to resync.
    #[serde(default)]
    pub agent: AgentSection,
    /// Per-call policy limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Nova's `[pci]` options.
    #[serde(default)]
    pub pci: PciSection,
    /// The API.
    #[serde(default)]
    pub api: ApiSection,
    /// Per-policy settings, by policy name; each table reaches that policy's `init`.
    #[serde(default)]
    pub policies: BTreeMap<String, toml::Table>,
}

/// `[agent]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Root of the sysfs tree to read (default `/sys`).
    pub sysfs_root: Option<PathBuf>,
    /// Directory of policy files (default `<state_dir>/policies`).
    pub policies_dir: Option<PathBuf>,
    /// State directory: database, socket, compiled-policy cache.
    pub state_dir: Option<PathBuf>,
    /// Database file (default `<state_dir>/pcitrack.db`).
    pub db: Option<PathBuf>,
    /// Seconds between full resyncs in the daemon (default 300).
    pub resync_interval_secs: Option<u64>,
    /// `text` (default) or `json`.
    pub log_format: Option<String>,
    /// Listen to the kernel's uevent netlink socket (default true).
    pub netlink: Option<bool>,
    /// Also take uevents from this unix datagram socket (created with mode 0600): for a
    /// container whose host relays its uevents, and for tests.
    pub uevent_relay: Option<PathBuf>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// CPU deadline of one policy call, in milliseconds (default 50).
    pub deadline_ms: Option<u64>,
    /// Memory cap of one policy instance, in MiB (default 64).
    pub memory_mib: Option<usize>,
}

/// `[pci]`, as in Nova.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciSection {
    /// Nova's `[pci] device_spec`: JSON strings, each an object or a list of objects.
    #[serde(default, alias = "passthrough_whitelist")]
    pub device_spec: Vec<String>,
    /// Nova's `[pci] alias`: JSON strings.
    #[serde(default)]
    pub alias: Vec<String>,
}

/// `[api]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Unix socket path (default `<state_dir>/pcitrack.sock`).
    pub socket: Option<PathBuf>,
    /// Optional TCP address; requires `token`.
    pub listen: Option<String>,
    /// Bearer token for TCP clients.
    pub token: Option<String>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses configuration text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// The state directory: `[agent] state_dir`, else `/var/lib/pcitrack` for root and
    /// `$XDG_STATE_HOME/pcitrack` (or `~/.local/state/pcitrack`) for anyone else.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.agent.state_dir {
            return dir.clone();
        }
        let is_root = std::env::var_os("USER").is_some_and(|u| u == "root")
            || std::fs::metadata("/proc/self")
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
                .unwrap_or(false);
        if is_root {
            return PathBuf::from("/var/lib/pcitrack");
        }
        if let Some(xdg) = std::env::var_os("XDG_STATE_HOME") {
            return PathBuf::from(xdg).join("pcitrack");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/state/pcitrack")
    }

    /// The sysfs root (default `/sys`).
    pub fn sysfs_root(&self) -> PathBuf {
        self.agent
            .sysfs_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/sys"))
    }

    /// The policies directory (default `<state_dir>/policies`).
    pub fn policies_dir(&self) -> PathBuf {
        self.agent
            .policies_dir
            .clone()
            .unwrap_or_else(|| self.state_dir().join("policies"))
    }

    /// The database file (default `<state_dir>/pcitrack.db`).
    pub fn db(&self) -> PathBuf {
        self.agent
            .db
            .clone()
            .unwrap_or_else(|| self.state_dir().join("pcitrack.db"))
    }

    /// Seconds between full resyncs (default 300).
    pub fn resync_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.agent.resync_interval_secs.unwrap_or(300).max(1))
    }

    /// The API's unix socket (default `<state_dir>/pcitrack.sock`).
    pub fn socket(&self) -> PathBuf {
        self.api
            .socket
            .clone()
            .unwrap_or_else(|| self.state_dir().join("pcitrack.sock"))
    }

    /// Checks what parsing cannot: settings that only make sense together.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        if let Some(listen) = &self.api.listen {
            listen.parse::<std::net::SocketAddr>().map_err(|e| {
                bad(format!(
                    "[api] listen = {listen:?} is not an address like 127.0.0.1:7070: {e}"
                ))
            })?;
            if self
                .api
                .token
                .as_deref()
                .is_none_or(|t| t.trim().len() < 16)
            {
                return Err(bad(format!(
                    "[api] listen = {listen:?} needs [api] token (at least 16 characters): \
                     TCP clients must present it as a bearer token"
                )));
            }
        }
        if let Some(f) = &self.agent.log_format
            && f != "text"
            && f != "json"
        {
            return Err(bad(format!(
                "[agent] log_format = {f:?}: expected \"text\" or \"json\""
            )));
        }
        if self.agent.resync_interval_secs == Some(0) {
            return Err(bad("[agent] resync_interval_secs must be at least 1".into()));
        }
        Ok(())
    }

    /// Where compiled policies are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.state_dir().join("cache")
    }

    /// The policy limits.
    pub fn limits(&self) -> pcitrack_runtime::Limits {
        let mut limits = pcitrack_runtime::Limits::default();
        if let Some(ms) = self.limits.deadline_ms {
            limits.deadline = std::time::Duration::from_millis(ms);
        }
        if let Some(mib) = self.limits.memory_mib {
            limits.memory_bytes = mib << 20;
        }
        limits
    }

    /// The configuration string the policy `name` receives in `init`: a JSON object with
    /// Nova's `device_spec` and `alias` (every policy may want them), plus the keys of
    /// `[policies.<name>]`.
    pub fn policy_config(&self, name: &str) -> String {
        let mut object = serde_json::Map::new();
        object.insert("device_spec".into(), self.pci.device_spec.clone().into());
        object.insert("alias".into(), self.pci.alias.clone().into());
        if let Some(table) = self.policies.get(name) {
            for (k, v) in table {
                object.insert(
                    k.clone(),
                    serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
                );
            }
        }
        serde_json::Value::Object(object).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_novas_pci_section_verbatim() {
        let c = Config::parse(
            r#"
[pci]
device_spec = ['{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet1"}',
               '[{"address": "*:0a:00.*"}, {"devname": "ens1f0", "trusted": "true"}]']
alias = ['{"name": "nic", "vendor_id": "15b3", "product_id": "1018", "device_type": "type-VF"}']

[policies.grace]
missing_syncs = 3
"#,
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.pci.device_spec.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&c.policy_config("grace")).unwrap();
        assert_eq!(v["missing_syncs"], 3);
        assert_eq!(v["device_spec"][1], c.pci.device_spec[1]);
        assert_eq!(v["alias"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let e = Config::parse("[agent]\nsysfs_rot = '/sys'\n", Path::new("bad.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("bad.toml") && msg.contains("sysfs_rot"),
            "{msg}"
        );
    }

    #[test]
    fn tcp_without_a_token_is_refused_and_says_why() {
        let e = Config::parse("[api]\nlisten = '127.0.0.1:7070'\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token") && e.contains("c.toml"), "{e}");
        let e = Config::parse(
            "[api]\nlisten = 'localhost'\ntoken = '0123456789abcdef'\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an address"), "{e}");
        let ok = Config::parse(
            "[api]\nlisten = '127.0.0.1:7070'\ntoken = '0123456789abcdef'\n",
            Path::new("c.toml"),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn no_file_means_defaults() {
        let c = Config::default();
        assert_eq!(c.sysfs_root(), PathBuf::from("/sys"));
        assert_eq!(c.limits(), pcitrack_runtime::Limits::default());
        assert!(c.db().ends_with("pcitrack.db"));
    }
}
