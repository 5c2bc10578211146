//! The load generator's side of the wire, as bytes: the upgrade request and the check of
//! its response, server frame headers, masked client frames, and inflating a
//! permessage-deflate message. Written against RFC 6455 and RFC 7692 directly and sharing
//! no code with the server's frame path (`crate::websocket::frame`), so that the bench
//! checks what the server sends rather than agreeing with itself. No I/O here.

use flate2::{Decompress, FlushDecompress, Status};

/// The `Sec-WebSocket-Key` of every upgrade (RFC 6455 §1.3's example key): the bench
/// does not need a fresh nonce, and its `Sec-WebSocket-Accept` is known.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// RFC 6455 §1.3: the accept value of [`KEY`].
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The tail a sender removes from each compressed message (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The masking key of every client frame (RFC 6455 §5.7's example key).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Opcodes (RFC 6455 §5.2).
pub(super) mod opcode {
    /// A text frame.
    pub(crate) const TEXT: u8 = 0x1;
    /// A close frame.
    pub(crate) const CLOSE: u8 = 0x8;
    /// A ping.
    pub(crate) const PING: u8 = 0x9;
    /// A pong.
    pub(crate) const PONG: u8 = 0xa;
}

/// What the server did not do by the RFCs; the bench fails the run with it.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The upgrade was not answered with 101 (the status line and what followed).
    #[error("upgrade refused: {0}")]
    Refused(String),
    /// A 101 whose `Sec-WebSocket-Accept` is missing or wrong.
    #[error("the 101 has a wrong or no Sec-WebSocket-Accept")]
    BadAccept,
    /// A server frame with the mask bit set (RFC 6455 §5.1 forbids it).
    #[error("a server frame is masked")]
    Masked,
    /// A server frame with RSV2 or RSV3, or RSV1 without permessage-deflate.
    #[error("a server frame has reserved bits {0:#04x} set that were not negotiated")]
    Reserved(u8),
    /// A compressed message that does not inflate.
    #[error("a compressed message does not inflate: {0}")]
    Corrupt(String),
}

/// The `GET /ws` upgrade request, offering permessage-deflate when `deflate` is set
/// (`client_max_window_bits`, as browsers offer it).
pub(super) fn upgrade_request(host: &str, deflate: bool) -> String {
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
}

/// The length of the response head at the start of `buf` (through the blank line), once
/// it is all there.
pub(super) fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Checks an upgrade's response head; whether it agreed to permessage-deflate.
pub(super) fn check_upgrade(head: &[u8]) -> Result<bool, WireError> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        let shown: String = text.chars().take(200).collect();
        return Err(WireError::Refused(shown));
    }
    let (mut accepted, mut deflate) = (false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepted = value == ACCEPT;
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            deflate |= value
                .split(',')
                .any(|ext| ext.split(';').next().map(str::trim) == Some("permessage-deflate"));
        }
    }
    if accepted {
        Ok(deflate)
    } else {
        Err(WireError::BadAccept)
    }
}

/// A server frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Head {
    /// FIN: the last frame of its message.
    pub(super) fin: bool,
    /// RSV1: the message is compressed (permessage-deflate).
    pub(super) rsv1: bool,
    /// The opcode.
    pub(super) opcode: u8,
    /// Bytes of the header (2, 4 or 10: a server frame has no mask).
    pub(super) len: usize,
    /// Bytes of the payload after it.
    pub(super) payload: usize,
}

impl Head {
    /// Header and payload: the frame's bytes on the wire.
    pub(super) fn wire_len(&self) -> usize {
        self.len + self.payload
    }
}

/// The header of the server frame at the start of `buf`, once it is all there (the
/// payload may not be yet). `deflate`: RSV1 was negotiated.
pub(super) fn parse_head(buf: &[u8], deflate: bool) -> Result<Option<Head>, WireError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(WireError::Masked);
    }
    let reserved = b0 & if deflate { 0x30 } else { 0x70 };
    if reserved != 0 {
        return Err(WireError::Reserved(reserved));
    }
    let (len, payload) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(n) => (4, u16::from_be_bytes([n[0], n[1]]) as usize),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(n) => (
                10,
                u64::from_be_bytes(n.try_into().expect("8 bytes")) as usize,
            ),
            None => return Ok(None),
        },
        n => (2, usize::from(n)),
    };
    Ok(Some(Head {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        opcode: b0 & 0x0f,
        len,
        payload,
    }))
}

/// A client frame (FIN set, RSV clear), masked as RFC 6455 §5.3 requires.
pub(super) fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// A client close frame with `code` and no reason.
pub(super) fn close_frame(code: u16) -> Vec<u8> {
    masked(opcode::CLOSE, &code.to_be_bytes())
}

/// The code of a close frame's payload (None: it has none).
pub(super) fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Inflates permessage-deflate messages sent with `server_no_context_takeover`: each on
/// its own, the inflater reset after each (RFC 7692 §7.2.2: append `00 00 ff ff`, then
/// inflate raw deflate with a 15-bit window, which reads any smaller one).
pub(super) struct Inflater {
    raw: Decompress,
    out: Vec<u8>,
}

impl Inflater {
    pub(super) fn new() -> Inflater {
        Inflater {
            raw: Decompress::new(false),
            out: Vec::with_capacity(4096),
        }
    }

