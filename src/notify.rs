//! systemd readiness notifications (`Type=notify`, sd_notify(3)) without a C library.
//!
//! When `NOTIFY_SOCKET` is set, the server sends `READY=1` once it listens, `RELOADING=1` then
//! `READY=1` around a SIGHUP reload, and `STOPPING=1` when a graceful shutdown begins. Without
//! the variable every call is a no-op. Errors are logged at debug level and otherwise ignored:
//! a missing supervisor must not stop the broker.

use std::os::unix::net::UnixDatagram;

use log::debug;

/// Sends `state` (e.g. `"READY=1"`) to the service manager, if there is one.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let path = path.to_string_lossy();
        if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            socket.send_to(state.as_bytes(), path.as_ref())?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        debug!("sd_notify {state:?}: {e}");
    }
}
