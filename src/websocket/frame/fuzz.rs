//! The frame path as the `frame_decoder` fuzz target and its corpus replay test see it
//! (`tests/fuzz_checks/mod.rs`), through `tickwire::websocket::fuzz`. Not an API: plain
//! values (no `Bytes`, no crate types), so that the checks can compare runs and build
//! the expected results themselves.

use bytes::BytesMut;

use super::encode::{close_frame, control_frame, data_frame};
use super::{Assembler, Decoder, Frame, FrameError, Incoming, OpCode};

/// One result of the frame path: each frame the decoder returns, each thing the
/// assembler returns for it, and the first error, which ends the sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A frame the decoder returned: its header bits and payload length.
    Frame {
        /// FIN.
        fin: bool,
        /// RSV1.
        rsv1: bool,
        /// The opcode's four bits.
        opcode: u8,
        /// Payload bytes.
        len: usize,
    },
    /// A whole data message.
    Data {
        /// Text (else binary).
        text: bool,
        /// RSV1 was set on its first frame.
        compressed: bool,
        /// Its bytes.
        payload: Vec<u8>,
    },
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A close, with its code and reason if it had them.
    Close(Option<(u16, String)>),
    /// The decoder's or the assembler's error (its `Debug`, as `TooBig { size: 3, max: 2
    /// }`), and its close code.
    Error {
        /// `format!("{:?}")` of the error.
        error: String,
        /// Its close code.
        close_code: u16,
    },
}

impl From<Incoming> for Event {
    fn from(incoming: Incoming) -> Event {
        match incoming {
            Incoming::Data {
                text,
                compressed,
                payload,
            } => Event::Data {
                text,
                compressed,
                payload: payload.to_vec(),
            },
            Incoming::Ping(payload) => Event::Ping(payload.to_vec()),
            Incoming::Pong(payload) => Event::Pong(payload.to_vec()),
            Incoming::Close(close) => Event::Close(close),
        }
    }
}

impl From<FrameError> for Event {
    fn from(error: FrameError) -> Event {
        Event::Error {
            close_code: error.close_code(),
            error: format!("{error:?}"),
        }
    }
}

impl From<&Frame> for Event {
    fn from(frame: &Frame) -> Event {
        Event::Frame {
            fin: frame.fin,
            rsv1: frame.rsv1,
            opcode: frame.opcode.bits(),
            len: frame.payload.len(),
        }
    }
}

/// Feeds `data` to a `Decoder` and an `Assembler` (`max_message_size` = `max`,
/// permessage-deflate negotiated when `deflate`) as a session would: in reads that end
/// at each of `splits` (offsets into `data`, in any order; those past the end are taken
/// as the end), then the rest. After each read it decodes every whole frame and pushes
/// it to the assembler; it stops at the first error. Returns what they gave, in order.
pub fn frame_decoder_events(
    data: &[u8],
    splits: &[usize],
    max: usize,
    deflate: bool,
) -> Vec<Event> {
    let mut ends: Vec<usize> = splits.iter().map(|&at| at.min(data.len())).collect();
    ends.push(data.len());
    ends.sort_unstable();
    ends.dedup();
    let mut decoder = Decoder::new(max);
    let mut assembler = Assembler::new(max, deflate);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut start = 0;
    for end in ends {
        buf.extend_from_slice(&data[start..end]);
        start = end;
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    events.push(error.into());
                    return events;
                }
            };
            events.push(Event::from(&frame));
            match assembler.push(frame) {
                Ok(Some(incoming)) => events.push(incoming.into()),
                Ok(None) => {}
                Err(error) => {
                    events.push(error.into());
                    return events;
                }
            }
        }
    }
    events
}

/// The server's frame for a data, ping, pong or close event (`data_frame`,
/// `control_frame`, `close_frame`), unmasked; `None` for the other events.
pub fn server_frame(event: &Event) -> Option<Vec<u8>> {
    let frame = match event {
        Event::Data {
            text,
            compressed,
            payload,
        } => data_frame(*text, *compressed, payload),
        Event::Ping(payload) => control_frame(OpCode::Ping, payload),
        Event::Pong(payload) => control_frame(OpCode::Pong, payload),
        Event::Close(close) => match close {
            Some((code, reason)) => close_frame(Some(*code), reason),
            None => close_frame(None, ""),
        },
        Event::Frame { .. } | Event::Error { .. } => return None,
    };
    Some(frame.to_vec())
}
