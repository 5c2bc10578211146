//! Cutting the TCP connection of a session whose actor cannot run.
//!
//! actix-web runs a WebSocket session inside the response body stream, and polls that
//! stream only while the connection's write buffer has room. A client that stops reading
//! therefore freezes its session actor: it cannot send a close frame, nor even notice a
//! timer. The hub then resets the connection itself, through a duplicate of the socket's
//! descriptor taken when the session started, which needs the descriptor: register
//! [`on_connect`] on the `HttpServer` (`HttpServer::new(..).on_connect(on_connect)`).
//! Without it such a session is only forgotten by the hub (its memory stays bounded) and
//! its connection lasts until the operating system gives up on it.
//!
//! Only plain TCP on Unix is supported; on other transports (TLS, Unix sockets, other
//! systems) `on_connect` records nothing.

use std::any::Any;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;

/// The raw descriptor of a connection, recorded by [`on_connect`].
#[derive(Clone, Copy, Debug)]
struct ConnectionFd(#[cfg_attr(not(unix), allow(dead_code))] i32);

/// Records the connection's socket descriptor so the WebSocket service can reset the
/// connection of a client that stops reading. Pass it to `HttpServer::on_connect`.
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
        use std::os::fd::AsRawFd;
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            extensions.insert(ConnectionFd(tcp.as_raw_fd()));
        }
    }
    #[cfg(not(unix))]
    let _ = (connection, extensions);
}

/// A duplicate of a session's socket descriptor, to reset the connection with.
pub(crate) struct Cutter(#[cfg_attr(not(unix), allow(dead_code))] socket2::Socket);

impl Cutter {
    /// The socket of the connection `req` arrived on, if [`on_connect`] recorded it.
    ///
    /// Must be called while the request is being handled (as a handler does): the
    /// descriptor is then open, since the connection that owns it is the one running the
    /// handler.
    pub(crate) fn for_request(req: &HttpRequest) -> Option<Cutter> {
        #[cfg(unix)]
        {
            use std::os::fd::BorrowedFd;
            let fd = req.conn_data::<ConnectionFd>()?.0;
            // SAFETY: `fd` is the descriptor of the connection this request arrived on,
            // recorded when the connection was accepted. actix-web polls a handler from
            // within that connection's dispatcher, which owns the socket and closes it only
            // when it is dropped; so while this handler runs, `fd` is open and is that
            // socket. The duplicate made here is an independent, owned descriptor.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let owned = borrowed.try_clone_to_owned().ok()?;
            Some(Cutter(socket2::Socket::from(owned)))
        }
        #[cfg(not(unix))]
        {
            let _ = req;
            None
        }
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
