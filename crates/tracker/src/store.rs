//! Persistence of tracked devices.
//!
//! The tracker talks to a [`Store`] so that another backend (PostgreSQL) could come later; the
//! shipped one is [`SqliteStore`]. A state change is one write transaction: the tracker takes
//! the write lock ([`Store::begin_write`]), reloads if another process changed the data,
//! decides, writes the rows that changed ([`Store::apply`]) and commits, or rolls back having
//! written nothing.
//!
//! # Schema (version 2)
//!
//! ```text
//! pci_devices: one row per tracked PCI device (column names follow Nova's pci_devices table)
//!   id                       INTEGER PRIMARY KEY
//!   address                  TEXT UNIQUE NOT NULL  PCI address, dddd:bb:ss.f (domain up to 8 hex digits)
//!   vendor_id                TEXT NOT NULL         4 lower-case hex digits, e.g. 8086
//!   product_id               TEXT NOT NULL         4 lower-case hex digits (sysfs `device`)
//!   dev_type                 TEXT NOT NULL         type-PCI | type-PF | type-VF | vdpa
//!   parent_addr              TEXT                  the PF of a VF or vdpa device
//!   status                   TEXT NOT NULL         available | claimed | allocated | unavailable | unclaimable
//!                                                  (unavailable/unclaimable: a relative is allocated/claimed;
//!                                                  removed devices are deleted, never stored)
//!   instance_uuid            TEXT                  the owner; required when claimed or allocated
//!   request_id               TEXT                  the request a claim was made for
//!   numa_node                INTEGER               NULL when unknown
//!   label                    TEXT NOT NULL         label_<vendor>_<product>
//!   extra_info               TEXT NOT NULL         JSON: {"tags": {..}, "remote_managed": true,
//!                                                  "decided_by": "policy rule", "parent_ifname": "..",
//!                                                  "device": {the rest of the discovered record:
//!                                                  card_serial_number, vpd, ifname, mac_address, net,
//!                                                  driver, class_code, ...},
//!                                                  "pending": {a change seen while in use, applied on free}}
//!                                                  (absent keys: empty, false or null)
//!   missing_syncs            INTEGER NOT NULL      consecutive syncs that did not report it as assignable
//!   to_be_removed_when_freed INTEGER NOT NULL      1: unreported while in use; deleted when freed
//!   reserved                 INTEGER NOT NULL      1: a one-time-use device that has been allocated;
//!                                                  out of the pools until released (version 2)
//!   created_at, updated_at   TEXT NOT NULL         UTC, ISO 8601 (one timestamp per transaction)
//! Version 2 added `reserved` (`ALTER TABLE ... ADD COLUMN`, default 0): a version-1 file
//! migrates in place when opened, with nothing reserved.
//! No secondary indexes: the tracker reads the whole table into memory, and a few thousand rows
//! scan instantly for ad-hoc queries. PRAGMA user_version holds the schema version. The file
//! is in WAL mode with synchronous=FULL; other writers (sqlite3, scripts) should set a busy
//! timeout, since the daemon and the CLI may hold the write lock briefly.
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pcitrack_model::{DevType, Device, DeviceStatus, PciAddress};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::prune::Pruned;
use crate::record::{Profile, TagSets, TrackedDevice};

/// How long a writer waits for another process's transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE pci_devices (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    vendor_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    dev_type TEXT NOT NULL CHECK (dev_type IN ('type-PCI', 'type-PF', 'type-VF', 'vdpa')),
    parent_addr TEXT,
    status TEXT NOT NULL
        CHECK (status IN ('available', 'claimed', 'allocated', 'unavailable', 'unclaimable')),
    instance_uuid TEXT,
    request_id TEXT,
    numa_node INTEGER,
    label TEXT NOT NULL,
    extra_info TEXT NOT NULL DEFAULT '{}',
    missing_syncs INTEGER NOT NULL DEFAULT 0,
    to_be_removed_when_freed INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK (status NOT IN ('claimed', 'allocated') OR instance_uuid IS NOT NULL)
);
"#,
    r#"
ALTER TABLE pci_devices ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved IN (0, 1));
"#,
];

