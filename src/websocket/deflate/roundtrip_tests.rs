//! Compressor and inflater together, and against flate2's own stream reader.

use std::io::Read;

use super::*;

/// Deterministic bytes (xorshift64*).
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// JSON-like text that repeats itself, with some variation.
fn repetitive(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                r#"{{"type":"message","topic":"market.data","data":{{"price":{}.{}}},"seq":{i}}}"#,
                50_000 + i % 97,
                i % 10
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// flate2's stream reader on `payload` + tail (an unfinished stream: `UnexpectedEof` once
/// everything is out).
fn reference(payload: &[u8]) -> Vec<u8> {
    let input = [payload, &TAIL].concat();
    let mut out = Vec::new();
    if let Err(e) = flate2::read::DeflateDecoder::new(&input[..]).read_to_end(&mut out) {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    out
}

/// Inflates `payload` + tail with miniz_oxide into a ring buffer of `2^window_bits`
/// bytes: what a client with that window holds. A back-reference further back than that
/// reads the wrong bytes (or fails), so the output differs from the message. (zlib-rs
/// cannot check this: it keeps a 32 KiB window whatever its window bits.)
fn inflate_with_window(payload: &[u8], window_bits: u8) -> Result<Vec<u8>, String> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let input = [payload, &TAIL].concat();
    let size = 1usize << window_bits;
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

const SIZES: [usize; 6] = [0, 1, 255, 256, 64 * 1024, 1 << 20];

#[test]
fn round_trip_at_every_window_and_level() {
    for window in 9..=15u8 {
        for level in [0, 1, 6, 9] {
            let mut compressor = Compressor::new(level, window);
            for (i, &size) in SIZES.iter().enumerate() {
                // 1 MiB at the extreme windows only: the debug build is slow.
                if size == 1 << 20 && !(window == 9 || window == 15) {
                    continue;
                }
                for message in [random(size, i as u64 + 1), repetitive(size)] {
                    let payload = compressor.compress(&message);
                    let what = format!("window {window} level {level} size {size}");
                    assert!(!payload.ends_with(&TAIL) || size == 0, "{what}: tail left");
                    assert_eq!(inflate(&payload, size).unwrap(), message, "{what}");
                    if size > 0 {
                        assert_eq!(
                            inflate(&payload, size - 1),
                            Err(InflateError::TooBig { max: size - 1 }),
                            "{what}"
                        );
                    }
                    assert_eq!(reference(&payload), message, "{what}: flate2 reader");
                }
            }
        }
    }
}

#[test]
fn the_same_message_compresses_to_the_same_bytes() {
    let message = repetitive(10_000);
    for window in [9, 12, 15] {
        let mut compressor = Compressor::new(1, window);
        let first = compressor.compress(&message);
        assert_eq!(compressor.compress(&message), first);
        compressor.compress(&random(50_000, 3));
        assert_eq!(compressor.compress(&message), first);
        assert_eq!(Compressor::new(1, window).compress(&message), first);
        // compress_into gives the same bytes.
        let mut out = bytes::BytesMut::new();
        compressor.compress_into(&message, &mut out);
        assert_eq!(out, first);
    }
}

#[test]
fn repetitive_data_compresses() {
    let message = repetitive(64 * 1024);
    for level in [1, 6, 9] {
        let payload = Compressor::new(level, 15).compress(&message);
        assert!(
            payload.len() < message.len() / 5,
            "level {level}: {}",
            payload.len()
        );
    }
    // Level 0 stores: a little larger than the message.
    let stored = Compressor::new(0, 15).compress(&message);
    assert!(stored.len() > message.len() && stored.len() < message.len() + 100);
}

#[test]
fn the_compressor_keeps_within_its_window() {
    // Random blocks repeated at a distance just over each window size: a 15-bit
    // compressor refers back to them; an N-bit one must not.
    for window in 9..=14u8 {
        let unit = random((1 << window) + 100, u64::from(window));
        let message = unit.repeat(4);
        let wide = Compressor::new(9, 15).compress(&message);
        assert_eq!(inflate_with_window(&wide, 15).as_deref(), Ok(&message[..]));
        assert_ne!(
            inflate_with_window(&wide, window).as_deref(),
            Ok(&message[..]),
            "window {window}: the check does not see distances past the window"
        );
        for level in [1, 6, 9] {
            let payload = Compressor::new(level, window).compress(&message);
            assert_eq!(
                inflate_with_window(&payload, window).as_deref(),
                Ok(&message[..]),
                "window {window} level {level}"
            );
        }
    }
}

/// `cargo test --release --lib websocket::deflate::roundtrip_tests::compress_throughput -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a test: run it in release"]
fn compress_throughput() {
    let message = br#"{"type":"message","topic":"market.data.BTC-USD","data":{"symbol":"BTC-USD","bid":50123.5,"ask":50124.0,"volume":12.75},"seq":1234567,"timestamp":"2026-01-01T12:00:00.123Z"}"#;
    let mut message = message.to_vec();
    message.resize(200, b' ');
    let message = &message[..];
    for level in [1, 6] {
        let mut compressor = Compressor::new(level, 15);
        let mut total = 0usize;
        for _ in 0..10_000 {
            total += compressor.compress(message).len();
        }
        let runs = 200_000;
        let start = std::time::Instant::now();
        for _ in 0..runs {
            total += compressor.compress(std::hint::black_box(message)).len();
        }
        let per = start.elapsed().as_nanos() / runs as u128;
        let size = compressor.compress(message).len();
        println!(
            "level {level}: {} bytes -> {size} bytes, {per} ns per message ({total})",
            message.len()
        );
        // Of which the reset between messages (zlib-rs clears its 128 KiB hash table).
        let mut deflate =
            flate2::Compress::new_with_window_bits(flate2::Compression::new(level), false, 15);
        let start = std::time::Instant::now();
        for _ in 0..runs {
            deflate.reset();
            std::hint::black_box(&mut deflate);
        }
        let per = start.elapsed().as_nanos() / runs as u128;
        println!("level {level}: of which the reset {per} ns");
        let mut raw = Vec::with_capacity(1024);
        let start = std::time::Instant::now();
        for _ in 0..runs {
            deflate.reset();
            raw.clear();
            deflate
                .compress_vec(
                    std::hint::black_box(message),
                    &mut raw,
                    flate2::FlushCompress::Sync,
                )
                .unwrap();
        }
        let per = start.elapsed().as_nanos() / runs as u128;
        println!(
            "level {level}: flate2 alone (reset, compress_vec) {per} ns, {} bytes",
            raw.len()
        );
        let payload = compressor.compress(message);
        let start = std::time::Instant::now();
        for _ in 0..runs {
            total += inflate(std::hint::black_box(&payload), 1 << 20)
                .unwrap()
                .len();
        }
        let per = start.elapsed().as_nanos() / runs as u128;
        println!("level {level}: inflate {per} ns per message ({total})");
    }
}
