//! A WebSocket client written against RFC 6455 and RFC 7692 directly, on a blocking
//! `TcpStream`, to read and write the wire byte by byte: what the server negotiates,
//! which frames carry RSV1, what a close frame says. It shares no code with the server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// One frame from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireFrame {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
    /// Its size on the wire, header included.
    pub wire_len: usize,
}

impl WireFrame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

pub struct RawClient {
    pub stream: TcpStream,
    /// The response head of the upgrade.
    pub head: String,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects and upgrades, sending `extra` header lines (each ending in `\r\n`).
    /// `recv_buffer`: the socket's receive buffer (small, for a client that falls behind).
    pub fn connect(addr: SocketAddr, extra: &str, recv_buffer: Option<usize>) -> RawClient {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket.connect(&addr.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            stream,
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .unwrap();
        let mut client = RawClient {
            stream,
            head: String::new(),
            buf: Vec::new(),
        };
        let end = client.fill_until(|buf| buf.windows(4).position(|w| w == b"\r\n\r\n"));
        let head: Vec<u8> = client.buf.drain(..end + 4).collect();
        client.head = String::from_utf8(head).unwrap();
        assert!(client.head.starts_with("HTTP/1.1 101"), "{}", client.head);
        client
    }

    /// A response header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    fn fill_until(&mut self, mut found: impl FnMut(&[u8]) -> Option<usize>) -> usize {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(at) = found(&self.buf) {
                return at;
            }
            let n = self.stream.read(&mut chunk).expect("read within 20 s");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next frame; None if the connection ended (EOF or reset) first.
    pub fn try_frame(&mut self) -> Option<WireFrame> {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(frame) = parse(&mut self.buf) {
                return Some(frame);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(err) => panic!("no frame within the safety timeout: {err}"),
            }
        }
    }

    /// True if no byte arrives before the socket's read timeout (set by the caller).
    pub fn nothing_pending(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => false,
            Ok(_) => {
                self.buf.push(byte[0]);
                false
            }
            Err(err) => matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    /// The next frame, which must come.
    pub fn frame(&mut self) -> WireFrame {
        self.try_frame()
            .expect("a frame before the connection ended")
    }

    /// The next data frame's text (inflated when RSV1 is set), skipping pings.
    pub fn text(&mut self) -> (String, WireFrame) {
        loop {
            let frame = self.frame();
            match frame.opcode {
                9 | 10 => continue,
                1 => {
                    let data = if frame.rsv1 {
                        inflate(&frame.payload)
                    } else {
                        frame.payload.clone()
                    };
                    return (String::from_utf8(data).unwrap(), frame);
                }
                other => panic!("expected a text frame, got opcode {other}: {frame:?}"),
            }
        }
    }

    /// The next data frame as JSON.
    pub fn json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.text().0).unwrap()
    }

    /// Sends a frame, masked with a fixed non-zero key.
    pub fn send(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) {
        let frame = masked(fin, rsv1, opcode, payload);
        self.stream.write_all(&frame).unwrap();
    }

    /// Sends a JSON text frame, uncompressed.
    pub fn send_json(&mut self, json: &serde_json::Value) {
        self.send(true, false, 1, json.to_string().as_bytes());
    }

    /// Reads until the connection ends, with no frame before: true if it ended in
    /// order (FIN), false if it was reset.
    pub fn ends_in_order(&mut self) -> bool {
        assert!(self.buf.is_empty(), "bytes before the end: {:?}", self.buf);
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => panic!("bytes before the end: {:?}", &chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(err) => panic!("the connection did not end within the safety timeout: {err}"),
        }
    }

    /// Reads until the connection ends; the frames read and the close code among them.
    pub fn close_code_at_end(&mut self) -> Option<u16> {
        let mut code = None;
        while let Some(frame) = self.try_frame() {
            if frame.opcode == 8 {
                code = frame.close_code();
            }
        }
        code
    }
}

/// A client frame: masked (key 0x37fa213d, as in RFC 6455 5.7).
pub fn masked(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    let len = payload.len();
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len <= 0xffff {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Takes one server frame off the front of `buf`, if it is whole.
fn parse(buf: &mut Vec<u8>) -> Option<WireFrame> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "a server frame is never masked");
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < header + len {
        return None;
    }
    let frame = WireFrame {
        fin: buf[0] & 0x80 != 0,
        rsv1: buf[0] & 0x40 != 0,
        opcode: buf[0] & 0x0f,
        payload: buf[header..header + len].to_vec(),
        wire_len: header + len,
    };
    assert_eq!(buf[0] & 0x30, 0, "RSV2 and RSV3 are never set");
    buf.drain(..header + len);
    Some(frame)
}

/// Raw deflate of one message with the RFC 7692 tail removed, as a client compresses.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let consumed = compress.total_in() as usize;
        out.reserve(64 << 10);
        compress
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if compress.total_in() as usize == data.len() && out.ends_with(&[0, 0, 0xff, 0xff]) {
            break;
        }
    }
    out.truncate(out.len() - 4);
    out
}

/// A client compressor that keeps its context from message to message (no
/// `client_no_context_takeover`), as browsers and most libraries do.
pub struct Deflater(Compress);

impl Deflater {
    pub fn new() -> Self {
        Deflater(Compress::new(Compression::default(), false))
    }

    /// The next message, sync-flushed, the tail removed.
    pub fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let start_in = self.0.total_in();
        let mut out = Vec::with_capacity(data.len() + 64);
        loop {
            let consumed = (self.0.total_in() - start_in) as usize;
            out.reserve(64 << 10);
            self.0
                .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
                .unwrap();
            let all_in = (self.0.total_in() - start_in) as usize == data.len();
            if all_in && out.ends_with(&[0, 0, 0xff, 0xff]) {
                break;
            }
        }
        out.truncate(out.len() - 4);
        out
    }
}

/// Inflates one server message (the tail appended).
pub fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompress = Decompress::new(false);
    let mut out = Vec::new();
    while (decompress.total_in() as usize) < input.len() {
        out.reserve(64 << 10);
        let before = (decompress.total_in(), decompress.total_out());
        let consumed = decompress.total_in() as usize;
        decompress
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .expect("the server's deflate data inflates");
        if (decompress.total_in(), decompress.total_out()) == before {
            break;
        }
    }
    out
}

/// This process's resident memory, in KiB (Linux), or None.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
