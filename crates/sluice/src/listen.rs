//! Listening sockets: bound here, or inherited from the process that started
//! sluice (systemd socket activation: `LISTEN_FDS`, `LISTEN_PID`).
//!
//! An inherited socket is what makes a restart lose no connection: the
//! socket outlives every sluice process, so while the old one drains and the
//! new one starts, clients that connect wait in the socket's backlog instead
//! of being refused. Not for choosing addresses: the config does that, and an
//! inherited socket is used only for the address it is bound to.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// Adopted at most once per process: two owners of one descriptor would close it twice.
static ADOPTED: AtomicBool = AtomicBool::new(false);

/// The TCP listening sockets this process inherited, not yet used.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<(SocketAddr, std::net::TcpListener)>,
}

// === impl Inherited ===

impl Inherited {
    /// Adopts the sockets named by `LISTEN_FDS` when `LISTEN_PID` is unset
    /// or this process's id (the systemd protocol); empty otherwise, and on
    /// any later call.
    pub fn from_env() -> anyhow::Result<Inherited> {
        let Ok(count) = std::env::var("LISTEN_FDS") else {
            return Ok(Inherited::default());
        };
        if let Ok(pid) = std::env::var("LISTEN_PID") {
            if pid.trim() != std::process::id().to_string() {
                // Meant for another process (a parent that did not clear it).
                return Ok(Inherited::default());
            }
        }
        let count: RawFd = count.trim().parse().map_err(|_| {
            anyhow::anyhow!("LISTEN_FDS={count:?} is not a number of inherited sockets")
        })?;
        if ADOPTED.swap(true, Ordering::SeqCst) {
            return Ok(Inherited::default());
        }
        let mut sockets = Vec::new();
        for fd in FIRST_FD..FIRST_FD.saturating_add(count.max(0)) {
            // SAFETY: the systemd protocol hands descriptors 3..3+LISTEN_FDS to
            // this process, and ADOPTED makes this the only place that owns them.
            let socket = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            let address = socket.local_addr().map_err(|e| {
                anyhow::anyhow!("LISTEN_FDS: inherited descriptor {fd} is not a TCP socket: {e}")
            })?;
            socket.set_nonblocking(true)?;
            sockets.push((address, socket));
        }
        Ok(Inherited { sockets })
    }

    /// Takes the inherited socket bound to `address`, if there is one.
    pub fn take(&mut self, address: SocketAddr) -> Option<std::net::TcpListener> {
        let index = self.sockets.iter().position(|(a, _)| *a == address)?;
        Some(self.sockets.swap_remove(index).1)
    }

    /// The addresses of the inherited sockets no listener asked for.
    pub fn unused(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(address, _)| *address).collect()
    }

    /// The inherited socket bound to `address`, or a new one bound to it.
    pub async fn listen(&mut self, address: SocketAddr) -> std::io::Result<TcpListener> {
        match self.take(address) {
            Some(socket) => {
                tracing::info!(%address, "using the inherited listening socket");
                TcpListener::from_std(socket)
            }
            None => TcpListener::bind(address).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_inherited_socket_serves_its_own_address_only() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let address = socket.local_addr().unwrap();
        let mut inherited = Inherited {
            sockets: vec![(address, socket)],
        };
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(inherited.take(other).is_none());
        assert_eq!(inherited.unused(), vec![address]);
        let listener = inherited.listen(address).await.unwrap();
        assert_eq!(listener.local_addr().unwrap(), address);
        assert!(inherited.unused().is_empty());
    }
}