    /// The message whose compressed payload is `data` (valid until the next call).
    pub(super) fn inflate(&mut self, data: &[u8]) -> Result<&[u8], WireError> {
        self.raw.reset(false);
        self.out.clear();
        'inputs: for input in [data, &TAIL[..]] {
            let mut consumed = 0;
            loop {
                if self.out.capacity() - self.out.len() < 1024 {
                    self.out.reserve(self.out.capacity().max(4096));
                }
                let before = self.raw.total_in();
                let status = self
                    .raw
                    .decompress_vec(&input[consumed..], &mut self.out, FlushDecompress::Sync)
                    .map_err(|e| WireError::Corrupt(e.to_string()))?;
                consumed += (self.raw.total_in() - before) as usize;
                let room_left = self.out.capacity() > self.out.len();
                if status == Status::StreamEnd {
                    // A final block (§7.2.3.4): the message ends there.
                    break 'inputs;
                }
                if consumed == input.len() && room_left {
                    break;
                }
            }
        }
        Ok(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_value_is_rfc_6455_s() {
        let accept = actix_http::ws::hash_key(KEY.as_bytes());
        assert_eq!(std::str::from_utf8(&accept).unwrap(), ACCEPT);
    }

    #[test]
    fn an_upgrade_response_is_checked() {
        let ok =
            format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
        assert_eq!(check_upgrade(ok.as_bytes()), Ok(false));
        let deflate = format!(
            "HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: {ACCEPT}\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
        );
        assert_eq!(check_upgrade(deflate.as_bytes()), Ok(true));
        let bad = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert_eq!(check_upgrade(bad.as_bytes()), Err(WireError::BadAccept));
        let refused = check_upgrade(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(refused, Err(WireError::Refused(s)) if s.contains("503")));
        assert_eq!(head_len(b"HTTP/1.1 101 x\r\n\r\n\x81\x00"), Some(18));
        assert_eq!(head_len(b"HTTP/1.1 101 x\r\n\r"), None);
    }

    #[test]
    fn server_frame_headers_of_rfc_6455_s_examples() {
        // §5.7: an unmasked "Hello".
        let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let head = parse_head(&hello, false).unwrap().unwrap();
        assert_eq!(
            (head.fin, head.rsv1, head.opcode),
            (true, false, opcode::TEXT)
        );
        assert_eq!((head.len, head.payload, head.wire_len()), (2, 5, 7));
        // §5.7: 256 bytes (16-bit length) and 64 KiB (64-bit length) binary messages.
        let head = parse_head(&[0x82, 0x7e, 0x01, 0x00], false)
            .unwrap()
            .unwrap();
        assert_eq!((head.len, head.payload), (4, 256));
        let long = [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        let head = parse_head(&long, false).unwrap().unwrap();
        assert_eq!((head.len, head.payload), (10, 65536));
        // Not all there yet.
        assert_eq!(parse_head(&[0x81], false), Ok(None));
        assert_eq!(parse_head(&long[..9], false), Ok(None));
        // §5.7: a masked "Hello" is a client frame, never a server's.
        let masked_hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d];
        assert_eq!(parse_head(&masked_hello, false), Err(WireError::Masked));
        // RSV1 only where deflate was negotiated.
        assert_eq!(
            parse_head(&[0xc1, 0x00], false),
            Err(WireError::Reserved(0x40))
        );
        assert!(parse_head(&[0xc1, 0x00], true).unwrap().unwrap().rsv1);
        assert_eq!(
            parse_head(&[0xa1, 0x00], true),
            Err(WireError::Reserved(0x20))
        );
    }

    #[test]
    fn client_frames_are_masked_as_in_rfc_6455() {
        // §5.7: a masked "Hello" with key 37 fa 21 3d.
        assert_eq!(
            masked(opcode::TEXT, b"Hello"),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        let frame = masked(opcode::TEXT, &[0; 300]);
        assert_eq!(&frame[..4], [0x81, 0xfe, 0x01, 0x2c]);
        assert_eq!(frame.len(), 4 + 4 + 300);
        assert_eq!(close_frame(1000)[..2], [0x88, 0x82]);
        assert_eq!(close_code(&1000u16.to_be_bytes()), Some(1000));
        assert_eq!(close_code(&[]), None);
    }

    #[test]
    fn inflates_rfc_7692_s_examples_each_on_its_own() {
        let mut inflater = Inflater::new();
        // §7.2.3.1: "Hello", a compressed block.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflater.inflate(&hello).unwrap(), b"Hello");
        // Again, with the inflater reset: no context was taken over.
        assert_eq!(inflater.inflate(&hello).unwrap(), b"Hello");
        // §7.2.3.3: "Hello" in a stored block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflater.inflate(&stored).unwrap(), b"Hello");
        // §7.2.3.4: a final block, followed by the start of an empty stored block.
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflater.inflate(&final_block).unwrap(), b"Hello");
        // §7.2.3.6: an empty message.
        assert_eq!(inflater.inflate(&[0x00]).unwrap(), b"");
        assert!(matches!(
            inflater.inflate(&[0xff, 0xff]),
            Err(WireError::Corrupt(_))
        ));
    }

    #[test]
    fn inflates_large_messages() {
        use flate2::{Compress, Compression, FlushCompress};
        let text: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        let mut raw = Compress::new(Compression::fast(), false);
        let mut data = Vec::with_capacity(text.len() + 1024);
        raw.compress_vec(&text, &mut data, FlushCompress::Sync)
            .unwrap();
        assert!(data.ends_with(&TAIL));
        data.truncate(data.len() - 4);
        assert_eq!(Inflater::new().inflate(&data).unwrap(), &text[..]);
    }
}