/// A persistence failure, naming the store and what it was doing.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused an operation.
    #[error("{path}: {what}: {source}")]
    Sqlite {
        /// The database file (`:memory:` for an in-memory one).
        path: String,
        /// What was being done.
        what: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A row that does not decode.
    #[error("{path}: row {address:?} is corrupt: {problem}")]
    Corrupt {
        /// The database file.
        path: String,
        /// The row's address column.
        address: String,
        /// What is wrong.
        problem: String,
    },
    /// The file was written by a newer pcitrack.
    #[error(
        "{path}: schema version {found} is newer than this pcitrack understands ({SCHEMA_VERSION})"
    )]
    TooNew {
        /// The database file.
        path: String,
        /// Its `user_version`.
        found: i64,
    },
}

/// The rows one transaction writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet<'a> {
    /// Rows to insert or replace whole (by address).
    pub upserts: Vec<&'a TrackedDevice>,
    /// Existing rows whose profile and pending change are unchanged: only the bookkeeping
    /// columns (status, instance_uuid, request_id, missing_syncs, to_be_removed_when_freed,
    /// reserved) are written. Claims and frees produce these; it spares re-encoding `extra_info`.
    pub bookkeeping: Vec<&'a TrackedDevice>,
    /// Rows to delete.
    pub deletes: Vec<PciAddress>,
}

impl ChangeSet<'_> {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.bookkeeping.is_empty() && self.deletes.is_empty()
    }
}

/// Where tracked devices persist. One handle is one connection; several handles (threads,
/// processes) may share the same data, and [`Store::begin_write`] serialises them.
pub trait Store: Send {
    /// Starts a write transaction, waiting for other writers, and tells whether another
    /// handle changed the data since this one last loaded or wrote it (then the caller must
    /// reload with [`Store::load_all`] before deciding anything).
    fn begin_write(&mut self) -> Result<bool, StoreError>;
    /// [`Store::begin_write`] for a transaction whose commit need not reach the disk before
    /// it returns: what it writes can be derived again (a reconcile's, which the full
    /// reconcile every start runs before serving re-derives from sysfs). Its writes still
    /// commit atomically, in order: the next synced commit (a claim's) makes them durable
    /// too. By default the same as `begin_write`.
    fn begin_write_unsynced(&mut self) -> Result<bool, StoreError> {
        self.begin_write()
    }
    /// Whether another handle changed the data since this one last looked; outside a
    /// transaction. When true, [`Store::load_all`] returns the newer data.
    fn changed_since_last_look(&mut self) -> Result<bool, StoreError>;
    /// Every row, sorted by address (within the write transaction, or as one read).
    fn load_all(&mut self) -> Result<Vec<TrackedDevice>, StoreError>;
    /// Writes the changes within the open write transaction.
    fn apply(&mut self, changes: &ChangeSet<'_>) -> Result<(), StoreError>;
    /// Commits the open write transaction.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Abandons the open write transaction, if any; nothing it wrote remains.
    fn rollback(&mut self) -> Result<(), StoreError>;
}

/// The `extra_info` column, as read. `device` lacks the fields that have columns.
#[derive(Debug, Clone, Deserialize)]
struct ExtraInfo {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    remote_managed: bool,
    #[serde(default)]
    decided_by: String,
    #[serde(default)]
    parent_ifname: Option<String>,
    #[serde(default)]
    device: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pending: Option<Profile>,
}

/// The `extra_info` column, as written (borrowing from the record).
#[derive(Serialize)]
struct ExtraInfoRef<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_false")]
    remote_managed: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    decided_by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_ifname: &'a Option<String>,
    device: Pruned<'a, Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: &'a Option<Profile>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The fields of a discovered record that have their own column.
const COLUMN_FIELDS: [&str; 6] = [
    "address",
    "vendor_id",
    "product_id",
    "dev_type",
    "parent_addr",
    "numa_node",
];

/// The discovered record for `extra_info`: without the fields that have columns, nulls and
/// empty lists (a third of the size; a large host's first sync writes thousands of these).
fn device_extra(d: &Device) -> Pruned<'_, Device> {
    Pruned {
        value: d,
        skip: &COLUMN_FIELDS,
    }
}

