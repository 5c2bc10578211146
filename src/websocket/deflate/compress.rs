//! The outbound transform: one message in, the payload of one compressed frame out.
//!
//! Raw deflate (no zlib header or checksum) with the negotiated window, each message on
//! its own: the compressor is reset before every message (`server_no_context_takeover`),
//! so the output depends only on the message, the window and the level, and one
//! compression serves every session that agreed on that window. The message ends with a
//! sync flush, whose last 4 bytes (`00 00 ff ff`) are removed (RFC 7692 §7.2.1).
//!
//! The compressor keeps its state between messages and only resets it: about 370 KiB
//! at window 15 (zlib-rs's 64 KiB window buffer, 64 KiB of hash chains, a 128 KiB hash
//! table that each reset clears, and 112 KiB of block buffers), less with a smaller
//! window. [`Compressor::compress`] also keeps the spare capacity of its output buffer,
//! so that small messages share one allocation.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress};

use super::TAIL;

/// The smallest allocation [`Compressor::compress`] makes: the messages it compresses
/// are cut from it one after the other (each a [`Bytes`] holding a part of it), until
/// one does not fit.
const SHARED_BLOCK: usize = 8 * 1024;

/// Compresses messages one at a time, each on its own.
pub(crate) struct Compressor {
    /// Raw deflate with `window_bits`; in its initial state whenever `dirty` is false.
    deflate: Compress,
    /// `deflate` has compressed a message since its last reset.
    dirty: bool,
    /// The window, 9..=15.
    window_bits: u8,
    /// The level, 0..=9.
    level: u32,
    /// [`compress`](Self::compress)'s output buffer: empty between calls, its spare
    /// capacity kept for the next message.
    buf: BytesMut,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("window_bits", &self.window_bits)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor at `level` (0 = stored only … 9 = smallest) with a window of
    /// `window_bits` (9..=15, what [`Agreed`](super::Agreed) says).
    ///
    /// # Panics
    ///
    /// On a level over 9 or a window outside 9..=15: the config and the negotiation never
    /// produce those.
    pub(crate) fn new(level: u32, window_bits: u8) -> Compressor {
        assert!(level <= 9, "compression level {level} is not in 0..=9");
        assert!(
            (9..=15).contains(&window_bits),
            "window bits {window_bits} is not in 9..=15"
        );
        Compressor {
            deflate: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
            dirty: false,
            window_bits,
            level,
            buf: BytesMut::new(),
        }
    }

    /// One message, compressed on its own, sync-flushed with the 4-byte `00 00 ff ff`
    /// tail removed (RFC 7692 §7.2.1): the payload of a frame with RSV1 set. An empty
    /// message gives `[0x00]` (RFC 7692 §7.2.3.6).
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Bytes {
        let mut buf = std::mem::take(&mut self.buf);
        let room = bound(payload.len());
        if buf.capacity() < room {
            buf.reserve(room.max(SHARED_BLOCK));
        }
        self.compress_into(payload, &mut buf);
        let compressed = buf.split().freeze();
        self.buf = buf;
        compressed
    }

    /// [`compress`](Self::compress), appending to `out` instead: whatever `out` already
    /// holds stays in front.
    ///
    /// To put the frame header in front without copying the payload: reserve the
    /// longest header first (`out.put_bytes(0, 10)`: a server frame has no mask), compress
    /// into `out`, then write the header, whose length now is known, in the last bytes of
    /// that room and `advance` past the unused front.
    pub(crate) fn compress_into(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.dirty {
            self.deflate.reset();
        }
        self.dirty = true;
        let start = out.len();
        let mut written = start;
        let mut consumed = 0;
        loop {
            let room = bound(payload.len() - consumed);
            out.resize(written + room, 0);
            let (in_before, out_before) = (self.deflate.total_in(), self.deflate.total_out());
            let result = self.deflate.compress(
                &payload[consumed..],
                &mut out[written..],
                FlushCompress::Sync,
            );
            consumed += (self.deflate.total_in() - in_before) as usize;
            written += (self.deflate.total_out() - out_before) as usize;
            // zlib fails only on a stream in a bad state or on no room at all, and this
            // one always has room; were it to fail anyway, the next message resets it.
            if result.is_err() {
                debug_assert!(false, "deflate failed: {result:?}");
                break;
            }
            // Done when all input is in and the flush did not fill the room (zlib: "if
            // deflate returns with avail_out == 0, call it again with more space").
            if consumed == payload.len() && written < out.len() {
                break;
            }
        }
        out.truncate(written);
        debug_assert!(
            out[start..].ends_with(&TAIL),
            "a sync flush ends with 00 00 ff ff"
        );
        if out[start..].ends_with(&TAIL) {
            out.truncate(written - TAIL.len());
        }
    }
}

/// Output room for `len` more input bytes: their worst case (stored blocks: 5 bytes per
/// 16 KiB at most) plus the sync flush and the block being closed, so that one call
/// usually finishes.
fn bound(len: usize) -> usize {
    len + (len >> 10) + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_is_rfc_7692_s_example() {
        // RFC 7692 §7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00.
        let mut compressor = Compressor::new(6, 15);
        assert_eq!(
            &compressor.compress(b"Hello")[..],
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        // Again: the context was not taken over (§7.2.3.2 would give f2 00 11 00 00).
        assert_eq!(
            &compressor.compress(b"Hello")[..],
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        // §7.2.3.6: an empty message.
        assert_eq!(&compressor.compress(b"")[..], [0x00]);
    }

    #[test]
    fn compress_into_appends_after_what_is_there() {
        let mut compressor = Compressor::new(1, 15);
        let mut out = BytesMut::from(&b"header...."[..]);
        compressor.compress_into(b"Hello", &mut out);
        assert_eq!(&out[..10], b"header....");
        assert_eq!(&out[10..], &compressor.compress(b"Hello")[..]);
    }

    #[test]
    fn the_output_buffer_is_reused() {
        let mut compressor = Compressor::new(1, 15);
        let first = compressor.compress(&[b'a'; 200]);
        let second = compressor.compress(&[b'a'; 200]);
        assert_eq!(first, second);
        // Both were cut from the same allocation.
        let gap = second.as_ptr() as usize - first.as_ptr() as usize;
        assert_eq!(gap, first.len());
    }

    #[test]
    #[should_panic(expected = "window bits 8 is not in 9..=15")]
    fn window_8_is_refused() {
        Compressor::new(1, 8);
    }
}
