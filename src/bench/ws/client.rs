//! One WebSocket connection of the load generator, on a tokio `TcpStream` of the thread
//! that owns it (a current-thread runtime): the upgrade, the server's frames as they are
//! read, and the client's masked frames. The bytes are [`wire`](super::wire)'s.
//!
//! Frames are read in place: [`Conn::fill`] appends what the socket has to one buffer,
//! and [`Conn::frame`] hands out the whole frames in it, borrowed, without copying, so a
//! reader handles every frame of a read before it reads again.

use std::io::{Error, ErrorKind, Result};
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::wire::{self, Head};

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// A connection, upgraded.
pub(super) struct Conn {
    stream: TcpStream,
    /// Bytes read; those before `start` are handled.
    buf: Vec<u8>,
    start: usize,
    /// permessage-deflate was agreed.
    deflate: bool,
}

/// A whole server frame, borrowed from the read buffer.
pub(super) struct Frame<'a> {
    /// Its header.
    pub(super) head: Head,
    /// Its payload (unmasked: a server's frames are not masked).
    pub(super) payload: &'a [u8],
}

/// An error for what the server sent, as I/O errors are (the bench fails a run with it).
pub(super) fn protocol(err: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidData, err.to_string())
}

impl Conn {
    /// Connects to `addr` and upgrades `GET /ws`, offering permessage-deflate when
    /// `offer_deflate` is set. Frames that came with the 101 stay in the buffer.
    pub(super) async fn connect(addr: SocketAddr, offer_deflate: bool) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            deflate: false,
        };
        let request = wire::upgrade_request(&addr.to_string(), offer_deflate);
        conn.send(request.as_bytes()).await?;
        let len = loop {
            if let Some(len) = wire::head_len(&conn.buf) {
                break len;
            }
            if !conn.fill().await? {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "the server closed the connection during the upgrade",
                ));
            }
        };
        conn.deflate = wire::check_upgrade(&conn.buf[..len]).map_err(protocol)?;
        conn.start = len;
        Ok(conn)
    }

    /// Whether permessage-deflate was agreed.
    pub(super) fn deflate(&self) -> bool {
        self.deflate
    }

    /// Waits for bytes and appends what the socket has; false when the connection ended
    /// (EOF).
    pub(super) async fn fill(&mut self) -> Result<bool> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.capacity() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(READ_CHUNK);
        loop {
            self.stream.readable().await?;
            match self.stream.try_read_buf(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(err) if err.kind() == ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// The next whole frame among the bytes read, if one is there.
    pub(super) fn frame(&mut self) -> Result<Option<Frame<'_>>> {
        let rest = &self.buf[self.start..];
        let Some(head) = wire::parse_head(rest, self.deflate).map_err(protocol)? else {
            return Ok(None);
        };
        if rest.len() < head.wire_len() {
            return Ok(None);
        }
        let at = self.start + head.len;
        self.start += head.wire_len();
        Ok(Some(Frame {
            head,
            payload: &self.buf[at..at + head.payload],
        }))
    }

    /// The next frame, reading as needed (owned); None when the connection ended first.
    pub(super) async fn next_frame(&mut self) -> Result<Option<(Head, Vec<u8>)>> {
        loop {
            if let Some(frame) = self.frame()? {
                return Ok(Some((frame.head, frame.payload.to_vec())));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Ends the client's side of the connection (a TCP FIN); reading goes on.
    pub(super) async fn shutdown_write(&mut self) -> Result<()> {
        self.stream.shutdown().await
    }

    /// Writes `bytes` (a client frame, or the upgrade request) whole.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await
    }
}
