//! `frame_decoder`: the RFC 6455 frame codec (`src/websocket/frame/`), through
//! `tickwire::websocket::fuzz`, against a reference written here from the module's docs
//! and the RFC, byte by byte and without the codec's shortcuts.

use tickwire::websocket::fuzz::{frame_decoder_events, server_frame, Event};

/// The `max_message_size` values the input picks from (its first byte, low 3 bits).
const MAXES: [usize; 8] = [0, 1, 5, 125, 126, 300, 4096, usize::MAX];

/// The input is `[config, k, k chunk lengths..., stream...]`: `config & 7` picks
/// `max_message_size` from [`MAXES`] (and the whole byte the masking key of the round
/// trip), `k % 16` the number of chunk lengths (each byte + 1), and the rest is the bytes
/// a client sent. For each of permessage-deflate off and on:
///
/// - no panic;
/// - the events (frames, messages, error) of the stream fed at once are those of the
///   reference model ([`reference`]): same frames, same messages, same first error with
///   the same close code;
/// - fed in chunks of the given lengths (cycled), and one byte at a time, the events
///   are the same;
/// - an error is the last event (decoding stops at the first error); every data message
///   is at most `max_message_size` bytes; an uncompressed text message is UTF-8; no
///   compressed message without deflate; a control frame is at most 125 bytes;
/// - every message, ping, pong and close, encoded by the server's encoder, is the
///   reference encoding, and masked as a client would and decoded again gives that frame
///   and that event back;
/// - the two runs agree up to the first RSV1 data frame, which ends the run without
///   deflate with `CompressedNotNegotiated`.
pub fn frame_decoder(data: &[u8]) {
    let (config, rest) = data.split_first().unwrap_or((&0, &[]));
    let max = MAXES[usize::from(config & 7)];
    let (k, rest) = rest.split_first().unwrap_or((&0, &[]));
    let (lengths, stream) = rest.split_at(usize::from(k % 16).min(rest.len()));
    let key = [*config, config ^ 0x5A, config.rotate_left(3), !config];

    let mut splits = Vec::new();
    if !lengths.is_empty() {
        let mut at = 0;
        for length in lengths.iter().cycle() {
            at += usize::from(*length) + 1;
            if at >= stream.len() {
                break;
            }
            splits.push(at);
        }
    }
    let bytewise: Vec<usize> = (1..stream.len()).collect();

    let mut runs = Vec::new();
    for deflate in [false, true] {
        let events = frame_decoder_events(stream, &[], max, deflate);
        let expected = reference(stream, max, deflate);
        assert_eq!(events, expected, "deflate {deflate}, max {max}");
        let chunked = frame_decoder_events(stream, &splits, max, deflate);
        assert_eq!(chunked, events, "split at {splits:?}");
        let one_by_one = frame_decoder_events(stream, &bytewise, max, deflate);
        assert_eq!(one_by_one, events, "one byte at a time");
        check_events(&events, max, deflate);
        for event in &events {
            round_trip(event, key, max, deflate);
        }
        runs.push(events);
    }

    let (plain, deflated) = (&runs[0], &runs[1]);
    if plain != deflated {
        let n = plain.len();
        assert_eq!(
            plain.last(),
            Some(&error("CompressedNotNegotiated", 1002)),
            "the runs differ otherwise: {plain:?} / {deflated:?}"
        );
        assert_eq!(plain[..n - 1], deflated[..n - 1]);
        assert!(matches!(plain[n - 2], Event::Frame { rsv1: true, .. }));
    }
}

