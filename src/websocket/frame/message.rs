//! The assembler: frames into messages (RFC 6455 §5.4 fragmentation, §5.5 control
//! frames, §7.4 close codes), and the UTF-8 check of text.

use bytes::{Bytes, BytesMut};

use super::{Frame, FrameError, OpCode};

/// What a client sent, once whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A whole data message, as received: still deflated when `compressed` (the session
    /// inflates it, then checks the UTF-8 of a compressed text itself, with
    /// [`check_text`]). An uncompressed text message has been checked to be UTF-8.
    Data {
        /// A text message (else binary).
        text: bool,
        /// RSV1 was set on its first frame (permessage-deflate).
        compressed: bool,
        /// The message's bytes: those of its frame, not copied, when it came in one.
        payload: Bytes,
    },
    /// A ping: to be answered with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The client's close: its code and reason, if it sent them (validated per RFC 6455
    /// §7.4).
    Close(Option<(u16, String)>),
}

/// Reassembles fragmented messages, with bounded memory; see the module docs of
/// [`super`]. It expects the frames of a [`Decoder`](super::Decoder), which has checked
/// their headers (a control frame is whole and at most 125 bytes).
#[derive(Debug)]
pub(crate) struct Assembler {
    /// The longest message accepted, in bytes (on the wire).
    max_message_size: usize,
    /// permessage-deflate was negotiated: RSV1 on a first data frame means "compressed".
    deflate: bool,
    /// The fragmented message in progress, if any.
    partial: Option<Partial>,
    /// The error returned, once there was one: it is returned again by every later call.
    failed: Option<FrameError>,
}

/// A message whose last fragment has not arrived.
#[derive(Debug)]
struct Partial {
    text: bool,
    compressed: bool,
    /// The fragments so far: at most `max_message_size` bytes.
    data: Fragments,
    /// For an uncompressed text: the length of the prefix of `data` known to be UTF-8
    /// (what follows it is at most an unfinished character, 1–3 bytes).
    checked: usize,
}

/// The bytes of a message in progress: its first non-empty fragment as it came, until a
/// second one needs a buffer.
#[derive(Debug)]
enum Fragments {
    One(Bytes),
    Many(BytesMut),
}

impl Fragments {
    fn as_slice(&self) -> &[u8] {
        match self {
            Fragments::One(bytes) => bytes,
            Fragments::Many(buffer) => buffer,
        }
    }

    /// Appends `more`, growing the buffer by doubling but never past `limit` (which the
    /// caller checked the total against), so that it never holds more than the limit.
    fn push(&mut self, more: Bytes, limit: usize) {
        if more.is_empty() {
            return;
        }
        let len = self.as_slice().len();
        if len == 0 {
            *self = Fragments::One(more);
            return;
        }
        let needed = len + more.len();
        let capacity = match self {
            Fragments::One(_) => 0,
            Fragments::Many(buffer) => buffer.capacity(),
        };
        if capacity < needed {
            let mut grown =
                BytesMut::with_capacity(needed.max(capacity.saturating_mul(2)).min(limit));
            grown.extend_from_slice(self.as_slice());
            *self = Fragments::Many(grown);
        }
        if let Fragments::Many(buffer) = self {
            buffer.extend_from_slice(&more);
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Fragments::One(bytes) => bytes,
            Fragments::Many(buffer) => buffer.freeze(),
        }
    }
}

impl Assembler {
    /// An assembler that refuses messages over `max_message_size` bytes; `deflate`:
    /// permessage-deflate was negotiated.
    pub(crate) fn new(max_message_size: usize, deflate: bool) -> Assembler {
        Assembler {
            max_message_size,
            deflate,
            partial: None,
            failed: None,
        }
    }

