//! systemd's readiness protocol (`Type=notify`): when `NOTIFY_SOCKET` is
//! set, the hub says `READY=1` once its socket accepts connections and
//! `STOPPING=1` when it starts draining, so `systemctl start` returns when
//! clients can connect and units ordered after it start no earlier.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, …) to the service manager, if there is one.
/// Failing to notify is reported but never stops the hub.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let result = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket name (Linux).
            Some(name) => {
                #[cfg(target_os = "linux")]
                {
                    use std::os::linux::net::SocketAddrExt;
                    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                    sock.send_to_addr(state.as_bytes(), &addr)
                }
                #[cfg(not(target_os = "linux"))]
                {
                    let _ = name;
                    Err(std::io::Error::other("abstract socket names need Linux"))
                }
            }
            None => sock.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = result {
        eprintln!("logfunnel hub: cannot notify the service manager ({}): {e}", path.to_string_lossy());
    }
}
