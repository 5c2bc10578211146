//! inflater: permessage-deflate (`src/websocket/deflate/`), through
//! `tickwire::websocket::fuzz`.

use std::io::{ErrorKind, Read};

use flate2::read::DeflateDecoder;
use tickwire::websocket::fuzz::{self, InflateRefusal};

/// What RFC 7692 §7.2.2 appends to a message before inflating it.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The input: byte 0 picks the mode (bit 0), the window (bits 1–3: `9 + v % 7`) and the
/// level (bits 4–7: `v % 10`); bytes 1–2 `max` (`1 + u16` little-endian: 1..=65536); the
/// rest is the data. Missing bytes count as 0.
///
/// - Mode 0, the data is a compressed message: [`check_inflate`].
/// - Mode 1, the data is a message: [`check_round_trip`].
/// - Either way, the whole input (lossily UTF-8) is also read as `Sec-WebSocket-Extensions`
///   lines, one per `\n`: [`check_negotiate`].
pub fn inflater(data: &[u8]) {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let window = 9 + (byte(0) >> 1 & 7) % 7;
    let level = u32::from(byte(0) >> 4) % 10;
    let max = 1 + usize::from(u16::from_le_bytes([byte(1), byte(2)]));
    let rest = data.get(3..).unwrap_or_default();
    if byte(0) & 1 == 0 {
        check_inflate(rest, max);
    } else {
        check_round_trip(rest, level, window, max);
    }
    check_negotiate(data);
}

/// What flate2's stream reader, an independent reading of RFC 7692 §7.2.2 and of the
/// module docs of `src/websocket/deflate/inflate.rs`, makes of a message.
#[derive(Debug)]
enum Reference {
    /// The message: the stream did not end (the usual case: its reader then says
    /// `UnexpectedEof`), or ended in a final block followed only by empty blocks.
    Message(Vec<u8>),
    /// Over `max` bytes: the reader, limited to `max + 1`, got them all.
    OverLimit,
    /// The reader refused the data (`InvalidInput`) before `max + 1` bytes.
    Corrupt,
    /// A final block ended inside the payload, and what follows it up to the payload's
    /// end (read by a new reader each time a final block ends there) holds a byte of
    /// data or is refused.
    AfterFinalBlock,
}

/// flate2's `read::DeflateDecoder` on `compressed` + tail, at most `max + 1` bytes.
fn reference(compressed: &[u8], max: usize) -> Reference {
    let input = [compressed, &TAIL].concat();
    let mut decoder = DeflateDecoder::new(&input[..]);
    let mut out = Vec::new();
    let read = (&mut decoder).take(max as u64 + 1).read_to_end(&mut out);
    if out.len() > max {
        return Reference::OverLimit;
    }
    match read {
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Reference::Message(out),
        Err(e) if e.kind() == ErrorKind::InvalidInput => return Reference::Corrupt,
        Err(e) => panic!("flate2's reader failed on a slice: {e}"),
        Ok(_) => {}
    }
    // The stream ended (a final block). Where, and what follows, if inside the payload.
    let mut pos = decoder.total_in() as usize;
    while pos < compressed.len() {
        let mut rest = DeflateDecoder::new(&input[pos..]);
        let mut byte = Vec::new();
        match (&mut rest).take(1).read_to_end(&mut byte) {
            // Another final block, no data before it.
            Ok(_) if byte.is_empty() => {
                let used = rest.total_in() as usize;
                assert!(used > 0, "a stream ended without reading a byte");
                pos += used;
            }
            // Empty blocks to the end, the stream unfinished.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && byte.is_empty() => break,
            _ => return Reference::AfterFinalBlock,
        }
    }
    Reference::Message(out)
}

/// `inflate(compressed, max)` (with `inflate_into`'s own assertions: the output and its
/// capacity never past `max + 1`, the crate's `inflate` saying the same) against
/// [`reference`]:
///
/// - a message the reference reads in full (at most `max` bytes, no error where it
///   looked) is what `inflate` answers, byte for byte, and the other way round;
/// - data after a final block is refused as such exactly when the reference finds data or
///   an error after it;
/// - near the limit the two may stop at different places: zlib decodes the next code
///   after its output is full, and the two readers are fed in different pieces (the
///   payload then the tail, against 32 KiB reads), so one may see an invalid code the
///   other stopped short of. Hence `TooBig` and `Invalid` each go with the reference
///   being over the limit *or* corrupt; never with a message.
fn check_inflate(compressed: &[u8], max: usize) {
    let ours = fuzz::inflate(compressed, max);
    let reference = reference(compressed, max);
    match (&ours, &reference) {
        (Ok(got), Reference::Message(expected)) => {
            assert!(got.len() <= max);
            assert_eq!(got, expected, "inflate and flate2's reader differ");
        }
        (Err(InflateRefusal::TooBig), Reference::OverLimit | Reference::Corrupt) => {}
        (Err(InflateRefusal::Invalid(message)), Reference::Corrupt | Reference::OverLimit) => {
            assert!(!message.is_empty());
        }
        (Err(InflateRefusal::AfterFinalBlock), Reference::AfterFinalBlock) => {}
        (ours, reference) => panic!(
            "inflate answered {ours:?}, flate2's reader {reference:?} (max {max}, {} bytes)",
            compressed.len()
        ),
    }
}

