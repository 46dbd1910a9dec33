//! The agent's TOML configuration.
//!
//! `[pci]` takes every option of Nova 34's `[pci]` section (`nova/conf/pci.py`) with Nova's
//! types and defaults, and `[filter_scheduler] pci_in_placement` (`nova/conf/scheduler.py`),
//! so an operator can paste them from `nova.conf`: `device_spec` and `alias` as lists of JSON
//! strings (a single string is a list of one, as a `MultiStrOpt` given once), booleans as
//! TOML booleans or as oslo.config writes them in `nova.conf` (`"true"`, `"yes"`, `"on"`,
//! `"1"`, any case; [`pcitrack_model::oslo::config_bool`]). The aliases are parsed and
//! validated when the configuration loads, as nova-api and nova-compute do at start, and kept
//! ([`Config::aliases`]). Every other setting has a default, so no configuration file at all
//! is a valid configuration.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pcitrack_model::oslo;
use pcitrack_runtime::AllowedDigests;
use pcitrack_tracker::{AliasConfigError, AliasTable};
use serde::{Deserialize, Deserializer};
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
    /// A `[pci] alias` entry Nova 34 would refuse at start.
    #[error("invalid configuration {path}: [pci] {error}")]
    Alias {
        /// The file.
        path: PathBuf,
        /// The entry and Nova's message.
        error: AliasConfigError,
    },
}

impl ConfigError {
    /// A short, stable name for the kind of failure (`read`, `invalid`, `alias`), the
    /// `reason` label of the agent's failed-reload counter.
    pub fn reason(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Parse { .. } => "invalid",
            ConfigError::Alias { .. } => "alias",
        }
    }
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
    /// Nova's `[filter_scheduler]`, of which pcitrack takes `pci_in_placement`.
    #[serde(default)]
    pub filter_scheduler: FilterSchedulerSection,
    /// The API.
    #[serde(default)]
    pub api: ApiSection,
    /// `[policies]`: which policy files may run, and per-policy settings.
    #[serde(default)]
    pub policies: PoliciesSection,
    /// Nova's `[placement]`: how to reach OpenStack Placement when `[pci]
    /// report_in_placement` is on.
    #[serde(default)]
    pub placement: PlacementSection,
    /// `[pci] alias` parsed by the last check ([`Config::checked`]); empty for a
    /// configuration built in code and never checked.
    #[serde(skip)]
    aliases: AliasTable,
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
    /// wall-clock deadline of one policy call, in milliseconds (default 50).
    pub deadline_ms: Option<u64>,
    /// Memory cap of one policy instance, in MiB (default 64).
    pub memory_mib: Option<usize>,
}

/// `[pci]`, as in Nova 34 (`nova/conf/pci.py`): every key, with Nova's types and defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "RawPciSection")]
pub struct PciSection {
    /// Nova's `[pci] device_spec` (`MultiStrOpt`, default empty): JSON strings, each an
    /// object or a list of objects. The deprecated `passthrough_whitelist` lands here too:
    /// when both are given, oslo.config concatenates them, `passthrough_whitelist`'s entries
    /// first (`_Namespace._get_file_value` prepends each further name's values; checked with
    /// Nova 34), and so does pcitrack, with a deprecation warning.
    pub device_spec: Vec<String>,
    /// Nova's `[pci] alias` (`MultiStrOpt`, default empty): JSON strings, parsed and validated
    /// at load ([`Config::aliases`]).
    pub alias: Vec<String>,
    /// Nova's `[pci] report_in_placement` (`BoolOpt`, default false): PCI inventory reported
    /// to Placement, reached through `[placement]` ([`PlacementSection`]). The value also
    /// reaches the policies (the devspec matcher accepts `one_time_use` only when it is on, as
    /// Nova's `devspec.py` does).
    pub report_in_placement: bool,
}

/// `[pci]` as written, before the deprecated name is folded in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPciSection {
    #[serde(default, deserialize_with = "multi_str")]
    device_spec: Vec<String>,
    #[serde(default, deserialize_with = "multi_str")]
    passthrough_whitelist: Vec<String>,
    #[serde(default, deserialize_with = "multi_str")]
    alias: Vec<String>,
    #[serde(default, deserialize_with = "oslo_bool")]
    report_in_placement: bool,
}

