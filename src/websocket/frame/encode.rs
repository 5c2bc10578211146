//! The server's frames (RFC 6455 §5.2), never masked: a server must not mask.

use bytes::{BufMut, Bytes, BytesMut};

use super::OpCode;

/// The longest payload of a control frame.
const MAX_CONTROL: usize = 125;

/// The longest close reason: a close frame's payload is the 2-byte code and the reason.
const MAX_CLOSE_REASON: usize = MAX_CONTROL - 2;

/// Bytes of the header of an unmasked frame with a `len`-byte payload: 2 up to 125, 4 up
/// to 65535, 10 beyond (the 7-bit, 16-bit and 64-bit length forms).
pub(crate) fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Appends the header of an unmasked frame (the shortest length form, exactly
/// [`header_len(len)`](header_len) bytes); the `len` payload bytes are to follow.
pub(crate) fn encode_header(out: &mut BytesMut, fin: bool, rsv1: bool, opcode: OpCode, len: usize) {
    let first = u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode.bits();
    match len {
        0..=125 => out.put_slice(&[first, len as u8]),
        126..=0xFFFF => {
            out.put_slice(&[first, 126]);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_slice(&[first, 127]);
            out.put_u64(len as u64);
        }
    }
}

/// A whole message in one frame (FIN set), header and payload in one allocation: text or
/// binary, with RSV1 set when `compressed` (the payload is then deflated already).
pub(crate) fn data_frame(text: bool, compressed: bool, payload: &[u8]) -> Bytes {
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    frame(compressed, opcode, &[payload])
}

/// A ping, pong or close frame. A control frame carries at most 125 bytes: a longer
/// `payload` is cut to its first 125. (For a close frame, [`close_frame`] builds the
/// payload.)
pub(crate) fn control_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    debug_assert!(opcode.is_control(), "{opcode:?} is not a control opcode");
    frame(false, opcode, &[&payload[..payload.len().min(MAX_CONTROL)]])
}

/// A close frame: `code` and `reason` (cut to its first 123 bytes, at a character
/// boundary), or an empty payload for `None` (no code: `reason` is then not sent).
pub(crate) fn close_frame(code: Option<u16>, reason: &str) -> Bytes {
    let Some(code) = code else {
        return frame(false, OpCode::Close, &[]);
    };
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    frame(
        false,
        OpCode::Close,
        &[&code.to_be_bytes(), &reason.as_bytes()[..end]],
    )
}