/// How hard a commit works to survive a power cut. Both keep the file consistent after a
/// kill or a crash at any instant (WAL commits are atomic); they differ in whether the last
/// commits survive the loss of the OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: each commit syncs the WAL before returning, so a claim that
    /// returned survives a power cut. The default: a lost claim would let the host hand the
    /// same device to a second instance after reboot. Costs one fsync per state change
    /// (about 1 to 4 ms on a virtual disk, tens of microseconds on NVMe). A reconcile's
    /// commit is the exception ([`Store::begin_write_unsynced`]): it is re-derived from
    /// sysfs at the next start, and the next synced commit carries it to the disk.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the WAL is synced at checkpoints only; the last commits may roll
    /// back after a power cut (never after a process kill). For tests and hosts where the
    /// orchestrator re-asserts claims after a reboot.
    Normal,
}

/// The SQLite store (rusqlite, bundled SQLite), in WAL mode; see [`Durability`].
pub struct SqliteStore {
    conn: Connection,
    path: String,
    last_seen: Option<i64>,
    /// The file's durability (`None` in memory).
    durability: Option<Durability>,
    /// `synchronous` is lowered for the open transaction ([`Store::begin_write_unsynced`])
    /// and goes back to FULL once it ends.
    unsynced: bool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file with [`Durability::Full`] and brings its
    /// schema up to date.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] naming the file when it cannot be opened or written,
    /// [`StoreError::Corrupt`] when it is not a pcitrack database, [`StoreError::TooNew`] when
    /// a newer pcitrack wrote its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Full)
    }

    /// Opens (creating if needed) the database file with the given durability.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] naming the file when it cannot be opened or written,
    /// [`StoreError::Corrupt`] when it is not a pcitrack database, [`StoreError::TooNew`] when
    /// a newer pcitrack wrote its schema.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path_text = path.as_ref().display().to_string();
        let conn = Connection::open_with_flags(
            path.as_ref(),
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sqlite {
            path: path_text.clone(),
            what: "opening the database".into(),
            source,
        })?;
        Self::init(conn, path_text, Some(durability))
    }

    /// A private database in memory, for tests and dry runs.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when SQLite cannot create the schema.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: ":memory:".into(),
            what: "opening an in-memory database".into(),
            source,
        })?;
        Self::init(conn, ":memory:".into(), None)
    }

    /// `file`: the durability of a file database; `None` for an in-memory one (no WAL).
    fn init(conn: Connection, path: String, file: Option<Durability>) -> Result<Self, StoreError> {
        let mut store = Self {
            conn,
            path,
            last_seen: None,
            durability: file,
            unsynced: false,
        };
        // The busy timeout first: switching to WAL needs a lock another process may hold.
        store
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| store.err("setting the busy timeout", e))?;
        if file.is_some() {
            let mode: String = store
                .conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(|e| store.err("switching to WAL", e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(store.err(
                    "switching to WAL",
                    rusqlite::Error::InvalidParameterName(format!("journal_mode stayed {mode}")),
                ));
            }
        }
        store
            .conn
            // A 16 MiB page cache holds a large host's table (4096 rows are about 4 MiB), so a
            // first sync does not spill pages mid-transaction.
            .execute_batch(match file {
                Some(Durability::Normal) => "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384;",
                _ => "PRAGMA synchronous=FULL; PRAGMA cache_size=-16384;",
            })
            .map_err(|e| store.err("setting pragmas", e))?;
        store.migrate()?;
        Ok(store)
    }

    fn err(&self, what: &str, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            what: what.to_string(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version =
            |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
        let current = version(&self.conn).map_err(|e| self.err("reading user_version", e))?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        let path = self.path.clone();
        let sql_err = |what: String| {
            let path = path.clone();
            move |source| StoreError::Sqlite { path, what, source }
        };
        // Another process may be migrating too: decide under the write lock.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql_err("starting the migration".into()))?;
        let current = version(&tx).map_err(sql_err("reading user_version".into()))?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: current,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql)
                .and_then(|_| tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1)))
                .map_err(sql_err(format!("migrating to schema version {}", i + 1)))?;
        }
        tx.commit()
            .map_err(sql_err("committing the migration".into()))
    }

    /// SQLite's own check of the file (`PRAGMA integrity_check`): the problems it found, none
    /// when the file is sound. Only reads.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the check itself cannot run.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| self.err("running PRAGMA integrity_check", e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("running PRAGMA integrity_check", e))?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }

    /// How the next commit outside a reconcile reaches the disk (SQLite's `synchronous` on
    /// this handle): [`Durability::Full`] unless the file was opened with
    /// [`Durability::Normal`] (or is in memory). Lets a test prove that a reconcile's
    /// unsynced commit leaves the next claim synced.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the setting cannot be read.
    pub fn synchronous(&self) -> Result<Durability, StoreError> {
        let level: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(|e| self.err("reading synchronous", e))?;
        // 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
        Ok(if level >= 2 {
            Durability::Full
        } else {
            Durability::Normal
        })
    }

    /// Rows this handle has inserted, updated or deleted since it opened (SQLite's
    /// `total_changes`): lets a test or a benchmark prove that a pass wrote nothing.
    pub fn total_changes(&self) -> u64 {
        self.conn.total_changes()
    }

    /// Copies the WAL into the main file and truncates it, so the file alone holds the state.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sqlite`] when the checkpoint cannot run (another connection holds the
    /// WAL busy, or the disk fails).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| self.err("checkpointing", e))
    }

    /// Puts `synchronous` back to FULL after an unsynced transaction (a reconcile) ended
    /// (SQLite refuses to change it inside one), and hands the page cache that transaction
    /// filled back to the allocator: after a large host's first reconcile it held ~1.3 MB
    /// that nothing reads until the next reconcile (issue 14), which reads the few pages it
    /// needs again from the file.
    fn end_unsynced(&mut self) -> Result<(), StoreError> {
        if self.unsynced {
            // Advisory: a cache that stays is slower to free, never wrong.
            let _ = self.conn.execute_batch("PRAGMA shrink_memory");
            // Cleared only once FULL is back, so a failure here is retried by the next end.
            self.conn
                .execute_batch("PRAGMA synchronous=FULL")
                .map_err(|e| self.err("setting synchronous=FULL again", e))?;
            self.unsynced = false;
        }
        Ok(())
    }

    fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err("reading data_version", e))
    }

    fn decode(
        &self,
        row: &rusqlite::Row<'_>,
        tag_sets: &mut TagSets,
    ) -> Result<TrackedDevice, StoreError> {
        let address: String = row.get(0).map_err(|e| self.err("reading a row", e))?;
        let corrupt = |problem: String| StoreError::Corrupt {
            path: self.path.clone(),
            address: address.clone(),
            problem,
        };
        let sql = |e: rusqlite::Error| corrupt(e.to_string());
        let parsed_address: PciAddress = address.parse().map_err(|e| corrupt(format!("{e}")))?;
        let hex = |i: usize| -> Result<u16, StoreError> {
            let t: String = row.get(i).map_err(sql)?;
            pcitrack_model::parse_hex_id(&t, 4)
                .map(|v| v as u16)
                .map_err(|e| corrupt(e.to_string()))
        };
        let vendor_id = hex(1)?;
        let product_id = hex(2)?;
        let dev_type: DevType = row
            .get::<_, String>(3)
            .map_err(sql)?
            .parse()
            .map_err(|e| corrupt(format!("{e}")))?;
        let parent_addr = row
            .get::<_, Option<String>>(4)
            .map_err(sql)?
            .map(|p| p.parse::<PciAddress>())
            .transpose()
            .map_err(|e| corrupt(format!("{e}")))?;
        let status: DeviceStatus = row
            .get::<_, String>(5)
            .map_err(sql)?
            .parse()
            .map_err(|e| corrupt(format!("{e}")))?;
        let instance_uuid: Option<String> = row.get(6).map_err(sql)?;
        let request_id: Option<String> = row.get(7).map_err(sql)?;
        let numa_node: Option<i64> = row.get(8).map_err(sql)?;
        let extra: String = row.get(9).map_err(sql)?;
        let missing_syncs: i64 = row.get(10).map_err(sql)?;
        let to_be_removed: bool = row.get(11).map_err(sql)?;
        let reserved: bool = row.get(12).map_err(sql)?;
        let extra: ExtraInfo = serde_json::from_str(&extra)
            .map_err(|e| corrupt(format!("extra_info is not valid: {e}")))?;
        // The record's own fields come from the columns (what operators see and may edit).
        let mut fields = extra.device;
        fields.insert("address".into(), parsed_address.to_string().into());
        fields.insert("vendor_id".into(), format!("{vendor_id:04x}").into());
        fields.insert("product_id".into(), format!("{product_id:04x}").into());
        fields.insert("dev_type".into(), dev_type.as_str().into());
        fields
            .entry("class_code")
            .or_insert_with(|| "000000".into());
        let mut device: Device = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| corrupt(format!("extra_info.device is not valid: {e}")))?;
        device.parent_addr = parent_addr;
        device.numa_node = numa_node.and_then(|n| u32::try_from(n).ok());
        Ok(TrackedDevice {
            profile: Profile {
                device,
                tags: tag_sets.share_owned(extra.tags),
                remote_managed: extra.remote_managed,
                decided_by: extra.decided_by,
                parent_ifname: extra.parent_ifname,
            },
            status,
            instance_uuid,
            request_id,
            missing_syncs: u32::try_from(missing_syncs).unwrap_or(0),
            to_be_removed_when_freed: to_be_removed,
            pending: extra.pending,
            reserved,
        })
    }
}

