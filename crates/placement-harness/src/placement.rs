//! A real Placement 16.0.0 served by gunicorn from the Placement virtualenv.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::process::{self, Server};
use crate::{Keystone, MICROVERSION, Postgres};

/// How a Placement is run beyond its database: gunicorn workers and threads, and Placement's
/// `[placement] allocation_conflict_retry_count`.
#[derive(Clone, Debug)]
pub struct PlacementOptions {
    /// gunicorn `--workers` (API processes).
    pub workers: u32,
    /// gunicorn `--threads` per worker.
    pub threads: u32,
    /// `[placement] allocation_conflict_retry_count`; `None` keeps Placement's default (10),
    /// under which Placement 16.0.0 on PostgreSQL double-allocates the last unit in about half
    /// of truly concurrent races (PLACEMENT.md, "Double allocation under real concurrency").
    pub allocation_conflict_retry_count: Option<u32>,
}

impl PlacementOptions {
    /// `workers` processes of one thread each, Placement's default retry count.
    pub fn workers(workers: u32) -> PlacementOptions {
        PlacementOptions {
            workers,
            threads: 1,
            allocation_conflict_retry_count: None,
        }
    }
}

/// A running Placement: `auth_strategy = noauth2` (token `admin`) unless started with
/// [`Placement::start_sqlite_keystone`]. Dropping it stops gunicorn's whole process group;
/// its folder (configuration, SQLite database, logs) goes with it.
pub struct Placement {
    python: PathBuf,
    dir: TempDir,
    port: u16,
    url: String,
    options: PlacementOptions,
    token: String,
    server: Option<Server>,
    agent: ureq::Agent,
}

impl Placement {
    /// Placement on SQLite in a temporary folder: noauth2, one worker, one thread (SQLite
    /// works only with one process and one thread, PLACEMENT.md).
    ///
    /// # Panics
    ///
    /// When the database cannot be synced or Placement does not answer (the message names
    /// the log and carries its tail).
    pub fn start_sqlite(python: &Path) -> Placement {
        let dir = temp_dir();
        let db = format!("sqlite:///{}", dir.path().join("placement.db").display());
        let conf = config(&db, NOAUTH, None);
        Placement::launch(
            python,
            dir,
            conf,
            PlacementOptions::workers(1),
            "admin".into(),
        )
    }

    /// Placement on a fresh database of `pg` with `workers` gunicorn workers (one thread
    /// each) and Placement's default `allocation_conflict_retry_count` (10).
    ///
    /// # Panics
    ///
    /// As [`Placement::start_sqlite`], and when the database cannot be created.
    pub fn start_postgres(python: &Path, pg: &Postgres, workers: u32) -> Placement {
        Placement::start_postgres_with(python, pg, &PlacementOptions::workers(workers))
    }

    /// Placement on a fresh database of `pg`, run as `options` say.
    ///
    /// # Panics
    ///
    /// As [`Placement::start_postgres`].
    pub fn start_postgres_with(
        python: &Path,
        pg: &Postgres,
        options: &PlacementOptions,
    ) -> Placement {
        let dir = temp_dir();
        let db = pg.url(&pg.create_database());
        let conf = config(&db, NOAUTH, options.allocation_conflict_retry_count);
        Placement::launch(python, dir, conf, options.clone(), "admin".into())
    }

    /// Placement on SQLite behind keystonemiddleware (`auth_strategy = keystone`), checking
    /// tokens against `ks`. Registers the `placement` service, its public and internal
    /// endpoints (region `RegionOne`) and a `placement` service user in Keystone. [`get`] and
    /// [`request`] send a token of Keystone's admin.
    ///
    /// [`get`]: Placement::get
    /// [`request`]: Placement::request
    ///
    /// # Panics
    ///
    /// As [`Placement::start_sqlite`], and when Keystone refuses the registration.
    pub fn start_sqlite_keystone(python: &Path, ks: &Keystone) -> Placement {
        let dir = temp_dir();
        let port = process::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let (user, password) = ks.register_placement(&url);
        let auth = format!(
            "[api]\nauth_strategy = keystone\n\n[keystone_authtoken]\n\
             www_authenticate_uri = {auth_url}\nauth_url = {auth_url}\nauth_type = password\n\
             username = {user}\npassword = {password}\nproject_name = service\n\
             user_domain_name = Default\nproject_domain_name = Default\n\
             region_name = {region}\n",
            auth_url = ks.auth_url(),
            region = ks.region,
        );
        let db = format!("sqlite:///{}", dir.path().join("placement.db").display());
        let conf = config(&db, &auth, None);
        let token = ks.token();
        Placement::launch_on(
            python,
            dir,
            conf,
            PlacementOptions::workers(1),
            token,
            Some(port),
        )
    }

    fn launch(
        python: &Path,
        dir: TempDir,
        conf: String,
        options: PlacementOptions,
        token: String,
    ) -> Placement {
        Placement::launch_on(python, dir, conf, options, token, None)
    }

