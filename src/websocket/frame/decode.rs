//! The decoder: one client frame off the front of the read buffer (RFC 6455 §5.2).
//!
//! ```text
//!  0               1               2               3
//!  F R R R opcode  M len7          extended length (len7 = 126: 16 bits,
//!  I S S S (4)     A (7)           len7 = 127: 64 bits), big-endian
//!  N V V V         S
//!    1 2 3         K               masking key (4 bytes), then the payload
//! ```
//!
//! The decoder keeps no partial state: until a whole frame is in the buffer it returns
//! `None` and leaves the buffer as it was, and the header (at most 14 bytes) is read
//! again when more bytes arrive. The header checks run in a fixed order, each as soon as
//! its bytes are there (module docs of [`super`]), so that the outcome does not depend
//! on how the bytes were split into reads.

use bytes::{Buf, Bytes, BytesMut};

use super::{apply_mask, Frame, FrameError, OpCode};

/// Reads client frames; see the module docs of [`super`] for what it refuses.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// The longest frame payload accepted.
    max_message_size: usize,
    /// The error returned, once there was one: it is returned again by every later call.
    failed: Option<FrameError>,
}

/// What a frame's header says.
struct Header {
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    key: [u8; 4],
    /// Bytes of the header, masking key included: 6, 8 or 14.
    len: usize,
    /// Bytes of the payload (at most `max_message_size`).
    payload: usize,
}

impl Decoder {
    /// A decoder that refuses frames longer than `max_message_size`.
    pub(crate) fn new(max_message_size: usize) -> Decoder {
        Decoder {
            max_message_size,
            failed: None,
        }
    }

    /// Takes the first frame off `buf`, unmasked. `Ok(None)`: `buf` holds no whole frame
    /// yet (it is left untouched; call again when more bytes arrived). After an error the
    /// connection is to be closed: the decoder returns that error again on every call.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let header = match parse_header(buf, self.max_message_size) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(None),
            Err(error) => {
                self.failed = Some(error.clone());
                return Err(error);
            }
        };
        if buf.len() - header.len < header.payload {
            return Ok(None);
        }
        buf.advance(header.len);
        let payload = if header.payload == 0 {
            Bytes::new()
        } else {
            let mut payload = buf.split_to(header.payload);
            apply_mask(&mut payload, header.key);
            payload.freeze()
        };
        Ok(Some(Frame {
            fin: header.fin,
            rsv1: header.rsv1,
            opcode: header.opcode,
            payload,
        }))
    }
}