impl Store for SqliteStore {
    fn begin_write(&mut self) -> Result<bool, StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err("starting a write transaction", e))?;
        // We hold the write lock: nobody can commit between this read and our own commit.
        let dv = self.data_version()?;
        let changed = self.last_seen != Some(dv);
        self.last_seen = Some(dv);
        Ok(changed)
    }

    fn begin_write_unsynced(&mut self) -> Result<bool, StoreError> {
        if self.durability == Some(Durability::Full) && self.conn.is_autocommit() {
            self.conn
                .execute_batch("PRAGMA synchronous=NORMAL")
                .map_err(|e| self.err("setting synchronous=NORMAL for a reconcile", e))?;
            self.unsynced = true;
        }
        let begun = self.begin_write();
        if begun.is_err() {
            // The refusal to begin is the error worth reporting; a failure to restore FULL
            // is logged (the next begin_write_unsynced or commit tries again).
            if let Err(e) = self.end_unsynced() {
                tracing::error!(error = %e, "cannot restore synchronous=FULL after a refused transaction");
            }
        }
        begun
    }

    fn changed_since_last_look(&mut self) -> Result<bool, StoreError> {
        let dv = self.data_version()?;
        let changed = self.last_seen != Some(dv);
        // Recorded before the caller loads: a commit racing in between costs one needless
        // reload later, never a missed change.
        self.last_seen = Some(dv);
        Ok(changed)
    }

    fn load_all(&mut self) -> Result<Vec<TrackedDevice>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT address, vendor_id, product_id, dev_type, parent_addr, status, \
                 instance_uuid, request_id, numa_node, extra_info, missing_syncs, \
                 to_be_removed_when_freed, reserved FROM pci_devices",
            )
            .map_err(|e| self.err("reading pci_devices", e))?;
        let mut rows = stmt
            .query([])
            .map_err(|e| self.err("reading pci_devices", e))?;
        let mut out = Vec::new();
        let mut tag_sets = TagSets::default();
        while let Some(row) = rows
            .next()
            .map_err(|e| self.err("reading pci_devices", e))?
        {
            out.push(self.decode(row, &mut tag_sets)?);
        }
        out.sort_by_key(|d| d.address());
        Ok(out)
    }

    fn apply(&mut self, changes: &ChangeSet<'_>) -> Result<(), StoreError> {
        // One timestamp per transaction: it is one change, and formatting it per row costs.
        let now: String = self
            .conn
            .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err("reading the clock", e))?;
        {
            let mut del = self
                .conn
                .prepare_cached("DELETE FROM pci_devices WHERE address = ?1")
                .map_err(|e| self.err("preparing a delete", e))?;
            for a in &changes.deletes {
                del.execute([a.to_string()])
                    .map_err(|e| self.err(&format!("deleting {a}"), e))?;
            }
        }
        {
            let mut upd = self
                .conn
                .prepare_cached(
                    "UPDATE pci_devices SET status = ?1, instance_uuid = ?2, request_id = ?3, \
                     missing_syncs = ?4, to_be_removed_when_freed = ?5, updated_at = ?6, \
                     reserved = ?8 WHERE address = ?7",
                )
                .map_err(|e| self.err("preparing an update", e))?;
            for t in &changes.bookkeeping {
                let a = t.address();
                let n = upd
                    .execute(params![
                        t.status.as_str(),
                        t.instance_uuid,
                        t.request_id,
                        t.missing_syncs,
                        t.to_be_removed_when_freed,
                        now,
                        a.to_string(),
                        t.reserved,
                    ])
                    .map_err(|e| self.err(&format!("updating {a}"), e))?;
                if n != 1 {
                    return Err(StoreError::Corrupt {
                        path: self.path.clone(),
                        address: a.to_string(),
                        problem: "the row disappeared inside a write transaction".into(),
                    });
                }
            }
        }
        let mut up = self
            .conn
            .prepare_cached(
                "INSERT INTO pci_devices (address, vendor_id, product_id, dev_type, parent_addr, \
                 status, instance_uuid, request_id, numa_node, label, extra_info, missing_syncs, \
                 to_be_removed_when_freed, created_at, updated_at, reserved) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15) \
                 ON CONFLICT (address) DO UPDATE SET vendor_id = excluded.vendor_id, \
                 product_id = excluded.product_id, dev_type = excluded.dev_type, \
                 parent_addr = excluded.parent_addr, status = excluded.status, \
                 instance_uuid = excluded.instance_uuid, request_id = excluded.request_id, \
                 numa_node = excluded.numa_node, label = excluded.label, \
                 extra_info = excluded.extra_info, missing_syncs = excluded.missing_syncs, \
                 to_be_removed_when_freed = excluded.to_be_removed_when_freed, \
                 updated_at = excluded.updated_at, reserved = excluded.reserved",
            )
            .map_err(|e| self.err("preparing an upsert", e))?;
        for t in &changes.upserts {
            let p = &t.profile;
            let d = &p.device;
            let extra = serde_json::to_string(&ExtraInfoRef {
                tags: &p.tags,
                remote_managed: p.remote_managed,
                decided_by: &p.decided_by,
                parent_ifname: &p.parent_ifname,
                device: device_extra(d),
                pending: &t.pending,
            })
            .expect("plain data always serialises to JSON");
            up.execute(params![
                d.address.to_string(),
                format!("{:04x}", d.vendor_id),
                format!("{:04x}", d.product_id),
                d.dev_type.as_str(),
                d.parent_addr.map(|a| a.to_string()),
                t.status.as_str(),
                t.instance_uuid,
                t.request_id,
                d.numa_node,
                p.label(),
                extra,
                t.missing_syncs,
                t.to_be_removed_when_freed,
                now,
                t.reserved,
            ])
            .map_err(|e| self.err(&format!("writing {}", d.address), e))?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.err("committing", e))?;
        self.end_unsynced()
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            self.conn
                .execute_batch("ROLLBACK")
                .map_err(|e| self.err("rolling back", e))?;
        }
        self.end_unsynced()
    }
}