    fn launch_on(
        python: &Path,
        dir: TempDir,
        conf: String,
        options: PlacementOptions,
        token: String,
        port: Option<u16>,
    ) -> Placement {
        let conf_path = dir.path().join("placement.conf");
        std::fs::write(&conf_path, conf)
            .unwrap_or_else(|e| panic!("writing {}: {e}", conf_path.display()));
        let manage = python.with_file_name("placement-manage");
        let mut sync = Command::new(&manage);
        sync.arg("--config-file")
            .arg(&conf_path)
            .args(["db", "sync"]);
        process::run_logged(
            sync,
            "placement-manage db sync",
            &dir.path().join("db-sync.log"),
        );
        let mut placement = Placement {
            python: python.to_path_buf(),
            dir,
            port: port.unwrap_or(0),
            url: String::new(),
            options,
            token,
            server: None,
            agent: process::agent(Duration::from_secs(300)),
        };
        placement.serve(port.is_none());
        placement
    }

    /// Starts gunicorn; with `new_port`, on a fresh free port (retrying when another process
    /// took it first), else on the port it had.
    fn serve(&mut self, new_port: bool) {
        let mut last = String::new();
        for _ in 0..5 {
            if new_port {
                self.port = process::free_port();
            }
            self.url = format!("http://127.0.0.1:{}", self.port);
            let log = self.dir.path().join("gunicorn.log");
            let mut cmd = Command::new(&self.python);
            cmd.args(["-m", "gunicorn", "--workers"])
                .arg(self.options.workers.to_string())
                .arg("--threads")
                .arg(self.options.threads.to_string())
                .args(["--timeout", "300", "--graceful-timeout", "5", "--bind"])
                .arg(format!("127.0.0.1:{}", self.port))
                .arg("--access-logfile")
                .arg(self.dir.path().join("access.log"))
                .arg("placement.wsgi.api:application")
                .env("OS_PLACEMENT_CONFIG_DIR", self.dir.path());
            let start_len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let mut server = Server::spawn(cmd, "Placement (gunicorn)", &log);
            let root = format!("{}/", self.url);
            let agent = process::agent(Duration::from_secs(5));
            let listening = format!("Listening at: {}", self.url);
            let ready = server.wait_ready("Placement (gunicorn)", || {
                // Our own gunicorn said it bound the port, and Placement answers on it.
                process::log_since(&log, start_len).contains(&listening)
                    && agent.get(&root).call().is_ok_and(|r| r.status() == 200)
            });
            match ready {
                Ok(()) => {
                    self.server = Some(server);
                    return;
                }
                Err(e) => {
                    let in_use = process::log_since(&log, start_len).contains("in use");
                    last = e;
                    if !in_use {
                        break;
                    }
                    if !new_port {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }
        panic!("{last}");
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token [`Placement::get`] and [`Placement::request`] send (`admin` under noauth2).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The folder holding `placement.conf`, the database (SQLite) and the logs
    /// (`gunicorn.log`, `access.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops Placement (its database stays) until [`Placement::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }

    /// Starts Placement again on the same database and the same port.
    ///
    /// # Panics
    ///
    /// When it does not answer again (the message carries the log's tail).
    pub fn start_again(&mut self) {
        self.stop();
        self.serve(false);
    }

    /// `GET path` (e.g. `/resource_providers`) as admin at microversion 1.39; the JSON body
    /// (`Null` when empty).
    ///
    /// # Panics
    ///
    /// On a status other than 2xx, with the body.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None);
        if !(200..300).contains(&status) {
            panic!("GET {path}: Placement answered {status}: {body}");
        }
        body
    }

    /// Any request as admin at microversion 1.39 (`X-Auth-Token`, `OpenStack-API-Version`);
    /// the status and the JSON body (`Null` when empty, a string when not JSON).
    ///
    /// # Panics
    ///
    /// When Placement cannot be reached at all.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.request_as(&self.token, method, path, body)
    }

    /// [`Placement::request`] with another token (a Keystone user's, or a bogus one).
    ///
    /// # Panics
    ///
    /// When Placement cannot be reached at all.
    pub fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        http(&self.agent, &self.url, token, method, path, body)
    }
}

impl Drop for Placement {
    /// Stops gunicorn before its folder (database, configuration) is removed.
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request to an OpenStack service with a token and Placement's microversion header.
pub(crate) fn http(
    agent: &ureq::Agent,
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let url = format!("{base}{path}");
    let builder = ureq::http::Request::builder()
        .method(method)
        .uri(&url)
        .header("X-Auth-Token", token)
        .header("OpenStack-API-Version", MICROVERSION)
        .header("Accept", "application/json");
    let result = match body {
        Some(v) => agent.run(
            builder
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(v).expect("a JSON value serialises"))
                .expect("a well-formed request"),
        ),
        None => agent.run(builder.body(()).expect("a well-formed request")),
    };
    let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

const NOAUTH: &str = "[api]\nauth_strategy = noauth2\n";

fn config(connection: &str, auth: &str, retry_count: Option<u32>) -> String {
    let mut conf = String::from("[DEFAULT]\ndebug = false\n\n");
    conf.push_str(auth);
    let _ = write!(conf, "\n[placement_database]\nconnection = {connection}\n");
    if connection.starts_with("postgresql") {
        // Served 4 workers in PLACEMENT.md's measurements.
        conf.push_str("max_pool_size = 10\nmax_overflow = 20\n");
    }
    if let Some(n) = retry_count {
        let _ = write!(
            conf,
            "\n[placement]\nallocation_conflict_retry_count = {n}\n"
        );
    }
    conf
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("pcitrack-placement-")
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temporary folder for Placement: {e}"))
}
