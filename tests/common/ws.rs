//! A WebSocketService behind a real actix-web server on 127.0.0.1:0, and an awc client.

use std::net::SocketAddr;
use std::time::Duration;

use actix_http::ws::{Frame, Message, ProtocolError};
use actix_web::{App, HttpServer};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::Value;
use tickwire::{websocket, WebSocketService};

/// Safety net for anything awaited: far beyond what a loaded machine needs.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A client connection (awc's framed stream).
pub trait Client:
    Stream<Item = Result<Frame, ProtocolError>> + Sink<Message, Error = ProtocolError> + Unpin
{
}
impl<T> Client for T where
    T: Stream<Item = Result<Frame, ProtocolError>> + Sink<Message, Error = ProtocolError> + Unpin
{
}

pub struct Server {
    pub addr: SocketAddr,
    pub ws: WebSocketService,
    pub handle: actix_web::dev::ServerHandle,
}

impl Server {
    pub fn start(ws: WebSocketService) -> Server {
        Server::start_lingering(ws, None)
    }

    /// Like `start`, on `addr` (a port a stopped server had: a restart).
    pub fn start_at(ws: WebSocketService, addr: SocketAddr) -> Server {
        Server::start_on(ws, None, addr)
    }

    /// Like `start`, with actix-web's `client_disconnect_timeout` (how long it lingers
    /// for the client to end its side after a response) set to `linger`.
    pub fn start_lingering(ws: WebSocketService, linger: Option<Duration>) -> Server {
        Server::start_on(ws, linger, "127.0.0.1:0".parse().expect("an address"))
    }

    fn start_on(ws: WebSocketService, linger: Option<Duration>, addr: SocketAddr) -> Server {
        let app_ws = ws.clone();
        let mut server =
            HttpServer::new(move || App::new().configure(websocket::configure(app_ws.clone())))
                .on_connect(websocket::on_connect)
                .workers(1)
                .disable_signals();
        if let Some(linger) = linger {
            server = server.client_disconnect_timeout(linger);
        }
        let server = server.bind(addr).expect("bind the test server");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Server { addr, ws, handle }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A connected client and its id (the welcome frame is read).
    pub async fn connect(&self) -> (impl Client, String) {
        let (conn, welcome) = self.welcomed().await;
        let id = welcome["client_id"].as_str().expect("client_id").to_owned();
        (conn, id)
    }

    /// A connected client and its welcome frame.
    pub async fn welcomed(&self) -> (impl Client, Value) {
        let (_, mut conn) = awc::Client::new()
            .ws(self.url())
            .connect()
            .await
            .expect("websocket connect");
        let welcome = next_json(&mut conn).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (conn, welcome)
    }

    pub async fn shutdown(self) {
        self.ws.stop().await;
        self.handle.stop(true).await;
    }
}

/// The next frame that is not a ping (pings are answered).
pub async fn next_frame(conn: &mut impl Client) -> Frame {
    loop {
        let frame = actix_rt::time::timeout(PATIENCE, conn.next())
            .await
            .expect("a frame within the safety timeout")
            .expect("the connection is open")
            .expect("a valid frame");
        match frame {
            Frame::Ping(payload) => conn.send(Message::Pong(payload)).await.expect("pong"),
            other => return other,
        }
    }
}

/// The next text frame, as JSON.
pub async fn next_json(conn: &mut impl Client) -> Value {
    match next_frame(conn).await {
        Frame::Text(bytes) => serde_json::from_slice(&bytes).expect("JSON text frame"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Sends a frame and reads the answer.
pub async fn request(conn: &mut impl Client, frame: Value) -> Value {
    conn.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
    next_json(conn).await
}
