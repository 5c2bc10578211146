//! The inbound transform: the payload of a compressed message in, the message out, never
//! more than `max` bytes of it.
//!
//! Each thread has one raw inflater with a 15-bit window (which reads data made with any
//! smaller window), reset after every message, also after an error or a panic: the
//! client agreed to `client_no_context_takeover`, so no message refers to an earlier one.
//!
//! ## How a message's data is read
//!
//! RFC 7692 §7.2.2: append `00 00 ff ff` to the payload and inflate. The tail is fed after
//! the payload, without copying the payload.
//!
//! - **Usual case**: the data ends with a sync flush whose tail was removed; the tail
//!   closes the empty stored block the payload's last byte opened, and the message is
//!   everything inflated.
//! - **A final block** (BFINAL, RFC 7692 §7.2.3.4): the message is what was inflated up
//!   to it. What follows it in the payload must decode, with the tail, to empty blocks
//!   only: the RFC's own example follows its final block with one `00`, the start of an
//!   empty stored block. A final block that ends at the payload's end or inside the tail
//!   is fine; the rest of the tail is ignored. Anything after a final block that holds
//!   data or is not deflate → [`InflateError::Corrupt`].
//! - **Data that stops inside a block** (a payload cut short, or that never closes its
//!   last block): not detected. The message is what inflates from the payload and the
//!   tail, as in zlib-based peers (Python `websockets`, Node `ws`, Chromium), which feed
//!   the same bytes to zlib and take what comes out. The session still checks it as
//!   text (UTF-8) and JSON.
//! - **Invalid deflate** (a reserved block type, a bad code, a distance before the start
//!   of the message, which a client using context takeover would send) →
//!   [`InflateError::Corrupt`] with zlib's message.
//!
//! ## Limit
//!
//! The output is capped at `max + 1` bytes: once the inflater writes the byte after
//! `max`, inflating stops and the answer is [`InflateError::TooBig`]. The output vector
//! starts at about four times the payload's size and doubles as it fills, never past
//! `max + 1`: a 100-byte message with a 1 MiB limit allocates a few hundred bytes, a bomb
//! at most `max + 1`.

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};

use super::TAIL;

/// Why a compressed message was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates to more than `max` bytes (the session closes with 1009).
    #[error("compressed message inflates to more than {max} bytes")]
    TooBig {
        /// The limit it went past.
        max: usize,
    },
    /// It is not the deflate data of a message (the session closes with 1007).
    #[error("corrupt compressed message: {0}")]
    Corrupt(String),
}

/// Inflates one message (the payload of a compressed message, tail not included), with
/// a per-thread inflater (15-bit window, raw) reset after each message (also after an
/// error), producing at most `max` bytes: past that it stops inflating at once and
/// answers [`TooBig`](InflateError::TooBig) (no decompression bomb: memory bounded by
/// `max` plus the inflater's state, whatever the ratio). See the module docs for a final
/// block, what may follow it, and data cut inside a block.
pub(crate) fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    match inflate_into(compressed, max, &mut out) {
        Ok(()) => Ok(out),
        Err(Failure::TooBig) => Err(InflateError::TooBig { max }),
        Err(failure) => Err(InflateError::Corrupt(failure.to_string())),
    }
}

/// A session's own inflater, for a client that carries its compression context from
/// message to message (it did not offer `client_no_context_takeover`): made at the
/// session's first compressed message, so an idle session holds none, and kept after.
/// Each message is bounded by `max` as with [`inflate`].
#[derive(Default)]
pub(crate) struct Inflater(Option<Box<Decompress>>);

impl Inflater {
    /// Inflates the next message of this client, its window carried over from the
    /// messages before.
    pub(crate) fn inflate(
        &mut self,
        compressed: &[u8],
        max: usize,
    ) -> Result<Vec<u8>, InflateError> {
        let inflater = self
            .0
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, 15)));
        let mut out = Vec::new();
        let data = Data {
            inflater,
            parts: [compressed, &TAIL],
            part: 0,
            pos: 0,
        };
        match data.inflate(max, &mut out) {
            Ok(()) => Ok(out),
            Err(Failure::TooBig) => Err(InflateError::TooBig { max }),
            Err(failure) => Err(InflateError::Corrupt(failure.to_string())),
        }
    }

    /// Whether the inflate state was made (a compressed message arrived).
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.0.is_some()
    }
}

/// Why [`inflate_into`] stopped, in more detail than [`InflateError`] (for the tests and
/// the fuzz target).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// The output reached `max + 1` bytes.
    #[error("too big")]
    TooBig,
    /// A final block is followed by data, or by something that is not deflate.
    #[error("data after the final deflate block")]
    AfterFinalBlock,
    /// zlib refused the data (its message).
    #[error("invalid deflate data: {0}")]
    Invalid(String),
}

thread_local! {
    /// This thread's inflater: raw, 15-bit window, in its initial state between calls.
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new_with_window_bits(false, 15));
}

/// Resets the inflater when dropped: after each message, whatever way it ends.
struct ResetOnDrop<'a>(&'a mut Decompress);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.reset(false);
    }
}