impl From<RawPciSection> for PciSection {
    fn from(raw: RawPciSection) -> Self {
        if !raw.passthrough_whitelist.is_empty() {
            tracing::warn!(
                "[pci] passthrough_whitelist is deprecated (Nova: since Zed); use device_spec"
            );
        }
        let mut device_spec = raw.passthrough_whitelist;
        device_spec.extend(raw.device_spec);
        PciSection {
            device_spec,
            alias: raw.alias,
            report_in_placement: raw.report_in_placement,
        }
    }
}

/// `[filter_scheduler]`: of Nova's scheduler options, the one the PCI rules read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSchedulerSection {
    /// Nova's `[filter_scheduler] pci_in_placement` (`BoolOpt`, default false,
    /// `nova/conf/scheduler.py`): PCI scheduled in Placement. pcitrack applies the alias
    /// rules Nova ties to it (one spec per alias; `resource_class` may stand in for the ids).
    #[serde(default, deserialize_with = "oslo_bool")]
    pub pci_in_placement: bool,
}

/// Nova's `[placement]` section (`nova/conf/placement.py`, which registers keystoneauth's
/// options: `keystoneauth1/loading`), with the names operators already write in
/// `nova.conf`. Read only when `[pci] report_in_placement = true`; checked then at load
/// ([`PlacementSection::check`]).
///
/// `Debug` never prints `password` or `token`.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementSection {
    /// keystoneauth's plugin: `password` (Keystone v3 password) or `admin_token` (a fixed
    /// token, e.g. `admin` for a Placement with `auth_strategy = noauth2`).
    pub auth_type: Option<String>,
    /// `password`: Keystone's v3 endpoint, e.g. `http://keystone:5000/v3`.
    pub auth_url: Option<String>,
    /// `password`: the user.
    pub username: Option<String>,
    /// `password`: the user's password (never logged, never in `/v1/health`).
    pub password: Option<String>,
    /// `password`: the project to scope the token to.
    pub project_name: Option<String>,
    /// `password`: the user's domain (`Default` in most deployments).
    pub user_domain_name: Option<String>,
    /// `password`: the project's domain.
    pub project_domain_name: Option<String>,
    /// `password`: the catalog region of the placement endpoint (any when absent).
    pub region_name: Option<String>,
    /// `password`: the catalog interfaces to try, in order (keystoneauth's `ListOpt`: a list
    /// or one comma-separated string; Nova's default `internal,public`,
    /// `nova/conf/utils.py` `get_ksa_adapter_opts`).
    #[serde(default, deserialize_with = "list_opt")]
    pub valid_interfaces: Option<Vec<String>>,
    /// `admin_token`: the token sent as `X-Auth-Token` (never logged).
    pub token: Option<String>,
    /// `admin_token`: keystoneauth's `endpoint` option of that plugin (`endpoint_override`
    /// does the same and wins).
    pub endpoint: Option<String>,
    /// Placement's URL, bypassing the catalog (required with `admin_token`).
    pub endpoint_override: Option<String>,
    /// The root provider's name (default: the host name, `uname -n`), as Nova's compute
    /// node name.
    pub host: Option<String>,
    /// Use a root provider of that name that pcitrack did not create (for hosts where
    /// pcitrack replaces nova-compute's PCI reporting); default false.
    #[serde(default, deserialize_with = "oslo_bool")]
    pub adopt_root: bool,
    /// Seconds one request to Placement or Keystone may take (default 30; keystoneauth's
    /// session option `timeout` is taken under that name too).
    #[serde(alias = "timeout")]
    pub timeout_secs: Option<u64>,
}

impl std::fmt::Debug for PlacementSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("PlacementSection")
            .field("auth_type", &self.auth_type)
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("project_name", &self.project_name)
            .field("user_domain_name", &self.user_domain_name)
            .field("project_domain_name", &self.project_domain_name)
            .field("region_name", &self.region_name)
            .field("valid_interfaces", &self.valid_interfaces)
            .field("token", &secret(&self.token))
            .field("endpoint", &self.endpoint)
            .field("endpoint_override", &self.endpoint_override)
            .field("host", &self.host)
            .field("adopt_root", &self.adopt_root)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// The `[placement] auth_type` values pcitrack takes.
pub const PLACEMENT_AUTH_TYPES: [&str; 2] = ["password", "admin_token"];

/// What `auth_type = "password"` needs (keystoneauth's v3 password plugin with names).
const PASSWORD_FIELDS: [&str; 6] = [
    "auth_url",
    "username",
    "password",
    "project_name",
    "user_domain_name",
    "project_domain_name",
];

