//! The device inventory: what moat has learned about each device, kept in
//! SQLite under the state directory. Writes are batched (routers run on flash:
//! no write per packet or per event) and the journal is WAL, so a crash loses
//! at most the last batch and never corrupts the file. A broken database is
//! reported and moat keeps enforcing without it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use rusqlite::{params, Connection, OptionalExtension as _};
use serde::Serialize;

/// Schema migrations; `PRAGMA user_version` is the number applied.
const MIGRATIONS: [&str; 1] = ["CREATE TABLE devices (
        mac TEXT PRIMARY KEY,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        hostname TEXT,
        vendor_class TEXT,
        fingerprint TEXT,
        mud_url TEXT,
        oui_vendor TEXT,
        policy TEXT,
        quarantined INTEGER NOT NULL DEFAULT 0,
        quarantine_reason TEXT
    );
    CREATE TABLE addresses (
        mac TEXT NOT NULL REFERENCES devices(mac) ON DELETE CASCADE,
        addr TEXT NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (mac, addr)
    );"];

/// Addresses kept per device (privacy addresses rotate: the oldest goes).
const MAX_ADDRESSES: usize = 16;
/// Devices kept: a flood of spoofed MACs must not grow memory, the database
/// or the status snapshot without bound (the longest unseen goes).
pub const MAX_RECORDS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory database {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("inventory database {path} has schema version {found}, newer than this moat ({known})")]
    TooNew { path: String, found: i64, known: usize },
    #[error("inventory directory {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// One device as the inventory knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Record {
    pub mac: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub hostname: Option<String>,
    pub vendor_class: Option<String>,
    pub fingerprint: Option<String>,
    pub mud_url: Option<String>,
    pub oui_vendor: Option<String>,
    pub policy: Option<String>,
    pub quarantined: bool,
    pub quarantine_reason: Option<String>,
    pub addresses: BTreeSet<String>,
    /// When each address was last seen (to replace the oldest).
    #[serde(skip)]
    pub address_seen: BTreeMap<String, i64>,
}

impl Record {
    fn add_address(&mut self, addr: &str, now: i64) {
        if !self.addresses.contains(addr) && self.addresses.len() >= MAX_ADDRESSES {
            let oldest = self.address_seen.iter().min_by_key(|(_, t)| **t).map(|(a, _)| a.clone());
            if let Some(old) = oldest {
                self.addresses.remove(&old);
                self.address_seen.remove(&old);
            }
        }
        self.addresses.insert(addr.to_string());
        self.address_seen.insert(addr.to_string(), now);
    }
}

#[derive(Debug)]
pub struct Inventory {
    conn: Connection,
    path: String,
    records: BTreeMap<String, Record>,
    dirty: BTreeSet<String>,
    /// Records dropped to stay under MAX_RECORDS, deleted at the next flush.
    evicted: Vec<String>,
}

fn sql(path: &str) -> impl FnOnce(rusqlite::Error) -> InventoryError + '_ {
    move |source| InventoryError::Sqlite { path: path.to_string(), source }
}