/// The schema version of a database file, without migrating it (diagnostics).
///
/// # Errors
///
/// [`StoreError::Sqlite`] when the file cannot be opened or read.
pub fn schema_version(path: impl AsRef<Path>) -> Result<Option<i64>, StoreError> {
    let path_text = path.as_ref().display().to_string();
    let conn = Connection::open_with_flags(path.as_ref(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Sqlite {
            path: path_text.clone(),
            what: "opening the database read-only".into(),
            source,
        })?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .optional()
        .map_err(|source| StoreError::Sqlite {
            path: path_text,
            what: "reading user_version".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_file_migrates_with_nothing_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute_batch(
                "PRAGMA user_version = 1; INSERT INTO pci_devices (address, vendor_id, \
                 product_id, dev_type, status, label, created_at, updated_at) VALUES \
                 ('0000:3b:00.0', '8086', '1572', 'type-PF', 'available', 'label_8086_1572', \
                 'now', 'now');",
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(schema_version(&path).unwrap(), Some(SCHEMA_VERSION));
        let rows = store.load_all().unwrap();
        assert_eq!(rows.len(), 1);
        assert!(!rows[0].reserved);
        // The flag round-trips through both write paths.
        let mut d = rows[0].clone();
        d.reserved = true;
        store.begin_write().unwrap();
        store
            .apply(&ChangeSet {
                bookkeeping: vec![&d],
                ..Default::default()
            })
            .unwrap();
        store.commit().unwrap();
        assert!(store.load_all().unwrap()[0].reserved);
    }
}