/// One unfragmented frame of `parts` concatenated.
fn frame(rsv1: bool, opcode: OpCode, parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|part| part.len()).sum();
    let mut out = BytesMut::with_capacity(header_len(len) + len);
    encode_header(&mut out, true, rsv1, opcode, len);
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};

    use super::super::test_util::masked;
    use super::super::{Assembler, Decoder, Frame, Incoming};
    use super::*;

    #[test]
    fn headers_at_the_boundaries_of_the_three_length_forms() {
        let cases: [(usize, &[u8]); 5] = [
            (0, &[0x82, 0]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0x00, 0x7E]),
            (65535, &[0x82, 126, 0xFF, 0xFF]),
            (65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for (len, expected) in cases {
            let mut out = BytesMut::new();
            encode_header(&mut out, true, false, OpCode::Binary, len);
            assert_eq!(&out[..], expected, "len {len}");
            assert_eq!(header_len(len), expected.len(), "len {len}");
        }
        let mut out = BytesMut::new();
        encode_header(&mut out, false, true, OpCode::Continuation, 3);
        encode_header(&mut out, true, false, OpCode::Pong, 0);
        assert_eq!(&out[..], &[0x40, 3, 0x8A, 0]);
    }

    #[test]
    fn the_rfc_examples() {
        // RFC 6455 §5.7: an unmasked text "Hello", an unmasked pong "Hello", 256 bytes
        // of binary data in one unmasked frame.
        assert_eq!(
            &data_frame(true, false, b"Hello")[..],
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            &control_frame(OpCode::Pong, b"Hello")[..],
            &[0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            &data_frame(false, false, &[0; 256])[..4],
            &[0x82, 0x7E, 0x01, 0x00]
        );
        // RFC 7692 §7.2.3.1: "Hello" compressed, in one frame with RSV1.
        let deflated = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(
            &data_frame(true, true, &deflated)[..],
            &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }

    #[test]
    fn control_frames_are_cut_to_125_bytes() {
        let ping = control_frame(OpCode::Ping, &[b'p'; 200]);
        assert_eq!(&ping[..2], &[0x89, 125]);
        assert_eq!(ping.len(), 2 + 125);
        assert_eq!(&control_frame(OpCode::Ping, b"")[..], &[0x89, 0]);
    }

    #[test]
    fn close_frames() {
        assert_eq!(&close_frame(None, "ignored")[..], &[0x88, 0x00]);
        assert_eq!(
            &close_frame(Some(1000), "bye")[..],
            &[0x88, 0x05, 0x03, 0xE8, b'b', b'y', b'e']
        );
        // 122 bytes and a 2-byte character: cut before the character (123 would split it).
        let reason = format!("{}é", "x".repeat(122));
        let frame = close_frame(Some(4008), &reason);
        assert_eq!(&frame[..4], &[0x88, 124, 0x0F, 0xA8]);
        assert_eq!(&frame[4..], "x".repeat(122).as_bytes());
        // 123 ASCII bytes fit exactly; the 124th is cut.
        let frame = close_frame(Some(1001), &"y".repeat(124));
        assert_eq!(frame.len(), 2 + 125);
        assert_eq!(&frame[4..], "y".repeat(123).as_bytes());
    }

    /// Decodes one masked frame and assembles it.
    fn read_back(server: &[u8], key: [u8; 4], deflate: bool) -> (Frame, Incoming) {
        let mut buf = BytesMut::from(&masked(server, key)[..]);
        let frame = Decoder::new(usize::MAX)
            .decode(&mut buf)
            .expect("valid")
            .expect("whole");
        assert!(buf.is_empty());
        let incoming = Assembler::new(usize::MAX, deflate)
            .push(frame.clone())
            .expect("valid")
            .expect("a message");
        (frame, incoming)
    }

    #[test]
    fn encoded_frames_decode_to_what_was_encoded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let lengths = [0, 1, 124, 125, 126, 127, 65535, 65536, 70_000];
        for round in 0..200 {
            let len = if round < lengths.len() {
                lengths[round]
            } else {
                rng.random_range(0..3000)
            };
            let mut payload = vec![0u8; len];
            rng.fill(&mut payload[..]);
            let (text, compressed) = (rng.random_bool(0.5), rng.random_bool(0.5));
            if text && !compressed {
                payload.iter_mut().for_each(|b| *b &= 0x7F); // ASCII
            }
            let key: [u8; 4] = rng.random();
            let encoded = data_frame(text, compressed, &payload);
            assert_eq!(encoded.len(), header_len(len) + len);
            let (frame, incoming) = read_back(&encoded, key, true);
            assert!(frame.fin);
            assert_eq!(frame.rsv1, compressed);
            let expected = Incoming::Data {
                text,
                compressed,
                payload: payload.into(),
            };
            assert_eq!(incoming, expected, "len {len}");
        }
        let key = [1, 2, 3, 4];
        let (_, ping) = read_back(&control_frame(OpCode::Ping, b"hb"), key, false);
        assert_eq!(ping, Incoming::Ping(Bytes::from_static(b"hb")));
        let (_, close) = read_back(&close_frame(Some(4000), "heartbeat timeout"), key, false);
        assert_eq!(
            close,
            Incoming::Close(Some((4000, "heartbeat timeout".into())))
        );
        let (_, close) = read_back(&close_frame(None, ""), key, false);
        assert_eq!(close, Incoming::Close(None));
    }
}