impl Inventory {
    /// Opens (creating or migrating) the database and loads it.
    pub fn open(path: &Path) -> Result<Self, InventoryError> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|source| InventoryError::Io { path: dir.display().to_string(), source })?;
        }
        let conn = Connection::open(path).map_err(sql(&p))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql(&p))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql(&p))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sql(&p))?;
        migrate(&conn, &p)?;
        let records = load(&conn, &p)?;
        Ok(Inventory { conn, path: p, records, dirty: BTreeSet::new(), evicted: Vec::new() })
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    pub fn get(&self, mac: &str) -> Option<&Record> {
        self.records.get(mac)
    }

    fn entry(&mut self, mac: &str, now: i64) -> &mut Record {
        if !self.records.contains_key(mac) && self.records.len() >= MAX_RECORDS {
            let stalest = self.records.values().min_by_key(|r| r.last_seen).map(|r| r.mac.clone());
            if let Some(old) = stalest {
                self.records.remove(&old);
                self.dirty.remove(&old);
                self.evicted.push(old);
            }
        }
        self.dirty.insert(mac.to_string());
        let r = self.records.entry(mac.to_string()).or_insert_with(|| Record {
            mac: mac.to_string(),
            first_seen: now,
            oui_vendor: crate::oui::vendor(mac).map(str::to_string),
            ..Record::default()
        });
        r.last_seen = now;
        r
    }

    /// The device sent traffic; records its policy and quarantine state.
    pub fn seen(&mut self, mac: &str, now: i64, policy: &str, quarantined: bool, reason: Option<&str>) {
        let r = self.entry(mac, now);
        r.policy = Some(policy.to_string());
        r.quarantined = quarantined;
        r.quarantine_reason = reason.map(str::to_string);
    }

    pub fn address(&mut self, mac: &str, now: i64, addr: &str) {
        self.entry(mac, now).add_address(addr, now);
    }

    pub fn dhcp(&mut self, mac: &str, now: i64, f: &crate::dhcp::DhcpFacts) {
        let r = self.entry(mac, now);
        r.hostname = f.hostname.clone().or(r.hostname.take());
        r.vendor_class = f.vendor_class.clone().or(r.vendor_class.take());
        r.fingerprint = f.fingerprint.clone().or(r.fingerprint.take());
        r.mud_url = f.mud_url.clone().or(r.mud_url.take());
        if let Some(ip) = f.requested_ip {
            r.add_address(&ip.to_string(), now);
        }
    }

    /// Writes every changed record in one transaction; returns how many.
    pub fn flush(&mut self) -> Result<usize, InventoryError> {
        if self.dirty.is_empty() && self.evicted.is_empty() {
            return Ok(0);
        }
        let p = self.path.clone();
        let tx = self.conn.transaction().map_err(sql(&p))?;
        for mac in self.evicted.drain(..) {
            tx.execute("DELETE FROM devices WHERE mac = ?1", params![mac]).map_err(sql(&p))?;
        }
        for mac in &self.dirty {
            let Some(r) = self.records.get(mac) else { continue };
            tx.execute(
                "INSERT INTO devices (mac, first_seen, last_seen, hostname, vendor_class, fingerprint, mud_url,
                     oui_vendor, policy, quarantined, quarantine_reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(mac) DO UPDATE SET last_seen = ?3, hostname = ?4, vendor_class = ?5, fingerprint = ?6,
                     mud_url = ?7, oui_vendor = ?8, policy = ?9, quarantined = ?10, quarantine_reason = ?11",
                params![
                    r.mac,
                    r.first_seen,
                    r.last_seen,
                    r.hostname,
                    r.vendor_class,
                    r.fingerprint,
                    r.mud_url,
                    r.oui_vendor,
                    r.policy,
                    r.quarantined,
                    r.quarantine_reason
                ],
            )
            .map_err(sql(&p))?;
            tx.execute("DELETE FROM addresses WHERE mac = ?1", params![r.mac]).map_err(sql(&p))?;
            for a in &r.addresses {
                tx.execute(
                    "INSERT INTO addresses (mac, addr, last_seen) VALUES (?1, ?2, ?3)
                     ON CONFLICT(mac, addr) DO UPDATE SET last_seen = ?3",
                    params![r.mac, a, r.last_seen],
                )
                .map_err(sql(&p))?;
            }
        }
        tx.commit().map_err(sql(&p))?;
        let n = self.dirty.len();
        self.dirty.clear();
        Ok(n)
    }

    /// Deletes everything held about a device (Code of Practice: easy
    /// deletion of personal data). Returns whether it was known.
    pub fn forget(&mut self, mac: &str) -> Result<bool, InventoryError> {
        let known = self.records.remove(mac).is_some();
        self.dirty.remove(mac);
        let p = self.path.clone();
        let n = self.conn.execute("DELETE FROM devices WHERE mac = ?1", params![mac]).map_err(sql(&p))?;
        Ok(known || n > 0)
    }
}

fn migrate(conn: &Connection, p: &str) -> Result<(), InventoryError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql(p))?;
    if version > MIGRATIONS.len() as i64 {
        return Err(InventoryError::TooNew { path: p.to_string(), found: version, known: MIGRATIONS.len() });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        conn.execute_batch(&format!("BEGIN; {m}; PRAGMA user_version = {}; COMMIT;", i + 1)).map_err(sql(p))?;
    }
    Ok(())
}

