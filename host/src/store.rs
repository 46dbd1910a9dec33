//! Opening the tracker's database file, for the agent and for the CLI's direct path alike
//! (both must create the same parent directories and name the file the same way in errors).

use std::path::Path;

use anyhow::Context;
use pcitrack_tracker::{SqliteStore, Tracker};

/// Opens (creating it and its directory if needed) the database at `path`.
///
/// # Errors
///
/// The directory cannot be created, or the file cannot be opened or migrated; the message
/// names the path.
pub fn open_tracker(path: &Path) -> anyhow::Result<Tracker<SqliteStore>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Tracker::open(path).with_context(|| format!("opening the database {}", path.display()))
}

/// The Placement resource provider uuids the agent generated, kept beside the tracker's table
/// in the same database file, so they live and move with the devices they stand for (Nova
/// keeps them in the device's `extra_info['rp_uuid']`). Two host-side tables, created when
/// first needed, outside the tracker's schema versioning (the tracker never reads them):
///
/// ```text
/// placement_providers: (root_name, address) PRIMARY KEY, rp_uuid  the PF's or device's provider
/// placement_roots:     root_name PRIMARY KEY, rp_uuid             the root provider
/// ```
///
/// Keyed by the root's name (`[placement] host`) as well: a renamed host reports a new tree
/// and never reuses the uuids of the old one.
pub mod provider_uuids {
    use std::collections::BTreeMap;
    use std::path::Path;

    use anyhow::Context;
    use pcitrack_model::PciAddress;
    use rusqlite::{Connection, OptionalExtension, params};
    use uuid::Uuid;

    const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS placement_providers (
    root_name TEXT NOT NULL,
    address TEXT NOT NULL,
    rp_uuid TEXT NOT NULL,
    PRIMARY KEY (root_name, address)
);
CREATE TABLE IF NOT EXISTS placement_roots (
    root_name TEXT PRIMARY KEY,
    rp_uuid TEXT NOT NULL
);
";

    /// The uuids kept for a root: the providers' by device address, and the root's own.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Kept {
        /// Provider uuids by the PF's or device's address.
        pub providers: BTreeMap<PciAddress, Uuid>,
        /// The root provider's uuid, once pcitrack created or adopted it.
        pub root: Option<Uuid>,
    }

    fn open(db: &Path) -> anyhow::Result<Connection> {
        let conn = Connection::open(db)
            .with_context(|| format!("opening the database {}", db.display()))?;
        conn.busy_timeout(pcitrack_tracker::store::BUSY_TIMEOUT)
            .and_then(|()| conn.execute_batch(SCHEMA))
            .with_context(|| {
                format!(
                    "{}: creating the Placement provider uuid tables",
                    db.display()
                )
            })?;
        Ok(conn)
    }

    /// The uuids kept for `root_name` (none yet: empty).
    ///
    /// # Errors
    ///
    /// The file cannot be opened or read, or holds a value that is not a uuid or an
    /// address (the message names the file and the value).
    pub fn load(db: &Path, root_name: &str) -> anyhow::Result<Kept> {
        let conn = open(db)?;
        let bad = |what: &str, value: &str| {
            format!("{}: {what} {value:?} in placement_providers", db.display())
        };
        let mut kept = Kept::default();
        let mut stmt = conn
            .prepare("SELECT address, rp_uuid FROM placement_providers WHERE root_name = ?1")
            .with_context(|| format!("{}: reading placement_providers", db.display()))?;
        let rows = stmt
            .query_map(params![root_name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("{}: reading placement_providers", db.display()))?;
        for (address, uuid) in rows {
            let a: PciAddress = address
                .parse()
                .map_err(|_| anyhow::anyhow!(bad("address", &address)))?;
            let u = Uuid::parse_str(&uuid).with_context(|| bad("uuid", &uuid))?;
            kept.providers.insert(a, u);
        }
        let root: Option<String> = conn
            .query_row(
                "SELECT rp_uuid FROM placement_roots WHERE root_name = ?1",
                params![root_name],
                |r| r.get(0),
            )
            .optional()
            .with_context(|| format!("{}: reading placement_roots", db.display()))?;
        kept.root = root
            .map(|u| Uuid::parse_str(&u).with_context(|| bad("root uuid", &u)))
            .transpose()?;
        Ok(kept)
    }

    /// Keeps `providers` (added to or replacing those kept) and `root` for `root_name`, in
    /// one transaction.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or written (the message names it).
    pub fn save(
        db: &Path,
        root_name: &str,
        providers: &BTreeMap<PciAddress, Uuid>,
        root: Uuid,
    ) -> anyhow::Result<()> {
        let mut conn = open(db)?;
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for (address, uuid) in providers {
                tx.execute(
                    "INSERT INTO placement_providers (root_name, address, rp_uuid) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (root_name, address) \
                     DO UPDATE SET rp_uuid = excluded.rp_uuid",
                    params![root_name, address.to_string(), uuid.to_string()],
                )?;
            }
            tx.execute(
                "INSERT INTO placement_roots (root_name, rp_uuid) VALUES (?1, ?2) \
                 ON CONFLICT (root_name) DO UPDATE SET rp_uuid = excluded.rp_uuid",
                params![root_name, root.to_string()],
            )?;
            tx.commit()
        };
        write(&mut conn)
            .with_context(|| format!("{}: keeping the Placement provider uuids", db.display()))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn kept_uuids_come_back_for_their_root_only() {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("pcitrack.db");
            // Beside the tracker's own table.
            let _tracker = crate::store::open_tracker(&db).unwrap();
            assert_eq!(load(&db, "cn1").unwrap(), Kept::default());
            let pf: PciAddress = "0000:81:00.0".parse().unwrap();
            let (u1, u2, root) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
            save(&db, "cn1", &BTreeMap::from([(pf, u1)]), root).unwrap();
            let other: PciAddress = "0000:82:00.0".parse().unwrap();
            save(&db, "cn1", &BTreeMap::from([(other, u2)]), root).unwrap();
            let kept = load(&db, "cn1").unwrap();
            assert_eq!(kept.providers, BTreeMap::from([(pf, u1), (other, u2)]));
            assert_eq!(kept.root, Some(root));
            assert_eq!(load(&db, "cn2").unwrap(), Kept::default());
            // The tracker still opens the file.
            drop(_tracker);
            crate::store::open_tracker(&db).unwrap();
        }
    }
}
