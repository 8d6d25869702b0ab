//! Who may use the hub, what a client may cost it, and how records
//! outlive the hub's own end: the hub's policy.
//!
//! The `[hub]` keys read here (docs/CONFIG.md has the table):
//! `socket_group`, `allowed_uids`, `allowed_gids` (access), `handshake_timeout`,
//! `idle_timeout`, `frame_timeout`, `max_connections` (limits against idle,
//! slow and too many clients), `shutdown_timeout`, `journal`, `state_dir`
//! (delivery). Access control is in layers: the socket file's mode (0600 by
//! default) and group, a directory the hub checks is not writable by every
//! user, and optionally an allowlist checked against the kernel's word for
//! the peer (SO_PEERCRED) before a single byte of the client is read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use crate::config::keys::Section;

/// The most `max_connections` may allow (each client has a thread).
pub const MAX_CONNECTIONS: usize = 1 << 16;

/// The `[hub]` section's policy: access control, client limits, and the
/// delivery settings that decide what outlives the hub (its journal, the
/// drain at shutdown).
#[derive(Debug, Clone, PartialEq)]
pub struct HubPolicy {
    /// Group given to the socket file (a name or a number).
    pub socket_group: Option<String>,
    /// Only these uids may connect (with `allowed_gids`: either list admits).
    pub allowed_uids: Vec<u32>,
    /// Only these (primary) gids may connect.
    pub allowed_gids: Vec<u32>,
    /// A client must complete its hello within this (default 10 s).
    pub handshake_timeout: Duration,
    /// A client that sends nothing for this long is closed (default 600 s;
    /// zero = never). A closed client simply reconnects.
    pub idle_timeout: Duration,
    /// A frame must arrive whole within this once begun (default 30 s).
    pub frame_timeout: Duration,
    /// Clients connected at once (default 1024); more are refused.
    pub max_connections: usize,
    /// SIGTERM drains for at most this long (default 10 s), then reports
    /// what could not be delivered.
    pub shutdown_timeout: Duration,
    /// Journal durable handlers (default true): exactly-once in files
    /// across a killed hub. See `journal.rs`.
    pub journal: bool,
    /// Where journals live (default: the socket's directory).
    pub state_dir: Option<PathBuf>,
}

impl Default for HubPolicy {
    fn default() -> Self {
        HubPolicy {
            socket_group: None,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(10),
            journal: true,
            state_dir: None,
        }
    }
}

impl HubPolicy {
    /// Reads these keys of the `[hub]` section; problems are recorded in `s`.
    pub(crate) fn parse(s: &mut Section<'_>) -> HubPolicy {
        let d = HubPolicy::default();
        let ids = |v: &Value| {
            v.as_array()?.iter().map(|x| x.as_integer().and_then(|i| u32::try_from(i).ok())).collect()
        };
        let socket_group = s.parsed(&["socket_group"], "a group name or number", |v| match v {
            Value::String(g) if !g.is_empty() => Some(g.clone()),
            Value::Integer(i) if u32::try_from(*i).is_ok() => Some(i.to_string()),
            _ => None,
        });
        if let Some(Err(e)) = socket_group.as_deref().map(group_id) {
            s.issue("socket_group", e);
        }
        let state_dir = s.parsed(&["state_dir"], "a directory path", |v| {
            v.as_str().filter(|p| !p.is_empty()).map(PathBuf::from)
        });
        let journal = s.boolean(&["journal"]).unwrap_or(d.journal);
        // Where journals would live, if there are any.
        if journal && let Some(Err(e)) = state_dir.as_deref().map(check_private_dir) {
            s.issue("state_dir", e);
        }
        HubPolicy {
            socket_group,
            allowed_uids: s.parsed(&["allowed_uids"], "a list of numeric ids", ids).unwrap_or_default(),
            allowed_gids: s.parsed(&["allowed_gids"], "a list of numeric ids", ids).unwrap_or_default(),
            handshake_timeout: s.seconds(&["handshake_timeout"], false).unwrap_or(d.handshake_timeout),
            idle_timeout: s.seconds(&["idle_timeout"], true).unwrap_or(d.idle_timeout),
            frame_timeout: s.seconds(&["frame_timeout"], false).unwrap_or(d.frame_timeout),
            max_connections: s
                .positive_at_most(&["max_connections"], MAX_CONNECTIONS)
                .unwrap_or(d.max_connections),
            shutdown_timeout: s.seconds(&["shutdown_timeout"], true).unwrap_or(d.shutdown_timeout),
            journal,
            state_dir,
        }
    }

