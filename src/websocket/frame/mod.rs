//! RFC 6455 frames, server side: tickwire's own frame path (DESIGN.md, "Transport").
//!
//! A pure codec, with no actix and no I/O in it: the session feeds the bytes it reads
//! into a [`Decoder`], hands each [`Frame`] to an [`Assembler`], which gives back whole
//! messages ([`Incoming`]), and writes the frames [`encode`] builds. Each piece is its own file:
//!
//! | file | concern |
//! |------|---------|
//! | `decode.rs` | [`Decoder`]: one frame off the front of the read buffer, header checks, unmasking |
//! | `mask.rs` | [`apply_mask`]: the XOR of a client's masking key, a word at a time |
//! | `message.rs` | [`Assembler`]: fragments into messages, UTF-8 of text, close payloads |
//! | `encode.rs` | the server's frames (never masked): data, control and close frames |
//! | `fuzz.rs` | the frame path as the `frame_decoder` fuzz target sees it (not an API) |
//!
//! ## What the server accepts and refuses
//!
//! A refusal is a [`FrameError`]: the session closes the connection with its
//! [`close_code`](FrameError::close_code) (1002 protocol error, 1007 invalid payload data,
//! 1009 message too big) and reads nothing more. The decoder and the assembler each stop
//! at their first error: called again after it, they return the same error.
//!
//! | what arrives | refusal | close code |
//! |--------------|---------|-----------:|
//! | a frame with RSV2 or RSV3 set | [`ReservedBits`](FrameError::ReservedBits) | 1002 |
//! | opcode 0x3–0x7 or 0xB–0xF | [`ReservedOpcode`](FrameError::ReservedOpcode) | 1002 |
//! | a control frame (close, ping, pong) with FIN clear | [`FragmentedControl`](FrameError::FragmentedControl) | 1002 |
//! | a control frame with RSV1 set | [`CompressedControl`](FrameError::CompressedControl) | 1002 |
//! | a continuation frame with RSV1 set | [`CompressedContinuation`](FrameError::CompressedContinuation) | 1002 |
//! | a frame without a masking key (every client frame must be masked) | [`Unmasked`](FrameError::Unmasked) | 1002 |
//! | a control frame longer than 125 bytes | [`ControlTooLong`](FrameError::ControlTooLong) | 1002 |
//! | a 64-bit length with its top bit set | [`BadLength`](FrameError::BadLength) | 1002 |
//! | a frame longer than `max_message_size` | [`TooBig`](FrameError::TooBig) | 1009 |
//! | a continuation frame with no message started | [`UnexpectedContinuation`](FrameError::UnexpectedContinuation) | 1002 |
//! | a text or binary frame while a fragmented message is in progress | [`NewMessageInFragmented`](FrameError::NewMessageInFragmented) | 1002 |
//! | RSV1 on a data frame when permessage-deflate was not negotiated | [`CompressedNotNegotiated`](FrameError::CompressedNotNegotiated) | 1002 |
//! | fragments adding up to more than `max_message_size` | [`TooBig`](FrameError::TooBig) | 1009 |
//! | an uncompressed text message that is not UTF-8 | [`InvalidUtf8`](FrameError::InvalidUtf8) | 1007 |
//! | a close frame with a 1-byte payload | [`BadCloseLength`](FrameError::BadCloseLength) | 1002 |
//! | a close code 0–999, 1004–1006, 1015–2999 or ≥ 5000 | [`BadCloseCode`](FrameError::BadCloseCode) | 1002 |
//! | a close reason that is not UTF-8 | [`InvalidCloseReason`](FrameError::InvalidCloseReason) | 1007 |
//!
//! The first eight rows are the decoder's, checked in that order, each as soon as the
//! bytes it needs have arrived: the first byte of the header for the first five, the
//! second byte for the next two, the extended length for the last two. The error found
//! is therefore the same however the bytes are split into reads (the fuzz target
//! checks it). `TooBig` comes as soon as the length is read, before any of the payload
//! is buffered. The other rows are the assembler's.
//!
//! Accepted as they are: a length written in more bytes than needed (RFC 6455 asks the
//! sender for the shortest form; nothing depends on it), close codes 1000–1003,
//! 1007–1014 and 3000–4999, any ping, pong or binary payload.
//!
//! ## Fragmentation and control frames
//!
//! A text or binary frame with FIN clear starts a message; continuation frames extend it,
//! and the one with FIN set ends it. Control frames may come between the fragments: the
//! assembler returns them at once and keeps the message in progress. A text message is
//! checked to be UTF-8 as its fragments arrive (a character may be split across two
//! fragments; an invalid sequence is refused with the fragment that holds it, an
//! unfinished character at the end of the message with the last fragment).
//!
//! ## Masking
//!
//! Every client frame is masked (RFC 6455 §5.3); the decoder unmasks the payload in place
//! in the read buffer, a 64-bit word at a time, and splits it off without copying. The
//! server's frames are never masked.
//!
//! ## RSV1: permessage-deflate
//!
//! RSV1 marks a compressed message (RFC 7692). It is allowed only when permessage-deflate
//! was negotiated (`Assembler::new(_, true)`), and only on the first frame of a data
//! message: never on a continuation or a control frame. A compressed message is returned
//! as it arrived, still deflated ([`Incoming::Data`] with `compressed`): the session
//! inflates it, then checks a text message with [`check_text`](message::check_text).
//!
//! ## Size limits
//!
//! `max_message_size` bounds one frame (refused from its header) and the sum of a
//! message's fragments (refused with the fragment that goes over): a message of exactly
//! `max_message_size` bytes is accepted. The assembler holds at most that many bytes of a
//! message in progress, and never allocates more. For a compressed message the limit
//! applies to its bytes on the wire here, and to the inflated size in the session. (A
//! deflated message of incompressible data is longer than the data itself, by about 5
//! bytes per 16 KiB, so such a message within those few bytes of the limit is refused.)
//!
//! A message that arrives as one frame is returned without a copy: its payload is the
//! read buffer's own bytes.

pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod fuzz;
mod mask;
pub(crate) mod message;

pub(crate) use decode::Decoder;
use mask::apply_mask;
pub(crate) use message::{check_text, Assembler, Incoming};

/// Close code 1002: the peer broke the protocol.
pub(crate) const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code 1007: a text message (or close reason) that is not UTF-8.
pub(crate) const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code 1009: a message over `max_message_size`.
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;

/// A frame's opcode (RFC 6455 §5.2); the reserved ones are refused by the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpCode {
    /// 0x0: the next fragment of a data message.
    Continuation,
    /// 0x1: the first (or only) frame of a text message.
    Text,
    /// 0x2: the first (or only) frame of a binary message.
    Binary,
    /// 0x8: the close handshake.
    Close,
    /// 0x9: a ping, to be answered with a pong of the same payload.
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl OpCode {
    /// The opcode of the low four bits of a frame's first byte; `None` for a reserved one.
    pub(crate) fn from_bits(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// The four bits of this opcode.
    pub(crate) fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub(crate) fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// One frame, as the decoder read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The last frame of its message (always set on a control frame).
    pub(crate) fin: bool,
    /// RSV1: the message is compressed (permessage-deflate; first data frame only).
    pub(crate) rsv1: bool,
    /// What the frame is.
    pub(crate) opcode: OpCode,
    /// The payload, unmasked.
    pub(crate) payload: bytes::Bytes,
}

/// Why the server refuses what a client sent. The table in the module docs lists when
/// each comes; [`close_code`](FrameError::close_code) is the code to close with.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A frame without a masking key: every client frame must be masked.
    #[error("unmasked client frame: client frames must be masked")]
    Unmasked,
    /// RSV2 or RSV3 set: no extension that uses them is negotiated.
    #[error("reserved bits RSV2 or RSV3 set")]
    ReservedBits,
    /// One of the reserved opcodes 0x3–0x7 and 0xB–0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame whose payload is over 125 bytes.
    #[error("control frame longer than 125 bytes")]
    ControlTooLong,
    /// A control frame with FIN clear: control frames are never fragmented.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with RSV1 set: control frames are never compressed.
    #[error("control frame with RSV1 (compressed) set")]
    CompressedControl,
    /// A 64-bit payload length with its most significant bit set.
    #[error("frame length with the most significant bit set")]
    BadLength,
    /// A frame, or the fragments of a message so far, over `max_message_size`.
    #[error("message too big: {size} bytes, the limit is {max}")]
    TooBig {
        /// The frame's length, or the fragments' total with this one.
        size: u64,
        /// `max_message_size`.
        max: usize,
    },
    /// A continuation frame with no fragmented message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message awaits its continuation.
    #[error("new data message inside a fragmented message")]
    NewMessageInFragmented,
    /// RSV1 on a data frame, but permessage-deflate was not negotiated.
    #[error("compressed (RSV1) message but permessage-deflate was not negotiated")]
    CompressedNotNegotiated,
    /// RSV1 on a continuation frame: only a message's first frame carries it.
    #[error("continuation frame with RSV1 (compressed) set")]
    CompressedContinuation,
    /// A close frame with a 1-byte payload (a code takes two).
    #[error("close frame with a 1-byte payload")]
    BadCloseLength,
    /// A close code that may not be sent (RFC 6455 §7.4).
    #[error("close code {0} may not be sent")]
    BadCloseCode(u16),
    /// A text message that is not UTF-8.
    #[error("text message is not UTF-8")]
    InvalidUtf8,
    /// A close reason that is not UTF-8.
    #[error("close reason is not UTF-8")]
    InvalidCloseReason,
}