/// [`inflate`] into `out` (empty on entry, left holding what was inflated when it
/// fails: at most `max + 1` bytes, in at most `max + 1` bytes of capacity).
pub(super) fn inflate_into(
    compressed: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), Failure> {
    INFLATER.with(|cell| {
        // Never re-entered: nothing in here calls back out.
        let mut inflater = cell.borrow_mut();
        let guard = ResetOnDrop(&mut inflater);
        Data {
            inflater: &mut *guard.0,
            parts: [compressed, &TAIL],
            part: 0,
            pos: 0,
        }
        .inflate(max, out)
    })
}

/// Input to the inflater: the payload, then the tail.
struct Data<'a, 'd> {
    inflater: &'d mut Decompress,
    parts: [&'a [u8]; 2],
    /// The part being fed (0: the payload, 1: the tail).
    part: usize,
    /// How much of that part was fed.
    pos: usize,
}

/// What one call to the inflater did.
struct Step {
    status: Status,
    consumed: usize,
    produced: usize,
}

impl Data<'_, '_> {
    /// Inflates everything into `out`, up to `max` bytes.
    fn inflate(mut self, max: usize, out: &mut Vec<u8>) -> Result<(), Failure> {
        let limit = max.saturating_add(1);
        let hint = self.parts[0].len();
        loop {
            if out.len() == out.capacity() {
                grow(out, limit, hint);
            }
            let input = &self.parts[self.part][self.pos..];
            let (in_before, out_before) = (self.inflater.total_in(), self.inflater.total_out());
            let status = self
                .inflater
                .decompress_vec(input, out, FlushDecompress::None)
                .map_err(|e| Failure::Invalid(e.message().unwrap_or("unknown error").to_owned()))?;
            let step = Step {
                status,
                consumed: (self.inflater.total_in() - in_before) as usize,
                produced: (self.inflater.total_out() - out_before) as usize,
            };
            self.pos += step.consumed;
            if out.len() > max {
                return Err(Failure::TooBig);
            }
            let room_left = out.len() < out.capacity();
            if let Some(done) = self.after(step, room_left) {
                return match done {
                    End::Input => Ok(()),
                    End::FinalBlock => self.after_final_block(),
                    End::Stuck => Err(Failure::Invalid("no progress".to_owned())),
                };
            }
        }
    }

    /// After a final block that ends inside the payload: the rest of the payload and
    /// the tail must be empty blocks only (each run of them may end in a final block
    /// again).
    fn after_final_block(mut self) -> Result<(), Failure> {
        loop {
            self.inflater.reset(false);
            let mut scratch = [0u8; 1];
            loop {
                let input = &self.parts[self.part][self.pos..];
                let (in_before, out_before) = (self.inflater.total_in(), self.inflater.total_out());
                let status = self
                    .inflater
                    .decompress(input, &mut scratch, FlushDecompress::None)
                    .map_err(|_| Failure::AfterFinalBlock)?;
                let step = Step {
                    status,
                    consumed: (self.inflater.total_in() - in_before) as usize,
                    produced: (self.inflater.total_out() - out_before) as usize,
                };
                if step.produced > 0 {
                    return Err(Failure::AfterFinalBlock);
                }
                self.pos += step.consumed;
                match self.after(step, true) {
                    None => {}
                    Some(End::Input) => return Ok(()),
                    Some(End::FinalBlock) => break,
                    Some(End::Stuck) => return Err(Failure::AfterFinalBlock),
                }
            }
        }
    }

    /// Where a step leaves the reading: `None` to go on (moving to the tail when the
    /// payload is all in and the inflater has room left, so it waits for input).
    fn after(&mut self, step: Step, room_left: bool) -> Option<End> {
        let payload_len = self.parts[0].len();
        if step.status == Status::StreamEnd {
            let inside_payload = self.part == 0 && self.pos < payload_len;
            return Some(if inside_payload {
                End::FinalBlock
            } else {
                End::Input
            });
        }
        let part_len = self.parts[self.part].len();
        if self.pos == part_len && room_left {
            if self.part == 1 {
                return Some(End::Input);
            }
            self.part = 1;
            self.pos = 0;
            return None;
        }
        if step.consumed == 0 && step.produced == 0 && room_left {
            // Input and room, and nothing done: zlib does not do that; do not spin.
            return Some(End::Stuck);
        }
        None
    }
}

/// How the reading ended.
enum End {
    /// All the input is in (or the final block ended at or after the payload's end).
    Input,
    /// A final block ended inside the payload.
    FinalBlock,
    /// The inflater stopped making progress.
    Stuck,
}

/// Grows a full `out` towards `limit` bytes: first to about four times the payload,
/// then doubling.
fn grow(out: &mut Vec<u8>, limit: usize, payload_len: usize) {
    const MIN: usize = 256;
    const FIRST_MAX: usize = 64 * 1024;
    let wanted = if out.capacity() == 0 {
        payload_len.saturating_mul(4).clamp(MIN, FIRST_MAX)
    } else {
        out.capacity()
    };
    out.reserve_exact(wanted.min(limit - out.len()));
}

#[cfg(test)]
#[path = "inflate_tests.rs"]
mod tests;