/// Reads and checks the header at the front of `buf`: `None` until all of it is there,
/// an error as soon as the bytes that show it are.
fn parse_header(buf: &[u8], max: usize) -> Result<Option<Header>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let rsv1 = first & 0x40 != 0;
    if first & 0x30 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let bits = first & 0x0F;
    let opcode = OpCode::from_bits(bits).ok_or(FrameError::ReservedOpcode(bits))?;
    if opcode.is_control() && !fin {
        return Err(FrameError::FragmentedControl);
    }
    if rsv1 && opcode.is_control() {
        return Err(FrameError::CompressedControl);
    }
    if rsv1 && opcode == OpCode::Continuation {
        return Err(FrameError::CompressedContinuation);
    }

    let Some(&second) = buf.get(1) else {
        return Ok(None);
    };
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let len7 = second & 0x7F;
    if opcode.is_control() && len7 > 125 {
        return Err(FrameError::ControlTooLong);
    }

    let (payload, extended) = match len7 {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 2)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(FrameError::BadLength);
            }
            (len, 8)
        }
        len => (u64::from(len), 0),
    };
    // Also true when the length does not fit a usize (a 32-bit target): `max` does.
    let payload = match usize::try_from(payload) {
        Ok(len) if len <= max => len,
        _ => return Err(FrameError::TooBig { size: payload, max }),
    };

    let len = 2 + extended + 4;
    let Some(key) = buf.get(len - 4..len) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        rsv1,
        opcode,
        key: [key[0], key[1], key[2], key[3]],
        len,
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::client_frame;
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Decodes all of `bytes` at once: the frames, then the error or the bytes left.
    fn decode_all(bytes: &[u8], max: usize) -> (Vec<Frame>, Result<usize, FrameError>) {
        let mut decoder = Decoder::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, Ok(buf.len())),
                Err(error) => return (frames, Err(error)),
            }
        }
    }

    /// The error of the first frame of `bytes`, and its close code.
    fn refusal(bytes: &[u8], max: usize) -> (FrameError, u16) {
        let (frames, outcome) = decode_all(bytes, max);
        assert!(frames.is_empty(), "{frames:?}");
        let error = outcome.expect_err("refused");
        let code = error.close_code();
        (error, code)
    }

    fn frame(fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) -> Frame {
        Frame {
            fin,
            rsv1,
            opcode,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn the_rfc_examples() {
        // RFC 6455 §5.7: a single-frame masked text message, and a masked ping "Hello".
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let ping = [
            0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let bytes = [&hello[..], &ping[..]].concat();
        let (frames, left) = decode_all(&bytes, 1 << 20);
        assert_eq!(
            frames,
            [
                frame(true, false, OpCode::Text, b"Hello"),
                frame(true, false, OpCode::Ping, b"Hello"),
            ]
        );
        assert_eq!(left, Ok(0));
        // The same examples unmasked (as the RFC gives the fragmented one): refused.
        assert_eq!(
            refusal(&[0x01, 0x03, 0x48, 0x65, 0x6c], 100),
            (FrameError::Unmasked, 1002)
        );
    }

    #[test]
    fn lengths_at_the_boundaries_of_the_three_encodings() {
        for (len, header) in [(0, 6), (125, 6), (126, 8), (65535, 8), (65536, 14)] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bytes = client_frame(0x82, &payload, KEY);
            assert_eq!(bytes.len(), header + len, "len {len}");
            let (frames, left) = decode_all(&bytes, 65536);
            assert_eq!(frames, [frame(true, false, OpCode::Binary, &payload)]);
            assert_eq!(left, Ok(0));
        }
        // The 64-bit form also for short payloads (not the shortest form: accepted).
        let mut long_form = vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 3];
        long_form.extend_from_slice(&KEY);
        long_form.extend([b'a' ^ KEY[0], b'b' ^ KEY[1], b'c' ^ KEY[2]]);
        assert_eq!(
            decode_all(&long_form, 10).0,
            [frame(true, false, OpCode::Binary, b"abc")]
        );
    }

    #[test]
    fn a_frame_fed_one_byte_at_a_time_decodes_as_when_fed_at_once() {
        let mut bytes = client_frame(0x01, b"frag", KEY);
        bytes.extend(client_frame(0x89, b"", KEY));
        bytes.extend(client_frame(0x80, &[7u8; 300], KEY));
        bytes.extend(client_frame(0x82, &[9u8; 70_000], KEY));
        let (expected, left) = decode_all(&bytes, 100_000);
        assert_eq!(expected.len(), 4);
        assert_eq!(left, Ok(0));

        let mut decoder = Decoder::new(100_000);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &byte in &bytes {
            buf.extend_from_slice(&[byte]);
            while let Some(frame) = decoder.decode(&mut buf).expect("valid") {
                frames.push(frame);
            }
        }
        assert_eq!(frames, expected);
        assert!(buf.is_empty());
    }

    #[test]
    fn an_incomplete_frame_leaves_the_buffer_untouched() {
        let bytes = client_frame(0x81, b"Hello", KEY);
        let mut decoder = Decoder::new(100);
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(&buf[..], &bytes[..cut]);
        }
        // What follows a frame stays in the buffer.
        let mut buf = BytesMut::from(&[&bytes[..], &[0x82, 0x80]].concat()[..]);
        assert!(decoder.decode(&mut buf).unwrap().is_some());
        assert_eq!(&buf[..], &[0x82, 0x80]);
    }

    #[test]
    fn the_payload_is_the_read_buffers_own_bytes() {
        let bytes = client_frame(0x82, &[5u8; 1000], KEY);
        let mut buf = BytesMut::from(&bytes[..]);
        let start = buf.as_ptr() as usize;
        let frame = Decoder::new(1000).decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.payload.as_ptr() as usize, start + 8, "not copied");
        assert_eq!(&frame.payload[..], &[5u8; 1000][..]);
    }

    #[test]
    fn client_frames_must_be_masked() {
        assert_eq!(
            refusal(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'], 100),
            (FrameError::Unmasked, 1002)
        );
        // Known from the second byte, before the payload.
        assert_eq!(refusal(&[0x82, 0x7E], 100), (FrameError::Unmasked, 1002));
    }

    #[test]
    fn reserved_bits_and_opcodes_are_refused_from_the_first_byte() {
        assert_eq!(refusal(&[0xA1], 100), (FrameError::ReservedBits, 1002)); // RSV2
        assert_eq!(refusal(&[0x91], 100), (FrameError::ReservedBits, 1002)); // RSV3
        for op in (3..=7).chain(0xB..=0xF) {
            assert_eq!(
                refusal(&[0x80 | op], 100),
                (FrameError::ReservedOpcode(op), 1002)
            );
        }
    }

    #[test]
    fn control_frames_are_short_and_whole_and_uncompressed() {
        for op in [0x8, 0x9, 0xA] {
            // FIN clear.
            assert_eq!(refusal(&[op], 100), (FrameError::FragmentedControl, 1002));
            // RSV1.
            assert_eq!(
                refusal(&[0xC0 | op], 100),
                (FrameError::CompressedControl, 1002)
            );
            // 126 and 127 announce an extended length: over 125, refused from byte 2.
            for len7 in [126, 127] {
                assert_eq!(
                    refusal(&[0x80 | op, 0x80 | len7], 1 << 20),
                    (FrameError::ControlTooLong, 1002)
                );
            }
            let longest = client_frame(0x80 | op, &[b'x'; 125], KEY);
            let (frames, _) = decode_all(&longest, 1 << 20);
            assert_eq!(frames[0].payload.len(), 125);
        }
    }

    #[test]
    fn rsv1_on_a_continuation_is_refused() {
        assert_eq!(
            refusal(&[0xC0], 100),
            (FrameError::CompressedContinuation, 1002)
        );
        // On a first data frame it passes the decoder (the assembler decides).
        let (frames, _) = decode_all(&client_frame(0xC1, b"x", KEY), 100);
        assert!(frames[0].rsv1);
    }

    #[test]
    fn a_64_bit_length_with_the_top_bit_set_is_refused() {
        let bytes = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(refusal(&bytes, usize::MAX), (FrameError::BadLength, 1002));
        // Not before the whole length arrived.
        let mut buf = BytesMut::from(&bytes[..9]);
        assert_eq!(Decoder::new(usize::MAX).decode(&mut buf), Ok(None));
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_from_its_header() {
        // Only the header: no payload byte has arrived.
        let header_16 = [0x82, 0xFE, 0x01, 0x00]; // 256 bytes
        let too_big = |size, max| FrameError::TooBig { size, max };
        assert_eq!(refusal(&header_16, 255), (too_big(256, 255), 1009));
        let header_64 = [0x81, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(
            refusal(&header_64, 1 << 20),
            (too_big(u64::MAX >> 1, 1 << 20), 1009)
        );
        assert_eq!(refusal(&[0x82, 0x81], 0), (too_big(1, 0), 1009));
        // Exactly the limit passes.
        let (frames, _) = decode_all(&client_frame(0x82, &[0; 256], KEY), 256);
        assert_eq!(frames.len(), 1);
        // An empty frame with a zero limit too.
        let (frames, _) = decode_all(&client_frame(0x82, &[], KEY), 0);
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn after_an_error_the_decoder_returns_it_again() {
        let mut decoder = Decoder::new(100);
        let mut buf = BytesMut::from(&[0x83][..]);
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::ReservedOpcode(3)));
        let mut valid = BytesMut::from(&client_frame(0x81, b"ok", KEY)[..]);
        assert_eq!(
            decoder.decode(&mut valid),
            Err(FrameError::ReservedOpcode(3))
        );
    }

    #[test]
    fn the_checks_run_in_the_documented_order() {
        // RSV2 and a reserved opcode and no mask: the reserved bits win.
        assert_eq!(refusal(&[0x23, 0x05], 100).0, FrameError::ReservedBits);
        // A reserved opcode before a missing mask.
        assert_eq!(refusal(&[0x83, 0x05], 100).0, FrameError::ReservedOpcode(3));
        // A fragmented, compressed control frame: fragmented first.
        assert_eq!(refusal(&[0x49], 100).0, FrameError::FragmentedControl);
        // Unmasked before too long.
        assert_eq!(refusal(&[0x89, 0x7E], 100).0, FrameError::Unmasked);
    }
}