/// The invariants of one run.
fn check_events(events: &[Event], max: usize, deflate: bool) {
    for (i, event) in events.iter().enumerate() {
        match event {
            Event::Error { close_code, .. } => {
                assert_eq!(i, events.len() - 1, "an event after the error: {events:?}");
                assert!([1002, 1007, 1009].contains(close_code), "{event:?}");
            }
            Event::Frame { opcode, len, .. } => {
                assert!(*len <= max);
                if opcode & 8 != 0 {
                    assert!(*len <= 125, "{event:?}");
                }
            }
            Event::Data {
                text,
                compressed,
                payload,
            } => {
                assert!(payload.len() <= max, "{} > {max}", payload.len());
                assert!(deflate || !compressed);
                if *text && !compressed {
                    assert!(std::str::from_utf8(payload).is_ok(), "{payload:?}");
                }
            }
            Event::Ping(payload) | Event::Pong(payload) => assert!(payload.len() <= 125),
            Event::Close(close) => {
                if let Some((_, reason)) = close {
                    assert!(reason.len() <= 123);
                }
            }
        }
    }
}

/// A message, ping, pong or close: the server's frame for it is the reference encoding,
/// and read back as a client's frame it is the same event.
fn round_trip(event: &Event, key: [u8; 4], max: usize, deflate: bool) {
    let (first, payload): (u8, Vec<u8>) = match event {
        Event::Data {
            text,
            compressed,
            payload,
        } => (
            0x80 | if *compressed { 0x40 } else { 0 } | if *text { 1 } else { 2 },
            payload.clone(),
        ),
        Event::Ping(payload) => (0x89, payload.clone()),
        Event::Pong(payload) => (0x8A, payload.clone()),
        Event::Close(None) => (0x88, Vec::new()),
        Event::Close(Some((code, reason))) => {
            (0x88, [&code.to_be_bytes()[..], reason.as_bytes()].concat())
        }
        Event::Frame { .. } | Event::Error { .. } => {
            assert_eq!(server_frame(event), None);
            return;
        }
    };
    let expected = reference_frame(first, &payload);
    let encoded = server_frame(event).expect("a frame");
    assert_eq!(encoded, expected, "the server's frame for {event:?}");
    let frame = Event::Frame {
        fin: true,
        rsv1: first & 0x40 != 0,
        opcode: first & 0x0F,
        len: payload.len(),
    };
    let back = frame_decoder_events(&masked(&encoded, key), &[], max, deflate);
    assert_eq!(back, [frame, event.clone()], "read back");
}

/// An unmasked frame with FIN and the shortest length form, as RFC 6455 §5.2 draws it.
fn reference_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        len @ 0..=125 => out.push(len as u8),
        len @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// `server` (unmasked) as a client sends it: mask bit, key, payload XORed byte by byte.
