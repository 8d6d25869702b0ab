//! Who may use the hub, and what a client may cost it.
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

use toml::{Table, Value};

/// The `[hub]` keys handled here, for the unknown-key check.
pub(crate) const KEYS: &[&[&str]] = &[
    &["socket_group"],
    &["allowed_uids"],
    &["allowed_gids"],
    &["handshake_timeout"],
    &["idle_timeout"],
    &["frame_timeout"],
    &["max_connections"],
    &["shutdown_timeout"],
    &["journal"],
    &["state_dir"],
];

/// Access control, client limits and delivery settings of the `[hub]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessConfig {
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

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
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

type Issues = Vec<(&'static str, String)>;

impl AccessConfig {
    /// Reads the keys from the `[hub]` table; every problem is returned with its key.
    pub(crate) fn parse(t: &Table) -> Result<AccessConfig, Issues> {
        let mut c = AccessConfig::default();
        let mut issues: Issues = Vec::new();
        if let Some(v) = t.get("socket_group") {
            match v {
                Value::String(s) if !s.is_empty() => c.socket_group = Some(s.clone()),
                Value::Integer(i) if u32::try_from(*i).is_ok() => c.socket_group = Some(i.to_string()),
                other => {
                    issues.push(("socket_group", format!("expected a group name or number, found {other}")))
                }
            }
        }
        for (key, out) in [("allowed_uids", &mut c.allowed_uids), ("allowed_gids", &mut c.allowed_gids)] {
            let Some(v) = t.get(key) else { continue };
            let ids = v.as_array().and_then(|a| {
                a.iter()
                    .map(|x| x.as_integer().and_then(|i| u32::try_from(i).ok()))
                    .collect::<Option<Vec<_>>>()
            });
            match ids {
                Some(ids) => *out = ids,
                None => issues.push((key, format!("expected a list of numeric ids, found {v}"))),
            }
        }
        let durations: [(&'static str, &mut Duration, bool); 4] = [
            ("handshake_timeout", &mut c.handshake_timeout, false),
            ("idle_timeout", &mut c.idle_timeout, true),
            ("frame_timeout", &mut c.frame_timeout, false),
            ("shutdown_timeout", &mut c.shutdown_timeout, true),
        ];
        for (key, out, zero_ok) in durations {
            let Some(v) = t.get(key) else { continue };
            let secs = match v {
                Value::Integer(i) => Some(*i as f64),
                Value::Float(f) => Some(*f),
                _ => None,
            };
            match secs {
                Some(s) if s.is_finite() && (s > 0.0 || zero_ok && s == 0.0) && s < 1e9 => {
                    *out = Duration::from_secs_f64(s)
                }
                _ => issues.push((
                    key,
                    format!(
                        "expected a number of seconds{}, found {v}",
                        if zero_ok { " (0 = never)" } else { " above 0" }
                    ),
                )),
            }
        }
        if let Some(v) = t.get("max_connections") {
            match v.as_integer().filter(|i| *i > 0) {
                Some(i) => c.max_connections = i as usize,
                None => issues.push(("max_connections", format!("expected a positive integer, found {v}"))),
            }
        }
        if let Some(v) = t.get("journal") {
            match v.as_bool() {
                Some(b) => c.journal = b,
                None => issues.push(("journal", format!("expected true or false, found {v}"))),
            }
        }
        if let Some(v) = t.get("state_dir") {
            match v.as_str() {
                Some(s) if !s.is_empty() => c.state_dir = Some(PathBuf::from(s)),
                _ => issues.push(("state_dir", format!("expected a directory path, found {v}"))),
            }
        }
        if issues.is_empty() { Ok(c) } else { Err(issues) }
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

/// Refuses a socket directory every user may write to: anyone could replace
/// the socket with their own (and read what workers log).
#[cfg(unix)]
pub(crate) fn check_socket_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(format!(
            "its directory {} is writable by every user (mode {:04o}); use a private directory such as $XDG_RUNTIME_DIR or one with mode 0700/0750",
            dir.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn check_socket_dir(_dir: &Path) -> Result<(), String> {
    Ok(())
}

/// Gives the socket file the configured group.
#[cfg(unix)]
pub(crate) fn set_group(path: &Path, group: &str) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let gid = match group.parse::<u32>() {
        Ok(g) => g,
        Err(_) => {
            let name = std::ffi::CString::new(group).map_err(|_| format!("bad group name {group:?}"))?;
            // SAFETY: a valid C string; the result is read at once (start-up, one thread).
            let gr = unsafe { libc::getgrnam(name.as_ptr()) };
            if gr.is_null() {
                return Err(format!("no such group {group:?}"));
            }
            // SAFETY: non-null pointer returned by getgrnam.
            unsafe { (*gr).gr_gid }
        }
    };
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

    fn parse(s: &str) -> Result<AccessConfig, Issues> {
        AccessConfig::parse(&s.parse::<Table>().unwrap())
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
        assert!(AccessConfig::default().admits(None, None));
        let e = parse("allowed_gids = [\"x\"]\nframe_timeout = 0\nmax_connections = -1").unwrap_err();
        let keys: Vec<_> = e.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["allowed_gids", "frame_timeout", "max_connections"]);
    }

    #[test]
    fn world_writable_directories_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        assert!(check_socket_dir(d.path()).is_ok());
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_socket_dir(d.path()).unwrap_err().contains("writable by every user"));
    }
}
