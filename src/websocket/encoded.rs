//! A broadcast's WebSocket frames, encoded once for all the sessions it goes to.
//!
//! The hub serializes a broadcast's `message` text once ([`Payload::frame`](super::Payload::frame)),
//! then asks [`Encoded::for_session`] for each session's frame: the plain text frame, or,
//! for a session that negotiated permessage-deflate, the frame compressed with that
//! session's window. Each variant is built the first time a session needs it and shared
//! by reference count after that, so a broadcast to 1,000 compressing sessions is
//! compressed once (once per distinct window, which in practice is one: 15 bits unless a
//! client asked for less). Messages under `compression_min_size`, and those that deflate
//! does not make smaller, go plain (RSV1 clear) to every session.

use bytes::Bytes;

use super::deflate::Compressor;
use super::frame::encode;

/// The windows a client may ask for (`server_max_window_bits`): 9..=15.
const WINDOWS: usize = 7;
const MIN_WINDOW: u8 = 9;

/// The hub's compressors (one per window in use, made when first needed) and settings.
pub(crate) struct Compression {
    level: u32,
    min_size: usize,
    compressors: [Option<Compressor>; WINDOWS],
}

impl Compression {
    /// Compressors at `level`, for messages of at least `min_size` bytes.
    pub(crate) fn new(level: u32, min_size: usize) -> Self {
        Compression {
            level,
            min_size,
            compressors: Default::default(),
        }
    }

    /// The frames of one message whose text is `text`.
    pub(crate) fn encode<'a>(&'a mut self, text: &'a [u8]) -> Encoded<'a> {
        Encoded {
            compression: self,
            text,
            plain: None,
            compressed: Default::default(),
        }
    }
}

/// One message's frames, built as sessions ask for them (see the module docs).
pub(crate) struct Encoded<'a> {
    compression: &'a mut Compression,
    text: &'a [u8],
    plain: Option<Bytes>,
    /// Per window: `Some(None)` when compressing was tried and does not pay.
    compressed: [Option<Option<Bytes>>; WINDOWS],
}

impl Encoded<'_> {
    /// The frame for a session with this permessage-deflate window (`None`: it did not
    /// negotiate compression).
    pub(crate) fn for_session(&mut self, window: Option<u8>) -> Bytes {
        match window {
            Some(bits) if self.text.len() >= self.compression.min_size => {
                let index = usize::from(bits.clamp(MIN_WINDOW, 15) - MIN_WINDOW);
                if self.compressed[index].is_none() {
                    let level = self.compression.level;
                    let compressor = self.compression.compressors[index]
                        .get_or_insert_with(|| Compressor::new(level, bits.clamp(MIN_WINDOW, 15)));
                    let deflated = compressor.compress(self.text);
                    self.compressed[index] = Some(
                        (deflated.len() < self.text.len())
                            .then(|| encode::data_frame(true, true, &deflated)),
                    );
                }
                match &self.compressed[index] {
                    Some(Some(frame)) => frame.clone(),
                    _ => self.plain(),
                }
            }
            _ => self.plain(),
        }
    }

    /// The uncompressed frame.
    pub(crate) fn plain(&mut self) -> Bytes {
        self.plain
            .get_or_insert_with(|| encode::data_frame(true, false, self.text))
            .clone()
    }

    /// The size of the uncompressed frame, without building it.
    pub(crate) fn plain_len(&self) -> usize {
        encode::header_len(self.text.len()) + self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wordy(size: usize) -> Vec<u8> {
        "bid ask last volume ".bytes().cycle().take(size).collect()
    }

    #[test]
    fn a_message_is_compressed_once_per_window_and_shared() {
        let mut compression = Compression::new(1, 256);
        let text = wordy(4000);
        let mut encoded = compression.encode(&text);
        let a = encoded.for_session(Some(15));
        let b = encoded.for_session(Some(15));
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the same bytes, not compressed again"
        );
        assert_eq!(a[0], 0xC1, "FIN, RSV1, text");
        assert!(a.len() < text.len() / 4);
        let narrow = encoded.for_session(Some(10));
        assert_ne!(narrow.as_ptr(), a.as_ptr(), "another window, its own bytes");
        assert_eq!(narrow[0], 0xC1);
        let plain = encoded.for_session(None);
        assert_eq!(plain[0], 0x81, "FIN, text, RSV1 clear");
        assert_eq!(plain.len(), encoded.plain_len());
        assert_eq!(&plain[plain.len() - text.len()..], &text[..]);
        assert_eq!(encoded.plain().as_ptr(), plain.as_ptr());
    }

    #[test]
    fn small_and_incompressible_messages_go_plain_to_compressing_sessions() {
        let mut compression = Compression::new(1, 256);
        let small = wordy(255);
        let frame = compression.encode(&small).for_session(Some(15));
        assert_eq!(frame[0], 0x81);
        // Random bytes: deflate makes them bigger.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let frame = compression.encode(&noise).for_session(Some(15));
        assert_eq!(frame[0], 0x81);
        assert_eq!(&frame[frame.len() - noise.len()..], &noise[..]);
    }
}
