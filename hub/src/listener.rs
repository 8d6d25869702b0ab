//! The hub's socket: binding (stale-socket recovery, permissions) and the
//! accept loop that gives each client its own reader thread.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{GenericFilePath, Listener, ListenerOptions, Stream};

use crate::connection;
use crate::{HubError, HubShared};

/// Binds the socket at `path` with permission bits `mode`.
///
/// A socket file nobody listens on (a hub that was killed) is replaced; a
/// live hub is left alone and reported. The parent directory is created
/// (mode 0700) if missing.
pub(crate) fn bind(path: &Path, mode: u32, group: Option<&str>) -> Result<Listener, HubError> {
    let err = |what: &str, source: io::Error| HubError::Socket {
        path: path.to_path_buf(),
        what: what.to_owned(),
        error: source,
    };
    crate::access::check_socket_path(path)
        .map_err(|why| err("refusing to serve it", io::Error::new(io::ErrorKind::InvalidInput, why)))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        create_private_dir(dir).map_err(|e| err("creating its directory", e))?;
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::access::check_private_dir(dir)
        .map_err(|why| err("refusing to serve it", io::Error::new(io::ErrorKind::PermissionDenied, why)))?;
    // Never follow a symlink planted where the socket should be.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(err(
            "refusing to serve it",
            io::Error::new(io::ErrorKind::InvalidInput, "the path is a symbolic link"),
        ));
    }
    let listener = match create(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            // Only ever replace a socket: bind(2) reports any file in the
            // way as an address in use.
            if !is_socket(path) {
                return Err(err(
                    "refusing to replace it",
                    io::Error::new(io::ErrorKind::AlreadyExists, "a file that is not a socket is in the way"),
                ));
            }
            // Probe before removing: try_overwrite would evict a live hub.
            match path.to_fs_name::<GenericFilePath>().and_then(Stream::connect) {
                Ok(_) => return Err(HubError::AlreadyRunning(path.to_path_buf())),
                Err(probe)
                    if matches!(probe.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound) =>
                {
                    crate::diag::notice(&format!(
                        "replacing stale socket {} (nobody listening)",
                        path.display()
                    ));
                    let _ = std::fs::remove_file(path);
                    create(path).map_err(|e| err("binding", e))?
                }
                Err(probe) => return Err(err("probing the existing socket", probe)),
            }
        }
        Err(e) => return Err(err("binding", e)),
        Ok(l) => l,
    };
    if let Some(group) = group {
        crate::access::set_group(path, group)
            .map_err(|why| err("setting its group", io::Error::new(io::ErrorKind::InvalidInput, why)))?;
    }
    set_mode(path, mode).map_err(|e| err("setting its permissions", e))?;
    Ok(listener)
}

#[cfg(unix)]
fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(not(unix))]
fn is_socket(_path: &Path) -> bool {
    true
}

fn create(path: &Path) -> io::Result<Listener> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    // Bind under a restrictive umask so the socket is never briefly open to
    // others before the chmod below sets the configured mode.
    let _umask = Umask::set(0o177);
    ListenerOptions::new().name(name).create_sync()
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

pub(crate) struct Umask(#[cfg(unix)] libc::mode_t);

impl Umask {
    #[cfg(unix)]
    pub(crate) fn set(mask: u32) -> Umask {
        // SAFETY: umask has no preconditions.
        Umask(unsafe { libc::umask(mask as libc::mode_t) })
    }
    #[cfg(not(unix))]
    pub(crate) fn set(_mask: u32) -> Umask {
        Umask()
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restores the previous mask.
        unsafe {
            libc::umask(self.0);
        }
    }
}

#[cfg(unix)]
fn wait_readable(listener: &Listener, timeout_ms: i32) -> bool {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = match listener {
        Listener::UdSocket(l) => l.as_fd().as_raw_fd(),
    };
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) > 0 }
}

#[cfg(not(unix))]
fn wait_readable(_listener: &Listener, _timeout_ms: i32) -> bool {
    true // blocking accept; shutdown relies on the wake-up connection
}

/// Starts `serve` (given the connection's id) on a reader thread named
/// `{name}-{id}`, unless `max_connections` readers are running: then the
/// connection is refused, counted and reported (`refused` writes the text,
/// given the limit), and `serve` is dropped unrun, closing the stream
/// unread: a flood of connections costs no thread.
pub(crate) fn start_reader(
    readers: &mut Vec<std::thread::JoinHandle<()>>,
    shared: &HubShared,
    name: &str,
    refused: impl FnOnce(usize) -> String,
    serve: impl FnOnce(u64) + Send + 'static,
) {
    readers.retain(|h| !h.is_finished());
    if readers.len() >= shared.policy.max_connections {
        crate::stats::add(&shared.counters.over_limit, 1);
        shared.warn_limited("connections over max_connections", &refused(shared.policy.max_connections));
        return;
    }
    let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name(format!("{name}-{id}"))
        .stack_size(256 << 10)
        .spawn(move || serve(id));
    match spawned {
        Ok(h) => readers.push(h),
        Err(e) => {
            shared.warn_limited("accept errors", &format!("cannot start a reader for connection {id}: {e}"))
        }
    }
}

/// Accepts clients until the hub stops; each gets a reader thread.
pub(crate) fn accept_loop(
    listener: Listener,
    shared: Arc<HubShared>,
    tx: crossbeam_channel::Sender<crate::frame::InBatch>,
    socket: PathBuf,
) {
    let mut readers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    loop {
        // Wait for a client with a timeout, so shutdown never depends on
        // the wake-up connection getting through (the socket file may be gone).
        let ready = wait_readable(&listener, 100);
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        if !ready {
            continue;
        }
        match listener.accept() {
            Ok(stream) => {
                let (s, t) = (Arc::clone(&shared), tx.clone());
                start_reader(
                    &mut readers,
                    &shared,
                    "logfunnel-conn",
                    |n| format!("refused a connection: {n} clients already connected (max_connections)"),
                    move |id| connection::serve(stream, id, s, t),
                );
            }
            Err(e) => {
                shared.warn_limited("accept errors", &format!("accept on {} failed: {e}", socket.display()));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    drop(listener); // unlinks the socket file
    for h in readers {
        let _ = h.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_socket_keeps_its_reason_as_the_source() {
        let Err(e) = bind(Path::new("@abstract"), 0o600, None) else { panic!("an abstract name was bound") };
        assert_eq!(e.to_string(), "socket @abstract: refusing to serve it");
        let source = std::error::Error::source(&e).expect("the reason is the source");
        assert!(source.to_string().starts_with("abstract socket names are refused"), "{source}");
    }
}
