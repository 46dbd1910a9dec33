//! A real Keystone (identity v3) on SQLite with fernet tokens, for `auth_type = password`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::placement::http;
use crate::process::{self, Server};

/// A running Keystone, bootstrapped with an admin user in project `admin` (domain `Default`)
/// and its own endpoints in region `RegionOne`. Dropping it stops gunicorn's process group.
pub struct Keystone {
    /// The bootstrap admin's user name (`admin`).
    pub username: String,
    /// The bootstrap admin's password.
    pub password: String,
    /// The admin's project (`admin`).
    pub project_name: String,
    /// The user's domain (`Default`).
    pub user_domain_name: String,
    /// The project's domain (`Default`).
    pub project_domain_name: String,
    /// The region of the catalog's endpoints (`RegionOne`).
    pub region: String,
    url: String,
    agent: ureq::Agent,
    // Declared before `dir`: gunicorn stops before its folder is removed.
    _server: Server,
    dir: TempDir,
}

/// gunicorn whose arguments are hidden from the application once parsed: Keystone's
/// `keystone.server.configure` lets oslo.config parse `sys.argv`, which refuses gunicorn's.
const GUNICORN_CLEAN_ARGV: &str = "import sys
from gunicorn.app.wsgiapp import WSGIApplication
app = WSGIApplication('%(prog)s [OPTIONS] [APP_MODULE]')
sys.argv = sys.argv[:1]
app.run()
";

/// The `placement` service user [`crate::Placement::start_sqlite_keystone`] gives
/// keystonemiddleware (in project `service`).
const SERVICE_PASSWORD: &str = "placement-service-secret";

