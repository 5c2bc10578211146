use super::*;

fn frame(fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) -> Frame {
    Frame {
        fin,
        rsv1,
        opcode,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn text(fin: bool, payload: &[u8]) -> Frame {
    frame(fin, false, OpCode::Text, payload)
}

fn binary(fin: bool, payload: &[u8]) -> Frame {
    frame(fin, false, OpCode::Binary, payload)
}

fn more(fin: bool, payload: &[u8]) -> Frame {
    frame(fin, false, OpCode::Continuation, payload)
}

fn data(text: bool, compressed: bool, payload: &[u8]) -> Option<Incoming> {
    Some(Incoming::Data {
        text,
        compressed,
        payload: Bytes::copy_from_slice(payload),
    })
}

/// Pushes `frames` and returns what each gave.
fn push_all(
    assembler: &mut Assembler,
    frames: impl IntoIterator<Item = Frame>,
) -> Vec<Result<Option<Incoming>, FrameError>> {
    frames.into_iter().map(|f| assembler.push(f)).collect()
}

/// The error `frames` end with (every earlier frame accepted), and its close code.
fn refusal(deflate: bool, frames: impl IntoIterator<Item = Frame>) -> (FrameError, u16) {
    let mut outcomes = push_all(&mut Assembler::new(100, deflate), frames);
    let last = outcomes.pop().expect("a frame");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let error = last.expect_err("refused");
    let code = error.close_code();
    (error, code)
}

#[test]
fn a_single_frame_message_is_returned_without_a_copy() {
    let payload = Bytes::from_static(b"{\"type\":\"ping\"}");
    let mut assembler = Assembler::new(100, false);
    let frame = Frame {
        fin: true,
        rsv1: false,
        opcode: OpCode::Text,
        payload: payload.clone(),
    };
    let Ok(Some(Incoming::Data { payload: out, .. })) = assembler.push(frame) else {
        panic!("a message");
    };
    assert_eq!(out.as_ptr(), payload.as_ptr());
    // Also a message whose other fragments are empty.
    let first = Bytes::from_static(b"abc");
    let fragments = [
        binary(false, b""),
        Frame {
            fin: false,
            rsv1: false,
            opcode: OpCode::Continuation,
            payload: first.clone(),
        },
        more(true, b""),
    ];
    let outcomes = push_all(&mut assembler, fragments);
    let Ok(Some(Incoming::Data { payload: out, .. })) = &outcomes[2] else {
        panic!("{outcomes:?}");
    };
    assert_eq!(out.as_ptr(), first.as_ptr());
}

#[test]
fn fragmented_text_with_a_ping_between_the_fragments() {
    let mut assembler = Assembler::new(100, false);
    let frames = [
        text(false, b"Hel"),
        frame(true, false, OpCode::Ping, b"are you there"),
        more(false, b"lo, "),
        frame(true, false, OpCode::Pong, b""),
        more(true, b"world"),
        binary(true, b"next"),
    ];
    assert_eq!(
        push_all(&mut assembler, frames),
        [
            Ok(None),
            Ok(Some(Incoming::Ping(Bytes::from_static(b"are you there")))),
            Ok(None),
            Ok(Some(Incoming::Pong(Bytes::new()))),
            Ok(data(true, false, b"Hello, world")),
            Ok(data(false, false, b"next")),
        ]
    );
}

#[test]
fn a_close_between_fragments_is_returned_at_once() {
    let mut assembler = Assembler::new(100, false);
    let close = [0x03, 0xE8, b'b', b'y', b'e'];
    let outcomes = push_all(
        &mut assembler,
        [
            binary(false, b"12"),
            frame(true, false, OpCode::Close, &close),
        ],
    );
    assert_eq!(
        outcomes,
        [
            Ok(None),
            Ok(Some(Incoming::Close(Some((1000, "bye".into())))))
        ]
    );
}

#[test]
fn a_character_split_across_fragments_is_valid() {
    // "€" is E2 82 AC; "𝄞" is F0 9D 84 9E: split at every byte.
    let mut assembler = Assembler::new(100, false);
    let frames = [
        text(false, b"a\xE2"),
        more(false, b"\x82\xACb\xF0"),
        more(false, b"\x9D"),
        more(false, b"\x84"),
        more(true, b"\x9E"),
    ];
    let outcomes = push_all(&mut assembler, frames);
    assert_eq!(outcomes[4], Ok(data(true, false, "a€b𝄞".as_bytes())));
}

#[test]
fn text_that_is_not_utf8_is_refused_with_1007() {
    assert_eq!(
        refusal(false, [text(true, b"ok \xFF")]),
        (FrameError::InvalidUtf8, 1007)
    );
    // An invalid sequence is refused with its fragment, before the message ends.
    assert_eq!(
        refusal(false, [text(false, b"ok"), more(false, b"\xC0\xAF")]),
        (FrameError::InvalidUtf8, 1007)
    );
    assert_eq!(
        refusal(false, [text(false, b"\xED\xA0\x80")]), // a surrogate
        (FrameError::InvalidUtf8, 1007)
    );
    // A message that ends inside a character.
    assert_eq!(
        refusal(false, [text(false, b"a"), more(true, b"\xE2\x82")]),
        (FrameError::InvalidUtf8, 1007)
    );
    assert_eq!(
        refusal(false, [text(true, b"\xE2\x82")]),
        (FrameError::InvalidUtf8, 1007)
    );
    // Binary is not checked.
    let mut assembler = Assembler::new(100, false);
    assert_eq!(
        assembler.push(binary(true, b"\xFF")),
        Ok(data(false, false, b"\xFF"))
    );
}

#[test]
fn the_size_limit_holds_across_fragments() {
    let mut assembler = Assembler::new(10, false);
    let outcomes = push_all(
        &mut assembler,
        [
            binary(false, b"12345"),
            more(false, b"678"),
            more(true, b"90"),
        ],
    );
    assert_eq!(outcomes[2], Ok(data(false, false, b"1234567890")));
    let outcomes = push_all(
        &mut assembler,
        [
            binary(false, b"12345"),
            more(false, b"678"),
            more(false, b"901"),
        ],
    );
    assert_eq!(outcomes[2], Err(FrameError::TooBig { size: 11, max: 10 }));
    assert_eq!(outcomes[2].as_ref().unwrap_err().close_code(), 1009);
    // A single frame over the limit (the decoder refuses it first, from its header).
    assert_eq!(
        Assembler::new(3, false).push(text(true, b"four")),
        Err(FrameError::TooBig { size: 4, max: 3 })
    );
}

#[test]
fn a_message_in_progress_never_holds_more_than_the_limit() {
    let max = 1000;
    let mut assembler = Assembler::new(max, false);
    assert_eq!(assembler.push(binary(false, &[1; 7])), Ok(None));
    for _ in 0..141 {
        assert_eq!(assembler.push(more(false, &[2; 7])), Ok(None));
        let Some(Partial {
            data: Fragments::Many(buffer),
            ..
        }) = &assembler.partial
        else {
            panic!("a buffer");
        };
        assert!(buffer.capacity() <= max, "{}", buffer.capacity());
    }
    let outcome = assembler.push(more(true, &[3; 7]));
    assert_eq!(outcome, Err(FrameError::TooBig { size: 1001, max }));
    assert!(assembler.partial.is_none(), "dropped on the error");
}

#[test]
fn fragments_must_follow_a_started_message() {
    assert_eq!(
        refusal(false, [more(true, b"x")]),
        (FrameError::UnexpectedContinuation, 1002)
    );
    assert_eq!(
        refusal(false, [text(true, b"done"), more(true, b"x")]),
        (FrameError::UnexpectedContinuation, 1002)
    );
    assert_eq!(
        refusal(false, [text(false, b"a"), text(true, b"b")]),
        (FrameError::NewMessageInFragmented, 1002)
    );
    assert_eq!(
        refusal(false, [binary(false, b"a"), binary(false, b"b")]),
        (FrameError::NewMessageInFragmented, 1002)
    );
}

#[test]
fn rsv1_means_compressed_only_when_negotiated_and_only_on_the_first_frame() {
    let compressed = frame(true, true, OpCode::Text, b"\xF2\x48\xCD\xC9\xC9\x07\x00");
    assert_eq!(
        refusal(false, [compressed.clone()]),
        (FrameError::CompressedNotNegotiated, 1002)
    );
    // Negotiated: returned as it came, not checked for UTF-8 (it is deflated).
    let mut assembler = Assembler::new(100, true);
    assert_eq!(
        assembler.push(compressed),
        Ok(data(true, true, b"\xF2\x48\xCD\xC9\xC9\x07\x00"))
    );
    // Fragmented: the continuation carries no RSV1, the message is compressed.
    let outcomes = push_all(
        &mut assembler,
        [
            frame(false, true, OpCode::Binary, b"\xFF"),
            more(true, b"\xFE"),
        ],
    );
    assert_eq!(outcomes[1], Ok(data(false, true, b"\xFF\xFE")));
    assert_eq!(
        refusal(
            true,
            [
                frame(false, true, OpCode::Text, b"x"),
                frame(true, true, OpCode::Continuation, b"y")
            ]
        ),
        (FrameError::CompressedContinuation, 1002)
    );
    // Without RSV1, a deflate session checks text as usual.
    assert_eq!(
        refusal(true, [text(true, b"\xFF")]),
        (FrameError::InvalidUtf8, 1007)
    );
}

#[test]
fn close_payloads() {
    let close = |payload: &[u8]| {
        Assembler::new(125, false).push(frame(true, false, OpCode::Close, payload))
    };
    assert_eq!(close(b""), Ok(Some(Incoming::Close(None))));
    assert_eq!(close(&[0x03]), Err(FrameError::BadCloseLength));
    assert_eq!(FrameError::BadCloseLength.close_code(), 1002);
    assert_eq!(
        close(&[0x03, 0xE8]),
        Ok(Some(Incoming::Close(Some((1000, String::new())))))
    );
    let mut reason = vec![0x0F, 0xA0]; // 4000
    reason.extend_from_slice("à bientôt".as_bytes());
    assert_eq!(
        close(&reason),
        Ok(Some(Incoming::Close(Some((4000, "à bientôt".into())))))
    );
    assert_eq!(
        close(&[0x03, 0xE8, 0xFF]),
        Err(FrameError::InvalidCloseReason)
    );
    assert_eq!(FrameError::InvalidCloseReason.close_code(), 1007);
}

#[test]
fn close_codes_per_rfc_6455_section_7_4() {
    let close = |code: u16| {
        Assembler::new(125, false).push(frame(true, false, OpCode::Close, &code.to_be_bytes()))
    };
    for code in 0..=u16::MAX {
        let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        match close(code) {
            Ok(Some(Incoming::Close(Some((got, reason))))) => {
                assert!(allowed, "{code} accepted");
                assert_eq!((got, reason.as_str()), (code, ""));
            }
            Err(error) => {
                assert!(!allowed, "{code} refused");
                assert_eq!(error, FrameError::BadCloseCode(code));
                assert_eq!(error.close_code(), 1002);
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
        assert_eq!(close(code), Err(FrameError::BadCloseCode(code)));
    }
}

#[test]
fn after_an_error_the_assembler_returns_it_again() {
    let mut assembler = Assembler::new(100, false);
    assert_eq!(
        assembler.push(more(true, b"x")),
        Err(FrameError::UnexpectedContinuation)
    );
    assert_eq!(
        assembler.push(text(true, b"fine")),
        Err(FrameError::UnexpectedContinuation)
    );
}

#[test]
fn check_text_gives_the_text_or_1007() {
    assert_eq!(check_text("déjà".as_bytes()), Ok("déjà"));
    assert_eq!(check_text(b""), Ok(""));
    assert_eq!(check_text(b"\xC3"), Err(FrameError::InvalidUtf8));
}

#[test]
fn random_fragmentations_of_text_give_the_text_back() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let words = ["a", "é", "€", "𝄞", "tick", "\u{7FF}", "\u{FFFF}"];
    for _ in 0..2000 {
        let message: String = (0..rng.random_range(0..20))
            .map(|_| words[rng.random_range(0..words.len())])
            .collect();
        let bytes = message.as_bytes();
        let mut cuts: Vec<usize> = (0..rng.random_range(0..6))
            .map(|_| rng.random_range(0..=bytes.len()))
            .collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut assembler = Assembler::new(bytes.len(), false);
        let mut start = 0;
        let mut outcome = Ok(None);
        for (i, &cut) in cuts.iter().enumerate() {
            let fin = i == cuts.len() - 1;
            let piece = &bytes[start..cut];
            let next = if i == 0 {
                text(fin, piece)
            } else {
                more(fin, piece)
            };
            outcome = assembler.push(next);
            start = cut;
            if !fin {
                assert_eq!(outcome, Ok(None), "{message:?} cut at {cuts:?}");
            }
        }
        assert_eq!(
            outcome,
            Ok(data(true, false, bytes)),
            "{message:?} cut at {cuts:?}"
        );
    }
}
