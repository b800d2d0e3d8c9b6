//! Who may use the control socket: root, the user moat runs as, and members
//! of `[api] group` (primary or supplementary). The socket's mode already
//! keeps others out; this check holds even if someone loosens the mode.

use std::path::Path;

/// A connecting process, from SO_PEERCRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// The allowed set, resolved once at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub own_uid: u32,
    /// `None`: the group does not exist (only root and moat's user get in).
    pub gid: Option<u32>,
}

impl Allowed {
    pub fn permits(&self, p: &Peer) -> bool {
        if p.uid == 0 || p.uid == self.own_uid {
            return true;
        }
        let Some(gid) = self.gid else { return false };
        p.gid == gid || p.pid.is_some_and(|pid| supplementary_groups(pid).contains(&gid))
    }
}

/// The group's id from the group database (`/etc/group`).
pub fn group_id(name: &str) -> Option<u32> {
    group_id_in(&std::fs::read_to_string("/etc/group").ok()?, name)
}

fn group_id_in(db: &str, name: &str) -> Option<u32> {
    db.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// This process's effective uid, from `/proc/self/status` (`Uid:` real,
/// effective, ...). Not the owner of `/proc/self`: that is root for a
/// process the kernel marks non-dumpable. Unreadable: root (allows nothing new).
pub fn own_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    effective_uid(&status).unwrap_or(0)
}

fn effective_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// The `Groups:` of a process, from /proc (empty if it is gone).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).unwrap_or_default();
    parse_groups(&status)
}

fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_read_from_the_databases() {
        let db = "root:x:0:\nmoat:x:997:alice,bob\nmoatx:x:5:\n";
        assert_eq!((group_id_in(db, "moat"), group_id_in(db, "moa"), group_id_in(db, "nope")), (Some(997), None, None));
        assert_eq!(parse_groups("Name:\tsh\nGroups:\t4 24 997 \nNSpid:\t1\n"), [4, 24, 997]);
        assert!(parse_groups("Name:\tsh\n").is_empty());
        assert_eq!(effective_uid("Name:\tmoat\nUid:\t0\t997\t997\t997\n"), Some(997));
    }

    #[test]
    fn only_root_moat_and_the_group_are_permitted() {
        let a = Allowed { own_uid: 0, gid: Some(997) };
        let peer = |uid, gid| Peer { uid, gid, pid: None };
        assert!(a.permits(&peer(0, 0)));
        assert!(a.permits(&peer(1000, 997)));
        assert!(!a.permits(&peer(1000, 1000)));
        let no_group = Allowed { own_uid: 42, gid: None };
        assert!(no_group.permits(&peer(42, 42)) && !no_group.permits(&peer(1000, 997)));
    }
}
