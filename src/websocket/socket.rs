//! The TCP socket of a WebSocket session: tuned for pushing small frames, and cut when
//! its client takes nothing, not even a close frame.
//!
//! A session's actor runs whether or not its client reads, and closes a stalled client
//! itself (4008 after `write_timeout`). But actix-web's dispatcher polls a response body
//! only while its write buffer has room, so it never ends a connection whose client has
//! stopped reading: the close frame stays unwritten, and the connection with it. The
//! session then cuts the connection itself, [`CLOSE_GRACE`](super::CLOSE_GRACE) after it
//! started closing, through a duplicate of the socket's descriptor taken when the
//! connection was accepted: register [`on_connect`] on the `HttpServer`
//! (`HttpServer::new(..).on_connect(on_connect)`). Without it such a session still ends
//! (its memory and its `max_connections` slot come back), and its connection lasts
//! until the operating system gives up on it.
//!
//! The same duplicate sets, on the session's socket:
//! - `TCP_NODELAY`: each frame leaves as it is written. With Nagle's algorithm a frame
//!   waits for the acknowledgement of the previous one, which a client that only reads
//!   delays (up to 40 ms on Linux); `tickwire serve` sets it on every connection.
//! - on Linux, `TCP_USER_TIMEOUT` = `connection_timeout` plus
//!   [`CLOSE_GRACE`](super::CLOSE_GRACE), so the kernel itself drops a connection whose
//!   peer takes none of our data for that long, including after the session ended (its
//!   close frame unsent).
//!
//! Only plain TCP on Unix, over HTTP/1.1, is supported; on other transports (TLS, Unix
//! sockets, other systems) `on_connect` records nothing, a warning is logged on the first
//! WebSocket connection, and a client that stops reading holds its connection (not its
//! session, nor its `max_connections` slot) until the operating system gives up on it,
//! which for an acknowledged zero window may be never. (There, `HttpServer::tcp_nodelay(true)` still
//! sets `TCP_NODELAY`.)

use std::any::Any;
use std::sync::Arc;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;

/// A duplicate of a connection's socket descriptor, made by [`on_connect`] and closed
/// with the connection's data (or later, by the last session that holds it).
#[derive(Clone, Debug)]
struct ConnectionSocket(#[cfg_attr(not(unix), allow(dead_code))] Arc<socket2::Socket>);

/// Records a duplicate of the connection's socket so the WebSocket service can tune it
/// and reset the connection of a client that takes nothing, not even a close frame.
/// Pass it to `HttpServer::on_connect`.
///
/// The duplicate is an owned descriptor of its own (`dup(2)`), made while actix-web holds
/// the connection: nothing an app's middleware does can make it name another socket. It
/// is closed with the connection, so every connection holds two descriptors: size the
/// process's `RLIMIT_NOFILE` (`ulimit -n`) for twice `max_connections`, plus the plain
/// HTTP connections.
///
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use tickwire::{websocket, WebSocketService, WebSocketServiceConfig};
///
/// # async fn run() -> std::io::Result<()> {
/// let ws = WebSocketService::start(WebSocketServiceConfig::default()).unwrap();
/// HttpServer::new(move || App::new().configure(websocket::configure(ws.clone())))
///     .on_connect(websocket::on_connect)
///     .bind("127.0.0.1:8080")?
///     .run()
///     .await
/// # }
/// ```
pub fn on_connect(connection: &dyn Any, extensions: &mut Extensions) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            match tcp.as_fd().try_clone_to_owned() {
                Ok(owned) => {
                    extensions.insert(ConnectionSocket(Arc::new(socket2::Socket::from(owned))));
                }
                Err(err) => {
                    // Once: in a flood of connections (descriptors run out), each would log.
                    static WARNED: std::sync::atomic::AtomicBool =
                        std::sync::atomic::AtomicBool::new(false);
                    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!(%err, "cannot duplicate a connection's socket (logged once): a WebSocket session on such a connection cannot be reset if it stalls");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (connection, extensions);
}

/// A session's socket (the duplicate [`on_connect`] made), to tune and to reset the
/// connection with.
pub(crate) struct SessionSocket(#[cfg_attr(not(unix), allow(dead_code))] Arc<socket2::Socket>);

impl SessionSocket {
    /// The socket of the connection `req` arrived on, if [`on_connect`] recorded it, with
    /// `TCP_NODELAY` set, and `TCP_USER_TIMEOUT` set to `user_timeout` (Linux). `None`
    /// for HTTP/2 (a connection shared by many streams is not one session's to reset) and
    /// when nothing was recorded.
    pub(crate) fn for_request(
        req: &HttpRequest,
        user_timeout: std::time::Duration,
    ) -> Option<SessionSocket> {
        #[cfg(unix)]
        {
            if req.version() >= actix_web::http::Version::HTTP_2 {
                return None;
            }
            let socket = SessionSocket(req.conn_data::<ConnectionSocket>()?.0.clone());
            socket.tune(user_timeout);
            Some(socket)
        }
        #[cfg(not(unix))]
        {
            let _ = (req, user_timeout);
            None
        }
    }

    /// Sets `TCP_NODELAY`, and `TCP_USER_TIMEOUT` to `user_timeout` (Linux); a failure is
    /// logged, and the session goes on without.
    #[cfg(unix)]
    fn tune(&self, user_timeout: std::time::Duration) {
        if let Err(err) = self.0.set_tcp_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY on a WebSocket connection");
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Err(err) = self.0.set_tcp_user_timeout(Some(user_timeout)) {
            tracing::warn!(%err, "cannot set TCP_USER_TIMEOUT on a WebSocket connection");
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = user_timeout;
    }

    /// Shuts the socket's read side: actix-web's dispatcher reads the end of the stream,
    /// writes out what it holds and ends the connection (a FIN). A failure (the
    /// connection is gone already) is of no consequence.
    pub(crate) fn shut_read(&self) {
        #[cfg(unix)]
        let _ = self.0.shutdown(std::net::Shutdown::Read);
    }

    /// Resets the connection: no lingering on unsent data, then shut both directions,
    /// which wakes actix-web's dispatcher with an error so it drops the session. True if
    /// the shutdown was done.
    pub(crate) fn cut(&self) -> bool {
        #[cfg(unix)]
        {
            let _ = self.0.set_linger(Some(std::time::Duration::ZERO));
            self.0.shutdown(std::net::Shutdown::Both).is_ok()
        }
        #[cfg(not(unix))]
        false
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::SessionSocket;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn tune_sets_nodelay_and_the_user_timeout_on_the_shared_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(!accepted.nodelay().unwrap(), "Nagle is on by default");
        // A duplicate, as the session takes: the options are the socket's, not the fd's.
        let socket = SessionSocket(Arc::new(socket2::Socket::from(
            accepted.try_clone().unwrap(),
        )));
        socket.tune(Duration::from_millis(35_000));
        assert!(accepted.nodelay().unwrap());
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            socket2::SockRef::from(&accepted)
                .tcp_user_timeout()
                .unwrap(),
            Some(Duration::from_millis(35_000))
        );
    }
}