fn load(conn: &Connection, p: &str) -> Result<BTreeMap<String, Record>, InventoryError> {
    let mut out = BTreeMap::new();
    let mut stmt = conn
        .prepare(
            "SELECT mac, first_seen, last_seen, hostname, vendor_class, fingerprint, mud_url, oui_vendor, policy,
                    quarantined, quarantine_reason FROM devices",
        )
        .map_err(sql(p))?;
    let rows = stmt
        .query_map([], |row| {
            Ok(Record {
                mac: row.get(0)?,
                first_seen: row.get(1)?,
                last_seen: row.get(2)?,
                hostname: row.get(3)?,
                vendor_class: row.get(4)?,
                fingerprint: row.get(5)?,
                mud_url: row.get(6)?,
                oui_vendor: row.get(7)?,
                policy: row.get(8)?,
                quarantined: row.get(9)?,
                quarantine_reason: row.get(10)?,
                addresses: BTreeSet::new(),
                address_seen: BTreeMap::new(),
            })
        })
        .map_err(sql(p))?;
    for r in rows {
        let r = r.map_err(sql(p))?;
        out.insert(r.mac.clone(), r);
    }
    let mut stmt = conn.prepare("SELECT mac, addr, last_seen FROM addresses").map_err(sql(p))?;
    let rows = stmt
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?)))
        .map_err(sql(p))?;
    for row in rows {
        let (mac, addr, seen) = row.map_err(sql(p))?;
        if let Some(r) = out.get_mut(&mac) {
            r.addresses.insert(addr.clone());
            r.address_seen.insert(addr, seen);
        }
    }
    let _ = conn.query_row("SELECT 1", [], |_| Ok(())).optional();
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)] // a failing test panics
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("moat-inv-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d.join("inventory.sqlite3")
    }

    #[test]
    fn records_survive_reopen_and_forget_deletes_them() {
        let path = temp("reopen");
        let mut inv = Inventory::open(&path).unwrap();
        inv.seen("b8:27:eb:00:00:01", 100, "camera", false, None);
        inv.address("b8:27:eb:00:00:01", 101, "10.77.0.10");
        let facts = crate::dhcp::DhcpFacts {
            hostname: Some("cam".into()),
            mud_url: Some("https://x.example/m.json".into()),
            ..Default::default()
        };
        inv.dhcp("b8:27:eb:00:00:01", 102, &facts);
        inv.seen("02:77:00:00:00:09", 103, "quarantine", true, Some("unknown device"));
        assert_eq!(inv.flush().unwrap(), 2);
        assert_eq!(inv.flush().unwrap(), 0, "nothing changed, nothing written");
        drop(inv);
        let mut inv = Inventory::open(&path).unwrap();
        let cam = inv.get("b8:27:eb:00:00:01").unwrap().clone();
        assert_eq!((cam.first_seen, cam.last_seen, cam.hostname.as_deref()), (100, 102, Some("cam")));
        assert_eq!(cam.oui_vendor.as_deref(), Some("Raspberry Pi Foundation"));
        assert!(cam.addresses.contains("10.77.0.10"));
        assert_eq!(cam.mud_url.as_deref(), Some("https://x.example/m.json"));
        let q = inv.get("02:77:00:00:00:09").unwrap();
        assert!(q.quarantined && q.quarantine_reason.as_deref() == Some("unknown device"));
        assert!(inv.forget("b8:27:eb:00:00:01").unwrap());
        assert!(!inv.forget("b8:27:eb:00:00:01").unwrap(), "already gone");
        drop(inv);
        let inv = Inventory::open(&path).unwrap();
        assert!(inv.get("b8:27:eb:00:00:01").is_none(), "forgotten for good");
        let conn = Connection::open(&path).unwrap();
        let left: i64 =
            conn.query_row("SELECT COUNT(*) FROM addresses WHERE mac = 'b8:27:eb:00:00:01'", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0, "its addresses went with it");
    }

    #[test]
    fn addresses_and_records_are_bounded_oldest_first() {
        let path = temp("bounds");
        let mut inv = Inventory::open(&path).unwrap();
        for i in 0..20 {
            inv.address("02:77:00:00:00:01", 100 + i, &format!("fd77::{i}"));
        }
        let r = inv.get("02:77:00:00:00:01").unwrap();
        assert_eq!(r.addresses.len(), MAX_ADDRESSES);
        assert!(r.addresses.contains("fd77::19") && !r.addresses.contains("fd77::0"), "the oldest addresses went");
        for i in 0..MAX_RECORDS as i64 + 5 {
            inv.seen(&format!("02:78:00:00:{:02x}:{:02x}", i >> 8, i & 0xff), 1000 + i, "quarantine", true, None);
        }
        assert_eq!(inv.records().count(), MAX_RECORDS);
        assert!(inv.get("02:77:00:00:00:01").is_none(), "the longest unseen device went first");
        inv.flush().unwrap();
        drop(inv);
        let inv = Inventory::open(&path).unwrap();
        assert_eq!(inv.records().count(), MAX_RECORDS, "and from the database too");
    }

    #[test]
    fn broken_and_future_databases_are_clear_errors() {
        let path = temp("broken");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"this is not a database, it is a text file of some length....").unwrap();
        let e = Inventory::open(&path).unwrap_err().to_string();
        assert!(e.contains("inventory database") && e.contains("not a database"), "{e}");
        let path = temp("future");
        drop(Inventory::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let e = Inventory::open(&path).unwrap_err().to_string();
        assert!(e.contains("schema version 99, newer than this moat (1)"), "{e}");
    }
}
