//! The xDS port's accept loop: a cap on open connections, no busy loop when the process
//! is out of file descriptors, and the socket options every connection gets.
//!
//! A connection holds a permit of a semaphore for as long as it is open
//! ([`Connection`]); at the cap, switchyard stops accepting and new clients wait in the
//! kernel's backlog until one closes. When accepting fails for want of file descriptors,
//! the loop waits [`FD_BACKOFF`] before trying again instead of spinning (the failure is
//! logged once per episode). At startup the process raises its own file-descriptor soft
//! limit to the hard limit ([`raise_fd_limit`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::{info, warn};

/// File descriptors kept out of the xDS connection cap, for everything else the process
/// opens (the admin port and its connections, the state file, the audit log, the runtime).
pub const RESERVED_FDS: usize = 64;

/// How long accepting pauses after running out of file descriptors.
pub const FD_BACKOFF: Duration = Duration::from_millis(100);

/// TCP keepalive on xDS connections: a proxy whose host vanished without closing its
/// connection is dropped (and leaves `/status`) after about 30 s idle + 3 unanswered probes
/// 10 s apart. The kernel sends the probes; switchyard is not woken.
const TCP_KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(30))
    .with_interval(Duration::from_secs(10))
    .with_retries(3);

/// Raises this process's file-descriptor soft limit to its hard limit, so the connection
/// cap, not the default soft limit (often 1,024), is what bounds the xDS port. Returns the
/// limit in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// An accepted xDS connection; its slot under the cap is given back when it closes.
#[derive(Debug)]
pub struct Connection {
    tcp: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Linux's "too many open files" for the process (EMFILE) and for the system (ENFILE).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Is this accept error the process (or system) being out of file descriptors?
fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

/// Connections accepted on `listener`, at most `max_connections` open at once, each with
/// TCP_NODELAY (a switch is a small write that must leave at once) and [`TCP_KEEPALIVE`].
pub fn incoming(
    listener: TcpListener,
    max_connections: usize,
) -> impl Stream<Item = io::Result<Connection>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    futures::stream::unfold((listener, slots), |(listener, slots)| async move {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("bug: the connection semaphore is never closed");
        let mut starved = false;
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    if starved {
                        info!("accepting xDS connections again");
                    }
                    configure(&tcp);
                    let conn = Connection { tcp, _slot: slot };
                    return Some((Ok(conn), (listener, slots)));
                }
                Err(e) if out_of_fds(&e) => {
                    if !starved {
                        warn!(error = %e, "out of file descriptors: accepting xDS connections again in {FD_BACKOFF:?}");
                        starved = true;
                    }
                    tokio::time::sleep(FD_BACKOFF).await;
                }
                Err(e) => return Some((Err(e), (listener, slots))),
            }
        }
    })
}

fn configure(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        warn!(error = %e, "cannot set TCP_NODELAY on an xDS connection");
    }
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&TCP_KEEPALIVE) {
        warn!(error = %e, "cannot set TCP keepalive on an xDS connection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn accepted_xds_connections_have_nodelay_and_tcp_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(incoming(listener, 10));
        let _client = TcpStream::connect(addr).await.unwrap();
        let conn = incoming.next().await.unwrap().unwrap();
        assert!(conn.tcp.nodelay().unwrap());
        let socket = socket2::SockRef::from(&conn.tcp);
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
    }

    #[tokio::test]
    async fn at_the_cap_the_next_connection_waits_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(incoming(listener, 2));
        let _clients = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        let first = incoming.next().await.unwrap().unwrap();
        let _second = incoming.next().await.unwrap().unwrap();
        let third = tokio::time::timeout(Duration::from_millis(200), incoming.next()).await;
        assert!(
            third.is_err(),
            "a third connection is held back at a cap of 2"
        );
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await;
        assert!(third.unwrap().unwrap().is_ok(), "taken once a slot is free");
    }

    #[test]
    fn running_out_of_file_descriptors_is_recognised() {
        assert!(out_of_fds(&io::Error::from_raw_os_error(24)));
        assert!(out_of_fds(&io::Error::from_raw_os_error(23)));
        assert!(!out_of_fds(&io::Error::from_raw_os_error(104)));
    }
}