    /// Takes the next frame: `Ok(Some(_))` when it completes a message or is a control
    /// frame, `Ok(None)` when it is a fragment of a message still in progress. After an
    /// error the connection is to be closed: the assembler returns that error again on
    /// every call (and has dropped the message in progress).
    pub(crate) fn push(&mut self, frame: Frame) -> Result<Option<Incoming>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let outcome = self.assemble(frame);
        if let Err(error) = &outcome {
            self.failed = Some(error.clone());
            self.partial = None;
        }
        outcome
    }

    fn assemble(&mut self, frame: Frame) -> Result<Option<Incoming>, FrameError> {
        let max = self.max_message_size;
        match frame.opcode {
            OpCode::Ping => Ok(Some(Incoming::Ping(frame.payload))),
            OpCode::Pong => Ok(Some(Incoming::Pong(frame.payload))),
            OpCode::Close => close_payload(&frame.payload).map(|c| Some(Incoming::Close(c))),
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(FrameError::NewMessageInFragmented);
                }
                if frame.rsv1 && !self.deflate {
                    return Err(FrameError::CompressedNotNegotiated);
                }
                if frame.payload.len() > max {
                    return Err(too_big(0, frame.payload.len(), max));
                }
                let text = frame.opcode == OpCode::Text;
                let compressed = frame.rsv1;
                let checks_utf8 = text && !compressed;
                if frame.fin {
                    if checks_utf8 {
                        check_text(&frame.payload)?;
                    }
                    return Ok(Some(Incoming::Data {
                        text,
                        compressed,
                        payload: frame.payload,
                    }));
                }
                let checked = if checks_utf8 {
                    utf8_prefix(&frame.payload, 0)?
                } else {
                    0
                };
                self.partial = Some(Partial {
                    text,
                    compressed,
                    data: Fragments::One(frame.payload),
                    checked,
                });
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(mut partial) = self.partial.take() else {
                    return Err(FrameError::UnexpectedContinuation);
                };
                if frame.rsv1 {
                    return Err(FrameError::CompressedContinuation);
                }
                let len = partial.data.as_slice().len();
                if frame.payload.len() > max - len {
                    return Err(too_big(len, frame.payload.len(), max));
                }
                partial.data.push(frame.payload, max);
                if partial.text && !partial.compressed {
                    let data = partial.data.as_slice();
                    partial.checked = utf8_prefix(data, partial.checked)?;
                    if frame.fin && partial.checked != data.len() {
                        // The message ends inside a character.
                        return Err(FrameError::InvalidUtf8);
                    }
                }
                if !frame.fin {
                    self.partial = Some(partial);
                    return Ok(None);
                }
                Ok(Some(Incoming::Data {
                    text: partial.text,
                    compressed: partial.compressed,
                    payload: partial.data.into_bytes(),
                }))
            }
        }
    }
}

fn too_big(held: usize, more: usize, max: usize) -> FrameError {
    FrameError::TooBig {
        size: held as u64 + more as u64,
        max,
    }
}

/// The text of a message: [`FrameError::InvalidUtf8`] (close code 1007) if it is not
/// UTF-8. For the session's use on a compressed text once inflated.
pub(crate) fn check_text(payload: &[u8]) -> Result<&str, FrameError> {
    std::str::from_utf8(payload).map_err(|_| FrameError::InvalidUtf8)
}

/// Checks `data[from..]` (`from` is a character boundary) and returns the length of its
/// longest prefix that is UTF-8: all of `data`, or up to an unfinished character at the
/// end (which the next fragment may finish). An invalid sequence is an error.
fn utf8_prefix(data: &[u8], from: usize) -> Result<usize, FrameError> {
    match std::str::from_utf8(&data[from..]) {
        Ok(_) => Ok(data.len()),
        Err(error) if error.error_len().is_none() => Ok(from + error.valid_up_to()),
        Err(_) => Err(FrameError::InvalidUtf8),
    }
}

/// Whether a client may send `code` in a close frame (RFC 6455 §7.4: 1004–1006 and 1015
/// are reserved, 1016–2999 are for extensions and later RFCs, 0–999 and ≥ 5000 unused).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close frame's payload: nothing, or a code and a UTF-8 reason.
fn close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::BadCloseLength),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !close_code_allowed(code) {
                return Err(FrameError::BadCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidCloseReason)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests;