fn masked(server: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header = match server[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = server[..header].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    let payload = server[header..].iter().enumerate();
    out.extend(payload.map(|(i, byte)| byte ^ key[i % 4]));
    out
}

fn error(name: &str, close_code: u16) -> Event {
    Event::Error {
        error: name.to_owned(),
        close_code,
    }
}

/// The frame path read from the module docs of `src/websocket/frame/mod.rs`, over the
/// whole stream at once: the decoder's checks in their documented order, each needing
/// only its own bytes (a truncated frame ends the events, unless the bytes there already
/// show an error), then the assembler's rules.
fn reference(stream: &[u8], max: usize, deflate: bool) -> Vec<Event> {
    let mut events = Vec::new();
    // The message in progress: text, compressed, its bytes so far.
    let mut message: Option<(bool, bool, Vec<u8>)> = None;
    let mut rest = stream;
    while let Some(&first) = rest.first() {
        let fin = first & 0x80 != 0;
        let rsv1 = first & 0x40 != 0;
        let opcode = first & 0x0F;
        let control = opcode >= 8;
        let refused = if first & 0x30 != 0 {
            Some("ReservedBits".to_owned())
        } else if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            Some(format!("ReservedOpcode({opcode})"))
        } else if control && !fin {
            Some("FragmentedControl".to_owned())
        } else if control && rsv1 {
            Some("CompressedControl".to_owned())
        } else if opcode == 0 && rsv1 {
            Some("CompressedContinuation".to_owned())
        } else {
            None
        };
        if let Some(name) = refused {
            events.push(error(&name, 1002));
            return events;
        }
        let Some(&second) = rest.get(1) else {
            return events;
        };
        if second & 0x80 == 0 {
            events.push(error("Unmasked", 1002));
            return events;
        }
        let len7 = second & 0x7F;
        if control && len7 > 125 {
            events.push(error("ControlTooLong", 1002));
            return events;
        }
        let (extended, len) = match len7 {
            126 if rest.len() < 4 => return events,
            126 => (2, u64::from(rest[2]) << 8 | u64::from(rest[3])),
            127 if rest.len() < 10 => return events,
            127 => (8, rest[2..10].iter().fold(0, |n, b| n << 8 | u64::from(*b))),
            n => (0, u64::from(n)),
        };
        if len >> 63 != 0 {
            events.push(error("BadLength", 1002));
            return events;
        }
        if len > max as u64 {
            let name = format!("TooBig {{ size: {len}, max: {max} }}");
            events.push(error(&name, 1009));
            return events;
        }
        let header = 2 + extended + 4;
        if (rest.len() as u64) < header as u64 + len {
            return events;
        }
        let len = len as usize;
        let key = &rest[header - 4..header];
        let payload: Vec<u8> = rest[header..header + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        rest = &rest[header + len..];
        events.push(Event::Frame {
            fin,
            rsv1,
            opcode,
            len,
        });

        let outcome = match opcode {
            8 => reference_close(&payload).map(|close| Some(Event::Close(close))),
            9 => Ok(Some(Event::Ping(payload))),
            10 => Ok(Some(Event::Pong(payload))),
            1 | 2 if message.is_some() => Err(error("NewMessageInFragmented", 1002)),
            1 | 2 if rsv1 && !deflate => Err(error("CompressedNotNegotiated", 1002)),
            1 | 2 => {
                message = Some((opcode == 1, rsv1, Vec::new()));
                continue_message(&mut message, payload, fin, max)
            }
            _ if message.is_none() => Err(error("UnexpectedContinuation", 1002)),
            _ => continue_message(&mut message, payload, fin, max),
        };
        match outcome {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {}
            Err(refusal) => {
                events.push(refusal);
                return events;
            }
        }
    }
    events
}

/// Adds a fragment to the message in progress; the message when `fin`.
fn continue_message(
    message: &mut Option<(bool, bool, Vec<u8>)>,
    payload: Vec<u8>,
    fin: bool,
    max: usize,
) -> Result<Option<Event>, Event> {
    let (text, compressed, bytes) = message.as_mut().expect("a message in progress");
    let size = bytes.len() + payload.len();
    if size > max {
        return Err(error(
            &format!("TooBig {{ size: {size}, max: {max} }}"),
            1009,
        ));
    }
    bytes.extend_from_slice(&payload);
    if *text && !*compressed {
        let invalid = match std::str::from_utf8(bytes) {
            Ok(_) => false,
            // Unfinished at the end: invalid only if nothing more is to come.
            Err(e) => e.error_len().is_some() || fin,
        };
        if invalid {
            return Err(error("InvalidUtf8", 1007));
        }
    }
    if !fin {
        return Ok(None);
    }
    let (text, compressed, payload) = message.take().expect("a message in progress");
    Ok(Some(Event::Data {
        text,
        compressed,
        payload,
    }))
}

/// A close payload per RFC 6455 §5.5.1 and §7.4.
fn reference_close(payload: &[u8]) -> Result<Option<(u16, String)>, Event> {
    if payload.is_empty() {
        return Ok(None);
    }
    if payload.len() == 1 {
        return Err(error("BadCloseLength", 1002));
    }
    let code = u16::from(payload[0]) << 8 | u16::from(payload[1]);
    let reserved = matches!(code, 0..=999 | 1004 | 1005 | 1006 | 1015..=2999 | 5000..);
    if reserved {
        return Err(error(&format!("BadCloseCode({code})"), 1002));
    }
    match String::from_utf8(payload[2..].to_vec()) {
        Ok(reason) => Ok(Some((code, reason))),
        Err(_) => Err(error("InvalidCloseReason", 1007)),
    }
}