    /// Whether a peer with these kernel credentials may connect.
    pub(crate) fn admits(&self, uid: Option<u32>, gid: Option<u32>) -> bool {
        if self.allowed_uids.is_empty() && self.allowed_gids.is_empty() {
            return true;
        }
        uid.is_some_and(|u| self.allowed_uids.contains(&u))
            || gid.is_some_and(|g| self.allowed_gids.contains(&g))
    }
}

/// Refuses a directory for the socket or the journals that someone else
/// could change: one every user may write to, or one owned by another user
/// than the hub's (or root). Its owner could replace the socket with their
/// own (and read what workers log) or plant links where the hub writes.
#[cfg(unix)]
pub(crate) fn check_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("directory {} does not exist", dir.display()));
        }
        Err(e) => return Err(format!("cannot inspect {}: {e}", dir.display())),
    };
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(format!(
            "directory {} is writable by every user (mode {:04o}); use a private directory such as $XDG_RUNTIME_DIR or one with mode 0700/0750",
            dir.display(),
            mode & 0o7777
        ));
    }
    if meta.uid() != euid() && meta.uid() != 0 {
        return Err(format!(
            "directory {} belongs to uid {}, not to the hub's user (uid {}) or root: its owner could replace what the hub puts there",
            dir.display(),
            meta.uid(),
            euid()
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
pub(crate) fn check_private_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() { Ok(()) } else { Err(format!("directory {} does not exist", dir.display())) }
}

/// Refuses a socket name in Linux's abstract namespace (`@name`): no
/// permissions apply to it, so any local process could connect.
pub(crate) fn check_socket_path(path: &Path) -> Result<(), String> {
    if path.to_string_lossy().starts_with(['@', '\0']) {
        return Err(
            "abstract socket names are refused (no permissions apply to them); use a file path in a private directory"
                .into(),
        );
    }
    Ok(())
}

/// The gid of a group given by name or number.
#[cfg(unix)]
pub(crate) fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(g) = group.parse::<u32>() {
        return Ok(g);
    }
    let name = std::ffi::CString::new(group).map_err(|_| format!("bad group name {group:?}"))?;
    // SAFETY: `group` is plain data (integers and pointers); all zeroes is valid.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: valid C string, a zeroed group struct, a buffer and its length;
    // getgrnam_r writes only within them (reentrant: config parsing may run
    // on any thread).
    let rc = unsafe { libc::getgrnam_r(name.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return Err(format!("no such group {group:?}"));
    }
    Ok(grp.gr_gid)
}

#[cfg(not(unix))]
pub(crate) fn group_id(_group: &str) -> Result<u32, String> {
    Ok(0)
}

/// Gives the socket file the configured group.
#[cfg(unix)]
pub(crate) fn set_group(path: &Path, group: &str) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let gid = group_id(group)?;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| "bad socket path".to_owned())?;
    // SAFETY: valid C string; uid -1 leaves the owner unchanged.
    if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
        return Err(format!("cannot give it group {group}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn set_group(_path: &Path, _group: &str) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HubPolicy, Vec<String>> {
        let t: toml::Table = text.parse().unwrap();
        let mut s = Section::new("hub", &t);
        let c = HubPolicy::parse(&mut s);
        let issues = s.finish();
        if issues.is_empty() { Ok(c) } else { Err(issues.iter().map(|i| i.path.clone()).collect()) }
    }

    #[test]
    fn keys_parse_and_bad_values_name_their_key() {
        let c =
            parse("allowed_uids = [0, 1000]\nidle_timeout = 0\nframe_timeout = 2.5\nsocket_group = \"adm\"")
                .unwrap();
        assert_eq!(c.allowed_uids, [0, 1000]);
        assert_eq!(c.idle_timeout, Duration::ZERO);
        assert_eq!(c.frame_timeout, Duration::from_millis(2500));
        assert!(c.admits(Some(1000), Some(5)));
        assert!(!c.admits(Some(65534), Some(65534)));
        assert!(HubPolicy::default().admits(None, None));
        let e = parse("allowed_gids = [\"x\"]\nframe_timeout = 0\nmax_connections = -1").unwrap_err();
        assert_eq!(e, ["hub.allowed_gids", "hub.frame_timeout", "hub.max_connections"]);
    }

    #[test]
    fn world_writable_and_missing_directories_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        assert!(check_private_dir(d.path()).is_ok());
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_private_dir(d.path()).unwrap_err().contains("writable by every user"));
        assert!(check_private_dir(&d.path().join("x")).unwrap_err().contains("does not exist"));
        std::fs::write(d.path().join("f"), "").unwrap();
        assert!(check_private_dir(&d.path().join("f")).unwrap_err().contains("not a directory"));
        assert!(group_id("no-such-group-lf").unwrap_err().contains("no such group"));
        assert_eq!(group_id("0"), Ok(0));
    }
}