/// A message through the compressor (level 0..=9, window 9..=15) and back:
///
/// - the compressor that has compressed other inputs before gives the same bytes as a
///   new one (each message on its own: `server_no_context_takeover`);
/// - `inflate` gives the message back when it is at most `max` bytes, `TooBig` otherwise;
/// - flate2's reader on the bytes + tail reads the message, and the stream does not end
///   (no final block: the next message may follow the sync flush);
/// - a client with a window of just `2^window` (miniz_oxide into a ring buffer of that
///   size) reads the message: no back-reference is further back than the window;
/// - the size stays within stored blocks' overhead.
fn check_round_trip(message: &[u8], level: u32, window: u8, max: usize) {
    let compressed = fuzz::compress(level, window, message);
    assert_eq!(
        compressed,
        fuzz::compress_fresh(level, window, message),
        "a reused compressor gave other bytes (level {level}, window {window})"
    );
    assert!(
        compressed.len() <= message.len() + message.len() / 1024 + 16,
        "{} bytes compressed to {}",
        message.len(),
        compressed.len()
    );
    match fuzz::inflate(&compressed, max) {
        Ok(got) => {
            assert!(
                message.len() <= max,
                "{} bytes under max {max}",
                message.len()
            );
            assert_eq!(got, message, "round trip");
        }
        Err(InflateRefusal::TooBig) => {
            assert!(
                message.len() > max,
                "{} bytes refused under max {max}",
                message.len()
            )
        }
        Err(refusal) => panic!("our own compression refused: {refusal:?}"),
    }
    let input = [&compressed[..], &TAIL].concat();
    let mut read = Vec::new();
    let e = DeflateDecoder::new(&input[..])
        .read_to_end(&mut read)
        .expect_err("the compressed message ended its stream");
    assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
    assert_eq!(read, message, "flate2's reader");
    assert_eq!(
        ring_inflate(&input, window).as_deref(),
        Ok(message),
        "window {window}"
    );
}

/// miniz_oxide, inflating into a ring buffer of `2^window` bytes.
fn ring_inflate(input: &[u8], window: u8) -> Result<Vec<u8>, String> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let size = 1usize << window;
    let mut ring = vec![0u8; size];
    let mut decompressor = DecompressorOxide::new();
    let (mut read_total, mut pos) = (0, 0);
    let mut out = Vec::new();
    loop {
        let (status, read, written) = decompress(
            &mut decompressor,
            &input[read_total..],
            &mut ring,
            pos,
            inflate_flags::TINFL_FLAG_HAS_MORE_INPUT,
        );
        out.extend_from_slice(&ring[pos..pos + written]);
        read_total += read;
        pos = (pos + written) & (size - 1);
        match status {
            TINFLStatus::Done => return Ok(out),
            TINFLStatus::HasMoreOutput => {}
            TINFLStatus::NeedsMoreInput if read_total == input.len() => return Ok(out),
            TINFLStatus::NeedsMoreInput => {}
            failed => return Err(format!("{failed:?}")),
        }
    }
}

/// The header parser on the input as `\n`-separated lines:
///
/// - no panic; the window agreed is 9..=15;
/// - the answer is `permessage-deflate; server_no_context_takeover`, then
///   `; client_no_context_takeover` when the text holds it, then
///   `; server_max_window_bits=N` (N the window) when the offer asked for one, and
///   otherwise the window is 15;
/// - an agreement needs an offer: the text holds `permessage-deflate` (in any case), and
///   `server_max_window_bits` when the answer has it;
/// - the lines are tried in order: the agreement is the first line's that has one.
fn check_negotiate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let agreed = fuzz::negotiate(&lines);
    let first = lines.iter().find_map(|line| fuzz::negotiate(&[line]));
    assert_eq!(agreed, first, "the lines were not tried in order");
    let Some((window, answer)) = agreed else {
        return;
    };
    assert!((9..=15).contains(&window), "window {window}");
    let lower = text.to_ascii_lowercase();
    let base = if answer.contains("; client_no_context_takeover") {
        assert!(lower.contains("client_no_context_takeover"), "{text:?}");
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    } else {
        "permessage-deflate; server_no_context_takeover"
    };
    assert!(lower.contains("permessage-deflate"), "{text:?}");
    if answer == base {
        assert_eq!(window, 15, "{text:?}");
    } else {
        assert_eq!(answer, format!("{base}; server_max_window_bits={window}"));
        assert!(lower.contains("server_max_window_bits"), "{text:?}");
    }
}