impl FrameError {
    /// The close code to close the connection with: 1009 for [`TooBig`](Self::TooBig),
    /// 1007 for [`InvalidUtf8`](Self::InvalidUtf8) and
    /// [`InvalidCloseReason`](Self::InvalidCloseReason), 1002 for all else.
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            FrameError::TooBig { .. } => CLOSE_TOO_BIG,
            FrameError::InvalidUtf8 | FrameError::InvalidCloseReason => CLOSE_INVALID_PAYLOAD,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }
}

/// Test helpers shared by the files of this module.
#[cfg(test)]
pub(crate) mod test_util {
    /// `server` (a frame the server encoded: unmasked) as a client would send it: the
    /// mask bit set, `key` after the length, the payload XORed with it byte by byte.
    pub(crate) fn masked(server: &[u8], key: [u8; 4]) -> Vec<u8> {
        let ext = match server[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header = 2 + ext;
        let mut out = server[..header].to_vec();
        out[1] |= 0x80;
        out.extend_from_slice(&key);
        out.extend(
            server[header..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4]),
        );
        out
    }

    /// A masked client frame: `first` is the first header byte (FIN, RSVs, opcode).
    pub(crate) fn client_frame(first: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut header = vec![first];
        match payload.len() {
            len @ 0..=125 => header.push(len as u8),
            len @ 126..=0xFFFF => {
                header.push(126);
                header.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                header.push(127);
                header.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        header.extend_from_slice(payload);
        masked(&header, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_round_trip_through_their_bits_and_the_rest_are_reserved() {
        for bits in 0..16u8 {
            match OpCode::from_bits(bits) {
                Some(op) => {
                    assert_eq!(op.bits(), bits);
                    assert_eq!(op.is_control(), bits >= 8, "{op:?}");
                }
                None => assert!(matches!(bits, 3..=7 | 0xB..=0xF), "{bits}"),
            }
        }
    }

    #[test]
    fn close_codes_of_the_errors() {
        let too_big = FrameError::TooBig { size: 10, max: 9 };
        assert_eq!(too_big.close_code(), 1009);
        assert_eq!(FrameError::InvalidUtf8.close_code(), 1007);
        assert_eq!(FrameError::InvalidCloseReason.close_code(), 1007);
        for error in [
            FrameError::Unmasked,
            FrameError::ReservedBits,
            FrameError::ReservedOpcode(3),
            FrameError::ControlTooLong,
            FrameError::FragmentedControl,
            FrameError::CompressedControl,
            FrameError::BadLength,
            FrameError::UnexpectedContinuation,
            FrameError::NewMessageInFragmented,
            FrameError::CompressedNotNegotiated,
            FrameError::CompressedContinuation,
            FrameError::BadCloseLength,
            FrameError::BadCloseCode(1005),
        ] {
            assert_eq!(error.close_code(), 1002, "{error:?}");
        }
        assert_eq!(
            too_big.to_string(),
            "message too big: 10 bytes, the limit is 9"
        );
    }
}