impl PlacementSection {
    /// The root provider's name: `host`, else the host name (`uname -n`, as Nova's
    /// `CONF.host` defaults to `socket.gethostname()`).
    pub fn host_name(&self) -> String {
        self.host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| {
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned()
            })
    }

    /// The catalog interfaces to try (default Nova's `internal`, `public`).
    pub fn valid_interfaces(&self) -> Vec<String> {
        self.valid_interfaces
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec!["internal".into(), "public".into()])
    }

    /// The request timeout (default 30 s).
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs.unwrap_or(30))
    }

    /// Placement's URL when the configuration names it (`endpoint_override`, else the
    /// `admin_token` plugin's `endpoint`); `None`: from Keystone's catalog.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.endpoint_override
            .as_deref()
            .or(self.endpoint.as_deref())
            .filter(|e| !e.is_empty())
    }

    /// The value of one of the fields [`PASSWORD_FIELDS`] names.
    fn field(&self, name: &str) -> Option<&str> {
        match name {
            "auth_url" => self.auth_url.as_deref(),
            "username" => self.username.as_deref(),
            "password" => self.password.as_deref(),
            "project_name" => self.project_name.as_deref(),
            "user_domain_name" => self.user_domain_name.as_deref(),
            "project_domain_name" => self.project_domain_name.as_deref(),
            _ => None,
        }
        .filter(|v| !v.is_empty())
    }

    /// Checks that the section says how to reach Placement: a known `auth_type` with every
    /// field it needs, a URL that is one, a timeout of at least a second, catalog
    /// interfaces keystoneauth knows.
    ///
    /// # Errors
    ///
    /// A message naming the key, e.g. `[placement] auth_type = "password" needs auth_url`.
    pub fn check(&self) -> Result<(), String> {
        let auth_type = self.auth_type.as_deref().ok_or_else(|| {
            format!(
                "[pci] report_in_placement = true needs [placement] auth_type (one of {})",
                PLACEMENT_AUTH_TYPES.join(", ")
            )
        })?;
        match auth_type {
            "password" => {
                if let Some(missing) = PASSWORD_FIELDS.iter().find(|f| self.field(f).is_none()) {
                    return Err(format!(
                        "[placement] auth_type = \"password\" needs {missing}"
                    ));
                }
            }
            "admin_token" => {
                if self.token.as_deref().is_none_or(str::is_empty) {
                    return Err("[placement] auth_type = \"admin_token\" needs token".into());
                }
                if self.endpoint_url().is_none() {
                    return Err(
                        "[placement] auth_type = \"admin_token\" needs endpoint_override \
                         (Placement's URL: a fixed token has no service catalog)"
                            .into(),
                    );
                }
            }
            other => {
                return Err(format!(
                    "[placement] auth_type = {other:?} is not supported: expected one of {}",
                    PLACEMENT_AUTH_TYPES.join(", ")
                ));
            }
        }
        for (key, url) in [
            ("endpoint_override", self.endpoint_override.as_deref()),
            ("endpoint", self.endpoint.as_deref()),
            ("auth_url", self.auth_url.as_deref()),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!(
                    "[placement] {key} = {url:?} is not an http:// or https:// URL"
                ));
            }
        }
        if self.timeout_secs == Some(0) {
            return Err("[placement] timeout_secs must be at least 1".into());
        }
        // keystoneauth refuses any other interface (`keystoneauth1/loading/adapter.py`
        // `process_conf_options`); an unknown one would only fail later, at the catalog.
        if let Some(bad) = self
            .valid_interfaces
            .iter()
            .flatten()
            .find(|i| !["public", "internal", "admin"].contains(&i.as_str()))
        {
            return Err(format!(
                "[placement] valid_interfaces: {bad:?} is not a valid value (public, internal \
                 or admin)"
            ));
        }
        if self.host.as_deref() == Some("") {
            return Err(
                "[placement] host must not be empty (leave it out for the host name)".into(),
            );
        }
        Ok(())
    }
}

/// keystoneauth's `ListOpt`: a TOML list of strings, or one comma-separated string as
/// `nova.conf` writes it.
fn list_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let items = multi_str(d)?
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    Ok(Some(items))
}

/// A `MultiStrOpt`: a list of strings, or one string (an option given once).
fn multi_str<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "expected a string or a list of strings")]
    enum Multi {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Multi::deserialize(d)? {
        Multi::One(s) => vec![s],
        Multi::Many(v) => v,
    })
}

