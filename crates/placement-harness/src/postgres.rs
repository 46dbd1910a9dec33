//! A throw-away PostgreSQL cluster (Debian's `postgresql` package) for Placement with
//! several workers.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;

use crate::process;

/// The environment variable naming PostgreSQL's server `bin` folder (default: the newest
/// `/usr/lib/postgresql/*/bin` holding `initdb`).
pub const PG_BIN_VAR: &str = "PCITRACK_PG_BIN";

/// A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 on a free port with
/// `trust` authentication for user `postgres`, with a database `placement`. `initdb` refuses
/// to run as root, so when the tests run as root the cluster is created and run as user
/// `postgres` (PLACEMENT.md). Dropping it stops the server and removes the folder.
pub struct Postgres {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    as_postgres: bool,
    databases: AtomicU32,
}

impl Postgres {
    /// Creates and starts a cluster; `None` (after printing why) when PostgreSQL's server
    /// binaries are not installed.
    ///
    /// # Panics
    ///
    /// When the binaries are missing and `PCITRACK_REQUIRE_PLACEMENT` is set, and when
    /// `initdb`, `pg_ctl start` or `createdb` fail (with their log).
    pub fn start() -> Option<Postgres> {
        let Some(bin) = find_bin() else {
            crate::skip_or_fail(
                "Postgres::start",
                "PostgreSQL's initdb is not installed (apt-get install postgresql, or set PCITRACK_PG_BIN)",
            );
            return None;
        };
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let dir = tempfile::Builder::new()
            .prefix("pcitrack-postgres-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary folder for PostgreSQL: {e}"));
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir.path().display()));
        }
        let mut pg = Postgres {
            bin,
            dir,
            port: 0,
            as_postgres,
            databases: AtomicU32::new(0),
        };
        let data = pg.dir.path().join("data");
        let log = pg.dir.path().join("setup.log");
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        process::run_logged(initdb, "initdb", &log);
        // A port taken between our probe and the server's bind makes pg_ctl fail: try another.
        let mut started = false;
        for _ in 0..5 {
            pg.port = process::free_port();
            let mut start = pg.command("pg_ctl");
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(pg.dir.path().join("server.log"))
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
                    pg.port,
                    pg.dir.path().display()
                ))
                .args(["-w", "-t", "60", "start"]);
            if pg.status(start, &log) {
                started = true;
                break;
            }
        }
        if !started {
            panic!(
                "pg_ctl start failed 5 times; {}:\n{}",
                pg.dir.path().join("server.log").display(),
                process::tail(&pg.dir.path().join("server.log"), 30)
            );
        }
        pg.create_named("placement");
        Some(pg)
    }

    /// The SQLAlchemy URL of database `db`:
    /// `postgresql+psycopg2://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql+psycopg2://postgres@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a fresh empty database (`placement`, then `placement_2`, `placement_3`...) and
    /// returns its name; each [`crate::Placement::start_postgres`] takes one.
    ///
    /// # Panics
    ///
    /// When `createdb` fails.
    pub fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            return "placement".into();
        }
        let name = format!("placement_{n}");
        self.create_named(&name);
        name
    }

    fn create_named(&self, name: &str) {
        let mut createdb = self.command("createdb");
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            name,
        ]);
        process::run_logged(
            createdb,
            &format!("createdb {name}"),
            &self.dir.path().join("setup.log"),
        );
    }

    /// A command running PostgreSQL's `tool`, as user `postgres` when we are root.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn status(&self, mut cmd: Command, log: &Path) -> bool {
        let out = process::open_log(log);
        let err = out.try_clone().expect("cloning a log file handle");
        cmd.stdout(out)
            .stderr(err)
            .status()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
            .success()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = self.status(stop, &self.dir.path().join("setup.log"));
    }
}

fn find_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os(PG_BIN_VAR) {
        return Some(PathBuf::from(bin));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The uid and gid of user `postgres`, from /etc/passwd.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .expect("user postgres in /etc/passwd (Debian's postgresql package creates it)")
}