impl Keystone {
    /// Creates Keystone's database (`keystone-manage db_sync`), fernet and credential keys,
    /// bootstraps it and serves `keystone.wsgi.api:application` with gunicorn on a free port.
    ///
    /// # Panics
    ///
    /// When a `keystone-manage` step fails or Keystone does not answer (with the log's tail).
    pub fn start(python: &Path) -> Keystone {
        let dir = tempfile::Builder::new()
            .prefix("pcitrack-keystone-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary folder for Keystone: {e}"));
        let d = dir.path();
        let conf = format!(
            "[DEFAULT]\ndebug = false\n\n[database]\nconnection = sqlite:///{db}\n\n\
             [token]\nprovider = fernet\n\n[fernet_tokens]\nkey_repository = {fernet}\n\n\
             [fernet_receipts]\nkey_repository = {fernet}\n\n\
             [credential]\nkey_repository = {cred}\n",
            db = d.join("keystone.db").display(),
            fernet = d.join("fernet-keys").display(),
            cred = d.join("credential-keys").display(),
        );
        let conf_path = d.join("keystone.conf");
        std::fs::write(&conf_path, conf)
            .unwrap_or_else(|e| panic!("writing {}: {e}", conf_path.display()));
        let log = d.join("keystone-manage.log");
        let manage = |args: &[&str]| {
            let mut cmd = Command::new(python.with_file_name("keystone-manage"));
            cmd.arg("--config-file").arg(&conf_path).args(args);
            process::run_logged(cmd, &format!("keystone-manage {}", args[0]), &log);
        };
        // The key repositories belong to whoever runs the tests (keystone-manage defaults
        // to a `keystone` user).
        let (user, group) = current_user_group();
        manage(&["db_sync"]);
        manage(&[
            "fernet_setup",
            "--keystone-user",
            &user,
            "--keystone-group",
            &group,
        ]);
        manage(&[
            "credential_setup",
            "--keystone-user",
            &user,
            "--keystone-group",
            &group,
        ]);
        let password = "pcitrack-admin-secret".to_string();
        let mut last = String::new();
        for _ in 0..5 {
            let port = process::free_port();
            let url = format!("http://127.0.0.1:{port}");
            let v3 = format!("{url}/v3");
            manage(&[
                "bootstrap",
                "--bootstrap-password",
                &password,
                "--bootstrap-admin-url",
                &v3,
                "--bootstrap-public-url",
                &v3,
                "--bootstrap-internal-url",
                &v3,
                "--bootstrap-region-id",
                "RegionOne",
            ]);
            let glog = d.join("gunicorn.log");
            let start_len = std::fs::metadata(&glog).map(|m| m.len()).unwrap_or(0);
            let mut cmd = Command::new(python);
            cmd.args([
                "-c",
                GUNICORN_CLEAN_ARGV,
                "--workers",
                "1",
                "--threads",
                "2",
                "--timeout",
                "300",
                "--bind",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("keystone.wsgi.api:application")
            .env("OS_KEYSTONE_CONFIG_DIR", d);
            let mut server = Server::spawn(cmd, "Keystone (gunicorn)", &glog);
            let probe = process::agent(Duration::from_secs(5));
            let listening = format!("Listening at: {url}");
            let ready = server.wait_ready("Keystone (gunicorn)", || {
                process::log_since(&glog, start_len).contains(&listening)
                    && probe.get(&v3).call().is_ok_and(|r| r.status() == 200)
            });
            match ready {
                Ok(()) => {
                    return Keystone {
                        username: "admin".into(),
                        password,
                        project_name: "admin".into(),
                        user_domain_name: "Default".into(),
                        project_domain_name: "Default".into(),
                        region: "RegionOne".into(),
                        url,
                        dir,
                        agent: process::agent(Duration::from_secs(120)),
                        _server: server,
                    };
                }
                Err(e) => {
                    let in_use = process::log_since(&glog, start_len).contains("in use");
                    last = e;
                    if !in_use {
                        break;
                    }
                }
            }
        }
        panic!("{last}");
    }

    /// The identity v3 URL, `http://127.0.0.1:PORT/v3` (what Nova's `[placement] auth_url`
    /// names).
    pub fn auth_url(&self) -> String {
        format!("{}/v3", self.url)
    }

    /// The folder holding `keystone.conf`, the database, the keys and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A project-scoped token of `username` (password method), from `POST /v3/auth/tokens`.
    ///
    /// # Panics
    ///
    /// When Keystone does not issue one (with its answer).
    pub fn token_for(&self, username: &str, password: &str, project: &str) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}
        }});
        let url = format!("{}/auth/tokens", self.auth_url());
        let mut response = self
            .agent
            .post(&url)
            .send_json(&body)
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        let token = response
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.body_mut().read_to_string().unwrap_or_default();
        match token {
            Some(t) if status == 201 => t,
            _ => panic!("POST {url} as {username}: Keystone answered {status}: {text}"),
        }
    }

    /// A token of the bootstrap admin, scoped to project `admin`.
    ///
    /// # Panics
    ///
    /// As [`Keystone::token_for`].
    pub fn token(&self) -> String {
        self.token_for(&self.username, &self.password, &self.project_name)
    }

    /// Registers Placement at `url`: project `service`, user `placement` in it with roles
    /// `admin` and `service` (keystonemiddleware validates tokens with it), service type
    /// `placement` and its public and internal endpoints in [`Keystone::region`]. Returns the
    /// service user's name and password.
    pub(crate) fn register_placement(&self, url: &str) -> (String, String) {
        let admin = self.token();
        let call = |method: &str, path: &str, body: Option<&Value>| -> Value {
            let (status, answer) = http(&self.agent, &self.auth_url(), &admin, method, path, body);
            if !(200..300).contains(&status) {
                panic!("Keystone {method} {path}: {status}: {answer}");
            }
            answer
        };
        let project = call(
            "POST",
            "/projects",
            Some(&json!({"project": {"name": "service", "domain_id": "default"}})),
        )["project"]["id"]
            .as_str()
            .expect("Keystone answers a project id")
            .to_string();
        let user = call(
            "POST",
            "/users",
            Some(
                &json!({"user": {"name": "placement", "domain_id": "default",
                "password": SERVICE_PASSWORD, "default_project_id": project}}),
            ),
        )["user"]["id"]
            .as_str()
            .expect("Keystone answers a user id")
            .to_string();
        let roles = call("GET", "/roles", None);
        for role in roles["roles"].as_array().into_iter().flatten() {
            if matches!(role["name"].as_str(), Some("admin" | "service")) {
                let id = role["id"].as_str().expect("a role id");
                call(
                    "PUT",
                    &format!("/projects/{project}/users/{user}/roles/{id}"),
                    None,
                );
            }
        }
        let service = call(
            "POST",
            "/services",
            Some(
                &json!({"service": {"type": "placement", "name": "placement",
                "description": "Placement API", "enabled": true}}),
            ),
        )["service"]["id"]
            .as_str()
            .expect("Keystone answers a service id")
            .to_string();
        for interface in ["public", "internal"] {
            call(
                "POST",
                "/endpoints",
                Some(
                    &json!({"endpoint": {"service_id": service, "interface": interface,
                    "region_id": self.region, "url": url, "enabled": true}}),
                ),
            );
        }
        ("placement".into(), SERVICE_PASSWORD.into())
    }
}

fn current_user_group() -> (String, String) {
    let id = |flag: &str| -> String {
        let out = Command::new("id")
            .arg(flag)
            .output()
            .unwrap_or_else(|e| panic!("running `id {flag}`: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    (id("-un"), id("-gn"))
}