/// A `BoolOpt`: a TOML boolean, or a string oslo.config reads as one.
fn oslo_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "expected a boolean or one of oslo.config's words (true/false, yes/no, on/off, 1/0)"
    )]
    enum Word {
        Bool(bool),
        Text(String),
    }
    match Word::deserialize(d)? {
        Word::Bool(b) => Ok(b),
        Word::Text(s) => oslo::config_bool(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "{e}: oslo.config takes true/false, yes/no, on/off or 1/0, in any case"
            ))
        }),
    }
}

/// `[policies]`: the optional digest allowlist, and one table per policy
/// (`[policies.<name>]`) that reaches that policy's `init`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct PoliciesSection {
    /// `allowed_sha256`: when set, only policy files whose SHA-256 (lower-case hex) is listed
    /// are loaded; the embedded defaults are always allowed. Absent: any `.wasm` file runs.
    pub allowed_sha256: Option<Vec<String>>,
    /// Per-policy settings, by policy name.
    pub settings: BTreeMap<String, toml::Table>,
}

impl TryFrom<toml::Table> for PoliciesSection {
    type Error = String;

    fn try_from(table: toml::Table) -> Result<Self, String> {
        let mut section = PoliciesSection::default();
        for (key, value) in table {
            match (key.as_str(), value) {
                ("allowed_sha256", toml::Value::Array(list)) => {
                    let entries = list
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| match v {
                            toml::Value::String(s) => Ok(s),
                            other => Err(format!(
                                "[policies] allowed_sha256[{i}] = {other}: expected a string of \
                                 64 hex digits (a SHA-256 digest)"
                            )),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    section.allowed_sha256 = Some(entries);
                }
                ("allowed_sha256", other) => {
                    return Err(format!(
                        "[policies] allowed_sha256 = {other}: expected a list of SHA-256 digests \
                         (64 hex digits each)"
                    ));
                }
                (_, toml::Value::Table(t)) => {
                    section.settings.insert(key, t);
                }
                (_, other) => {
                    return Err(format!(
                        "[policies] {key} = {other}: per-policy settings go in a table \
                         ([policies.{key}]); the only other key is allowed_sha256"
                    ));
                }
            }
        }
        Ok(section)
    }
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
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Parse`] when it is
    /// not valid (the message names the key).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses configuration text; `path` only names it in errors.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`], naming the key and what is wrong with it.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.checked(path)
    }

    /// This configuration validated ([`Config::validate`]), with its `[pci] alias` parsed and
    /// kept for [`Config::aliases`]. Every way of loading a configuration ends here.
    ///
    /// # Errors
    ///
    /// As [`Config::validate`].
    pub fn checked(mut self, path: &Path) -> Result<Config, ConfigError> {
        self.aliases = self.check(path)?;
        Ok(self)
    }

    /// The `[pci] alias` table, parsed and validated with Nova 34's rules when the
    /// configuration loaded (`nova/pci/request.py` `get_alias_from_config`, under this
    /// configuration's `[filter_scheduler] pci_in_placement`).
    pub fn aliases(&self) -> &AliasTable {
        &self.aliases
    }

    /// The state directory, as [`resolve_state_dir`] finds it for this process (its
    /// effective uid and environment).
    pub fn state_dir(&self) -> PathBuf {
        resolve_state_dir(
            self.agent.state_dir.as_deref(),
            rustix::process::geteuid().as_raw(),
            &|name| std::env::var_os(name),
        )
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

    /// Checks what parsing cannot: settings that only make sense together, the digest
    /// allowlist's entries, and the `[pci] alias` entries (Nova 34's schema and rules).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] naming the setting; [`ConfigError::Alias`] naming the alias
    /// entry, with Nova's message.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.check(path).map(drop)
    }

    fn check(&self, path: &Path) -> Result<AliasTable, ConfigError> {
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
        if self.pci.report_in_placement {
            self.placement.check().map_err(bad)?;
        }
        self.allowed_digests()
            .map_err(|e| bad(format!("[policies] {e}")))?;
        AliasTable::from_config(&self.pci.alias, self.filter_scheduler.pci_in_placement).map_err(
            |error| ConfigError::Alias {
                path: path.to_path_buf(),
                error,
            },
        )
    }

    /// `[policies] allowed_sha256` parsed: `None` when absent (any policy file may run).
    ///
    /// # Errors
    ///
    /// An entry that is not 64 hex digits, naming it ([`Config::parse`] already refuses such a
    /// file, so this fails only on a configuration built in code).
    pub fn allowed_digests(&self) -> Result<Option<AllowedDigests>, pcitrack_runtime::DigestError> {
        self.policies
            .allowed_sha256
            .as_deref()
            .map(AllowedDigests::parse)
            .transpose()
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
    /// Nova's `device_spec` and `alias` (lists of strings), `report_in_placement` and
    /// `pci_in_placement` (booleans) (every policy may want them), plus the keys of
    /// `[policies.<name>]`.
    pub fn policy_config(&self, name: &str) -> String {
        let mut object = serde_json::Map::new();
        object.insert("device_spec".into(), self.pci.device_spec.clone().into());
        object.insert("alias".into(), self.pci.alias.clone().into());
        object.insert(
            "report_in_placement".into(),
            self.pci.report_in_placement.into(),
        );
        object.insert(
            "pci_in_placement".into(),
            self.filter_scheduler.pci_in_placement.into(),
        );
        if let Some(table) = self.policies.settings.get(name) {
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

/// Where the state (database, API socket, compiled-policy cache) lives, in this order:
///
/// 1. `[agent] state_dir` (or `--state-dir`), when set;
/// 2. `$STATE_DIRECTORY`, which systemd sets from the unit's `StateDirectory=` (the first
///    entry when it lists several, colon-separated);
/// 3. `/var/lib/pcitrack` when the *effective* uid is 0 (not `$USER`, which `sudo` and
///    containers leave stale);
/// 4. `$XDG_STATE_HOME/pcitrack` (the XDG base directory specification; a relative value is
///    ignored, as the specification says);
/// 5. `$HOME/.local/state/pcitrack` (the specification's default for `XDG_STATE_HOME`), or
///    `./.local/state/pcitrack` without a `HOME`.
///
/// A pure function of its inputs, so the order is testable whoever runs the tests.
pub fn resolve_state_dir(
    configured: Option<&Path>,
    euid: u32,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> PathBuf {
    if let Some(dir) = configured {
        return dir.to_path_buf();
    }
    let non_empty = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dirs) = non_empty("STATE_DIRECTORY") {
        let first = dirs
            .as_bytes()
            .split(|&b| b == b':')
            .find(|d| !d.is_empty());
        if let Some(first) = first {
            return PathBuf::from(OsStr::from_bytes(first));
        }
    }
    if euid == 0 {
        return PathBuf::from("/var/lib/pcitrack");
    }
    if let Some(xdg) = non_empty("XDG_STATE_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return xdg.join("pcitrack");
    }
    non_empty("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".local/state/pcitrack")
}

/// Settings given on `pcitrack run`'s command line. They win over the file, also after a
/// reload. One struct for the flags and their effect: a new flag is a field here and a line
/// in [`Overrides::apply`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Root of the sysfs tree (default /sys).
    #[arg(long, value_name = "DIR")]
    pub sysfs_root: Option<PathBuf>,
    /// Policies directory (default <state_dir>/policies).
    #[arg(long, value_name = "DIR")]
    pub policies_dir: Option<PathBuf>,
    /// State directory: database, socket, cache.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Database file (default <state_dir>/pcitrack.db).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// API unix socket (default <state_dir>/pcitrack.sock), mode 0600.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also serve the API on TCP at this address (needs [api] token in the configuration).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Seconds between full resyncs (default 300).
    #[arg(long = "resync-interval", value_name = "SECS")]
    pub resync_interval_secs: Option<u64>,
    /// Also take uevents from this unix datagram socket (a relay from a host, or tests).
    #[arg(long, value_name = "PATH")]
    pub uevent_relay: Option<PathBuf>,
    /// Do not subscribe to the kernel's uevents (rely on the relay and the periodic resync).
    #[arg(long)]
    pub no_netlink: bool,
}

impl Overrides {
    /// `config` with these settings applied.
    pub fn apply(&self, mut config: Config) -> Config {
        fn set<T: Clone>(field: &mut Option<T>, value: &Option<T>) {
            if let Some(v) = value {
                *field = Some(v.clone());
            }
        }
        let a = &mut config.agent;
        set(&mut a.sysfs_root, &self.sysfs_root);
        set(&mut a.policies_dir, &self.policies_dir);
        set(&mut a.state_dir, &self.state_dir);
        set(&mut a.db, &self.db);
        set(&mut a.resync_interval_secs, &self.resync_interval_secs);
        set(&mut a.uevent_relay, &self.uevent_relay);
        if self.no_netlink {
            a.netlink = Some(false);
        }
        set(&mut config.api.socket, &self.socket);
        set(&mut config.api.listen, &self.listen);
        config
    }

    /// Reads the configuration file (or takes the defaults) and applies these settings.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed, or the result is invalid (see [`Config::validate`]).
    pub fn effective(&self, path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        self.apply(config)
            .checked(path.unwrap_or(Path::new("command line")))
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

    /// A `[pci]` section of a Nova 34 deployment, as nova.conf writes booleans.
    const NOVA_34: &str = r#"
[pci]
report_in_placement = "True"
device_spec = ['{"vendor_id": "8086", "product_id": "1521", "resource_class": "CUSTOM_NIC", "traits": "fast"}']
alias = ['{"name": "nic", "resource_class": "CUSTOM_NIC", "traits": "fast", "live_migratable": "yes"}']

[filter_scheduler]
pci_in_placement = "yes"

[placement]
auth_type = "password"
auth_url = "http://controller:5000/v3"
username = "placement"
password = "secret"
project_name = "service"
user_domain_name = "Default"
project_domain_name = "Default"
"#;

    #[test]
    fn regression_novas_34_pci_section_is_taken_with_its_booleans() {
        let c = Config::parse(NOVA_34, Path::new("n.toml")).unwrap();
        assert!(c.pci.report_in_placement && c.filter_scheduler.pci_in_placement);
        let spec = &c.aliases().aliases["nic"].specs[0];
        assert_eq!(spec["resource_class"], "CUSTOM_NIC");
        assert_eq!(spec["live_migratable"], "true");
        let v: serde_json::Value = serde_json::from_str(&c.policy_config("matcher")).unwrap();
        assert_eq!(v["report_in_placement"], true);
        assert_eq!(v["pci_in_placement"], true);
        // TOML booleans too, and Nova's defaults when absent.
        let c = Config::parse(
            "[pci]
report_in_placement = false
[filter_scheduler]
pci_in_placement = true
",
            Path::new("n.toml"),
        )
        .unwrap();
        assert!(!c.pci.report_in_placement && c.filter_scheduler.pci_in_placement);
        let v: serde_json::Value =
            serde_json::from_str(&Config::default().policy_config("x")).unwrap();
        assert_eq!(v["report_in_placement"], false);
        assert_eq!(v["pci_in_placement"], false);
    }

    #[test]
    fn a_boolean_oslo_config_refuses_is_refused_naming_the_key() {
        let e = Config::parse(
            "[pci]
report_in_placement = 'y'
",
            Path::new("b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("report_in_placement") && e.contains("Unexpected boolean value 'y'"),
            "{e}"
        );
        let e = Config::parse(
            "[filter_scheduler]
enabled_filters = []
",
            Path::new("b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("enabled_filters"), "{e}");
        let e = Config::parse(
            "[pci]
report_in_placment = true
",
            Path::new("b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("report_in_placment"), "{e}");
    }

    #[test]
    fn passthrough_whitelist_comes_before_device_spec_as_in_oslo_config() {
        let c = Config::parse(
            "[pci]
device_spec = ['{\"vendor_id\": \"2222\"}']
             passthrough_whitelist = ['{\"vendor_id\": \"1111\"}']
             alias = '{\"name\": \"a\", \"vendor_id\": \"1111\", \"product_id\": \"0001\"}'
",
            Path::new("w.toml"),
        )
        .unwrap();
        assert_eq!(
            c.pci.device_spec,
            [r#"{"vendor_id": "1111"}"#, r#"{"vendor_id": "2222"}"#]
        );
        assert_eq!(c.pci.alias.len(), 1, "one string is a list of one");
        assert!(c.aliases().aliases.contains_key("a"));
    }

    #[test]
    fn regression_a_bad_alias_refuses_the_configuration_naming_the_entry() {
        let text = r#"
[pci]
device_spec = ['{"vendor_id": "8086"}']
alias = ['{"name": "vf", "vendor_id": "8086", "product_id": "154c"}',
         '{"name": "vf2", "vendor_id": "8086", "product_id": "154c", "device_typ": "type-VF"}']
"#;
        let e = Config::parse(text, Path::new("a.toml")).unwrap_err();
        assert_eq!(e.reason(), "alias");
        let e = e.to_string();
        assert!(
            e.contains("a.toml")
                && e.contains("[pci] alias[1]")
                && e.contains(
                    "Invalid PCI alias definition: Additional properties are not allowed \
                     ('device_typ' was unexpected)"
                ),
            "{e}"
        );
        // resource_class stands in for the ids only under [filter_scheduler] pci_in_placement.
        let rc = "[pci]\nalias = ['{\"name\": \"g\", \"resource_class\": \"CUSTOM_G\"}']\n";
        let e = Config::parse(rc, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not have vendor_id and product_id"), "{e}");
        let ok = format!("{rc}[filter_scheduler]\npci_in_placement = true\n");
        assert!(Config::parse(&ok, Path::new("a.toml")).is_ok());
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

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_state_directory_is_resolved_in_order_whoever_runs_the_test() {
        let all = [
            ("STATE_DIRECTORY", "/run/sd/pcitrack:/run/sd/other"),
            ("XDG_STATE_HOME", "/home/u/.state"),
            ("HOME", "/home/u"),
        ];
        let resolve = |configured: Option<&str>, euid: u32, vars: &[(&str, &str)]| {
            resolve_state_dir(configured.map(Path::new), euid, &env(vars))
        };
        // The configuration wins over everything.
        assert_eq!(resolve(Some("/etc/x"), 0, &all), Path::new("/etc/x"));
        // Then systemd's StateDirectory= (its first entry), for root or not.
        for euid in [0, 1000] {
            assert_eq!(resolve(None, euid, &all), Path::new("/run/sd/pcitrack"));
        }
        assert_eq!(
            resolve(None, 1000, &[("STATE_DIRECTORY", ":/run/sd/b")]),
            Path::new("/run/sd/b")
        );
        // Then root's system directory: the effective uid decides, not $USER.
        let no_systemd = &all[1..];
        assert_eq!(resolve(None, 0, no_systemd), Path::new("/var/lib/pcitrack"));
        let user_root = [("USER", "root"), ("HOME", "/home/u")];
        assert_eq!(
            resolve(None, 1000, &user_root),
            Path::new("/home/u/.local/state/pcitrack")
        );
        // Then XDG_STATE_HOME, then HOME's default; empty and relative values are ignored.
        assert_eq!(
            resolve(None, 1000, no_systemd),
            Path::new("/home/u/.state/pcitrack")
        );
        assert_eq!(
            resolve(
                None,
                1000,
                &[
                    ("STATE_DIRECTORY", ""),
                    ("XDG_STATE_HOME", "rel"),
                    ("HOME", "/h")
                ]
            ),
            Path::new("/h/.local/state/pcitrack")
        );
        assert_eq!(
            resolve(None, 1000, &[]),
            Path::new("./.local/state/pcitrack")
        );
    }

    #[test]
    fn a_run_flag_overrides_its_setting_and_leaves_the_others() {
        let file = Config::parse(
            "[agent]\nsysfs_root = '/from/file'\ndb = '/file.db'\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let flags = Overrides {
            sysfs_root: Some("/from/flag".into()),
            no_netlink: true,
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let c = flags.apply(file);
        assert_eq!(c.agent.sysfs_root.as_deref(), Some(Path::new("/from/flag")));
        assert_eq!(c.agent.db.as_deref(), Some(Path::new("/file.db")));
        assert_eq!(c.agent.netlink, Some(false));
        assert_eq!(c.api.listen.as_deref(), Some("127.0.0.1:1"));
    }

    const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn the_digest_allowlist_sits_beside_per_policy_tables() {
        let c = Config::parse(
            &format!(
                "[policies]\nallowed_sha256 = ['{}']\n[policies.grace]\nmissing_syncs = 3\n",
                DIGEST.to_uppercase()
            ),
            Path::new("c.toml"),
        )
        .unwrap();
        assert!(c.allowed_digests().unwrap().unwrap().permits(b""));
        let v: serde_json::Value = serde_json::from_str(&c.policy_config("grace")).unwrap();
        assert_eq!(v["missing_syncs"], 3);
        assert!(Config::default().allowed_digests().unwrap().is_none());
    }

    #[test]
    fn an_allowlist_entry_that_is_not_a_digest_refuses_the_configuration_naming_it() {
        let e = Config::parse(
            &format!("[policies]\nallowed_sha256 = ['{DIGEST}', 'deadbeef']\n"),
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("c.toml") && e.contains("allowed_sha256 entry 1") && e.contains("deadbeef"),
            "{e}"
        );
        let e = Config::parse("[policies]\nallowed_sha256 = [1]\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed_sha256[0]"), "{e}");
        let e = Config::parse("[policies]\ngrace = 3\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[policies.grace]"), "{e}");
    }

    const PASSWORD: &str = "[pci]\nreport_in_placement = true\n[placement]\nauth_type = 'password'\n\
        auth_url = 'http://keystone:5000/v3'\nusername = 'placement'\npassword = 's3cret-pw'\n\
        project_name = 'service'\nuser_domain_name = 'Default'\nproject_domain_name = 'Default'\n\
        region_name = 'RegionOne'\nvalid_interfaces = 'internal, public'\ntimeout = 7\n";

    #[test]
    fn novas_placement_section_is_taken_with_its_option_names() {
        let c = Config::parse(PASSWORD, Path::new("p.toml")).unwrap();
        let p = &c.placement;
        assert_eq!(p.auth_type.as_deref(), Some("password"));
        assert_eq!(p.valid_interfaces(), ["internal", "public"]);
        assert_eq!(p.timeout(), std::time::Duration::from_secs(7));
        assert!(!p.adopt_root);
        assert_eq!(
            p.host_name(),
            rustix::system::uname().nodename().to_str().unwrap()
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret-pw") && debug.contains("***"),
            "{debug}"
        );
        let t = Config::parse(
            "[pci]\nreport_in_placement = 'yes'\n[placement]\nauth_type = 'admin_token'\n\
             token = 'admin'\nendpoint_override = 'http://127.0.0.1:8778'\nhost = 'cn1'\n\
             adopt_root = 'true'\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(t.placement.host_name(), "cn1");
        assert_eq!(t.placement.endpoint_url(), Some("http://127.0.0.1:8778"));
        assert!(t.placement.adopt_root);
        assert_eq!(t.placement.timeout(), std::time::Duration::from_secs(30));
        assert_eq!(
            Config::default().placement.valid_interfaces(),
            ["internal", "public"]
        );
    }

    #[test]
    fn a_placement_section_missing_what_its_auth_type_needs_is_refused_naming_the_key() {
        let refused = |text: &str| {
            Config::parse(text, Path::new("p.toml"))
                .unwrap_err()
                .to_string()
        };
        for field in PASSWORD_FIELDS {
            let text: String = PASSWORD
                .lines()
                .filter(|l| !l.starts_with(&format!("{field} =")))
                .map(|l| format!("{l}\n"))
                .collect();
            let e = refused(&text);
            assert!(
                e.contains(&format!(
                    "[placement] auth_type = \"password\" needs {field}"
                )) && e.contains("p.toml"),
                "{e}"
            );
        }
        let e = refused("[pci]\nreport_in_placement = true\n");
        assert!(e.contains("needs [placement] auth_type"), "{e}");
        let e = refused("[pci]\nreport_in_placement = true\n[placement]\nauth_type = 'v3token'\n");
        assert!(
            e.contains("auth_type = \"v3token\" is not supported"),
            "{e}"
        );
        let e = refused(
            "[pci]\nreport_in_placement = true\n[placement]\nauth_type = 'admin_token'\ntoken = 'admin'\n",
        );
        assert!(e.contains("\"admin_token\" needs endpoint_override"), "{e}");
        let e = refused(
            "[pci]\nreport_in_placement = true\n[placement]\nauth_type = 'admin_token'\n\
             endpoint_override = 'http://x'\n",
        );
        assert!(e.contains("\"admin_token\" needs token"), "{e}");
        let e = refused(
            "[pci]\nreport_in_placement = true\n[placement]\nauth_type = 'admin_token'\n\
             token = 'admin'\nendpoint_override = '127.0.0.1:8778'\n",
        );
        assert!(
            e.contains("endpoint_override = \"127.0.0.1:8778\" is not an http"),
            "{e}"
        );
        let e = refused("[placement]\nauth_typ = 'password'\n");
        assert!(e.contains("auth_typ"), "{e}");
        // Off: the section is not needed, and an incomplete one is not checked.
        assert!(
            Config::parse("[placement]\nauth_type = 'password'\n", Path::new("p.toml")).is_ok()
        );
    }

    #[test]
    fn no_file_means_defaults() {
        let c = Config::default();
        assert_eq!(c.sysfs_root(), PathBuf::from("/sys"));
        assert_eq!(c.limits(), pcitrack_runtime::Limits::default());
        assert!(c.db().ends_with("pcitrack.db"));
    }
}
