//! Unit tests of `inflate.rs`: RFC 7692's examples, final blocks, cut data, limits.

use std::io::Read;

use super::*;
use crate::websocket::deflate::Compressor;

/// RFC 7692 §7.2.3.1: "Hello", one fixed-Huffman block, sync-flushed, tail removed.
const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// §7.2.3.4: "Hello" in a block with BFINAL set, then `00` (an empty stored block's start).
const HELLO_FINAL: [u8; 8] = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];

fn corrupt(payload: &[u8]) -> Failure {
    let mut out = Vec::new();
    inflate_into(payload, 1 << 20, &mut out).expect_err("corrupt data was accepted")
}

#[test]
fn rfc_7692_examples() {
    // §7.2.3.1.
    assert_eq!(inflate(&HELLO, 100).unwrap(), b"Hello");
    // §7.2.3.3: a stored block.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(inflate(&stored, 100).unwrap(), b"Hello");
    // §7.2.3.4: BFINAL, then a 00.
    assert_eq!(inflate(&HELLO_FINAL, 100).unwrap(), b"Hello");
    // §7.2.3.5: two blocks, "Hel" and "lo".
    let two = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(inflate(&two, 100).unwrap(), b"Hello");
    // §7.2.3.6: an empty message.
    assert_eq!(inflate(&[0x00], 100).unwrap(), b"");
}

#[test]
fn a_session_inflater_carries_the_context_and_is_made_at_the_first_message() {
    // RFC 7692 §7.2.3.2: "Hello" twice, the second referring to the first.
    let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
    let mut inflater = Inflater::default();
    assert!(
        !inflater.is_allocated(),
        "an idle session holds no inflate state"
    );
    assert_eq!(inflater.inflate(&first, 100), Ok(b"Hello".to_vec()));
    assert!(inflater.is_allocated());
    assert_eq!(inflater.inflate(&second, 100), Ok(b"Hello".to_vec()));
    assert_eq!(
        inflater.inflate(&second, 4),
        Err(InflateError::TooBig { max: 4 })
    );
}

#[test]
fn a_message_that_takes_over_the_context_is_corrupt() {
    // §7.2.3.2: the second "Hello" refers to the first; with client_no_context_takeover
    // no message may, and a fresh inflater finds a distance before the start.
    let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
    assert_eq!(
        corrupt(&second),
        Failure::Invalid("invalid distance too far back".to_owned())
    );
    assert_eq!(
        inflate(&second, 100),
        Err(InflateError::Corrupt(
            "invalid deflate data: invalid distance too far back".to_owned()
        ))
    );
    // Even right after the first: each message starts afresh.
    assert_eq!(inflate(&HELLO, 100).unwrap(), b"Hello");
    assert!(inflate(&second, 100).is_err());
}

#[test]
fn a_final_block_ends_the_message_and_only_empty_blocks_may_follow() {
    // Ending at the payload's end: the tail after it is ignored.
    assert_eq!(inflate(&HELLO_FINAL[..7], 100).unwrap(), b"Hello");
    // Followed by a whole empty stored block, or a final one, or several.
    for rest in [
        &[0x00, 0x00, 0x00, 0xff, 0xff][..],
        &[0x01, 0x00, 0x00, 0xff, 0xff],
        &[0x01, 0x00, 0x00, 0xff, 0xff, 0x00],
        &[0x01, 0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff],
        &[0x03, 0x00],
    ] {
        let payload = [&HELLO_FINAL[..7], rest].concat();
        assert_eq!(inflate(&payload, 100).unwrap(), b"Hello", "{rest:02x?}");
    }
    // Data after it, or what is not deflate.
    for rest in [
        &HELLO[..],
        &[0xff],
        &[0x06],
        &[0x01, 0x00, 0x00, 0xff, 0xff, 0xf2, 0x48, 0x05, 0x00],
        &[0x00, 0x01, 0x00, 0xfe, 0xff, 0x41],
    ] {
        let payload = [&HELLO_FINAL[..7], rest].concat();
        assert_eq!(corrupt(&payload), Failure::AfterFinalBlock, "{rest:02x?}");
        assert_eq!(
            inflate(&payload, 100),
            Err(InflateError::Corrupt(
                "data after the final deflate block".to_owned()
            ))
        );
    }
}

#[test]
fn data_cut_inside_a_block_is_what_inflates_from_it() {
    let message = br#"{"type":"publish","topic":"orders.new","data":{"qty":10,"price":101.5}}"#;
    let full = Compressor::new(6, 15).compress(message);
    for cut in 0..full.len() {
        let payload = &full[..cut];
        let input = [payload, &TAIL].concat();
        let mut expected = Vec::new();
        let reference = flate2::read::DeflateDecoder::new(&input[..]).read_to_end(&mut expected);
        match (inflate(payload, 1 << 20), reference) {
            // The tail read as part of the cut block, and then the stream left unfinished.
            (Ok(got), Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                assert_eq!(got, expected, "cut at {cut}")
            }
            // Cut so that the tail completes an invalid code: the reference fails too.
            (Err(InflateError::Corrupt(_)), Err(e))
                if e.kind() == std::io::ErrorKind::InvalidInput => {}
            (ours, reference) => panic!("cut at {cut}: {ours:?} but the reference {reference:?}"),
        }
    }
    // No byte: the tail alone opens a stored block it cannot close; nothing comes out.
    assert_eq!(inflate(&[], 100).unwrap(), b"");
}

#[test]
fn corrupt_data_leaves_the_inflater_ready_for_the_next_message() {
    for bad in [&[0xff, 0xff, 0xff][..], &[0x07], &[0xfc, 0x00, 0x00]] {
        assert!(
            matches!(corrupt(bad), Failure::Invalid(_)),
            "{bad:02x?} was not refused"
        );
        assert_eq!(inflate(&HELLO, 100).unwrap(), b"Hello");
    }
    // Also after a refusal for size, in the middle of the data.
    let big = Compressor::new(1, 15).compress(&[b'x'; 10_000]);
    assert_eq!(inflate(&big, 100), Err(InflateError::TooBig { max: 100 }));
    assert_eq!(inflate(&HELLO, 100).unwrap(), b"Hello");
}

#[test]
fn the_limit_is_exact() {
    let message = vec![b'a'; 5000];
    let payload = Compressor::new(1, 15).compress(&message);
    assert_eq!(inflate(&payload, 5000).unwrap(), message);
    assert_eq!(
        inflate(&payload, 4999),
        Err(InflateError::TooBig { max: 4999 })
    );
    assert_eq!(inflate(&payload, 0), Err(InflateError::TooBig { max: 0 }));
    assert_eq!(inflate(&[0x00], 0).unwrap(), b"");
    assert_eq!(inflate(&HELLO, 5).unwrap(), b"Hello");
    assert_eq!(inflate(&HELLO, 4), Err(InflateError::TooBig { max: 4 }));
    assert_eq!(inflate(&HELLO, usize::MAX).unwrap(), b"Hello");
}

#[test]
fn a_decompression_bomb_stops_at_the_limit() {
    // 50 MiB of zeros: 1 MiB compressed once, its payload repeated 50 times (each copy is
    // whole blocks that refer only to themselves, so the sequence is valid deflate).
    // The copies but the last keep their flush's tail, which the next copy's first byte
    // would otherwise complete wrongly.
    let mib = Compressor::new(9, 15).compress(&vec![0u8; 1 << 20]);
    let mut bomb = [&mib[..], &TAIL].concat().repeat(50);
    bomb.truncate(bomb.len() - TAIL.len());
    assert!(bomb.len() < 60_000, "{} bytes", bomb.len());
    let max = 1 << 20;
    let mut out = Vec::new();
    assert_eq!(inflate_into(&bomb, max, &mut out), Err(Failure::TooBig));
    // It stopped at the first byte past the limit, in no more room than that.
    assert_eq!(out.len(), max + 1);
    assert!(out.capacity() <= max + 1, "capacity {}", out.capacity());
    assert_eq!(inflate(&bomb, max), Err(InflateError::TooBig { max }));
    // A limit it fits in.
    assert_eq!(inflate(&bomb, 50 << 20).unwrap().len(), 50 << 20);
}

#[test]
fn a_small_message_allocates_about_its_size() {
    let message =
        br#"{"type":"subscribe","topic":"market.data.BTC-USD","id":"42","snapshot":true}"#;
    let payload = Compressor::new(1, 15).compress(message);
    let mut out = Vec::new();
    inflate_into(&payload, 1 << 20, &mut out).unwrap();
    assert_eq!(out, message);
    assert!(out.capacity() <= 512, "capacity {}", out.capacity());
}

#[test]
fn output_grows_by_doubling_up_to_the_limit() {
    let message = vec![7u8; 300_000];
    let payload = Compressor::new(1, 15).compress(&message);
    let mut out = Vec::new();
    inflate_into(&payload, 1 << 20, &mut out).unwrap();
    assert_eq!(out, message);
    assert!(
        out.capacity() < 2 * message.len(),
        "capacity {}",
        out.capacity()
    );
    let mut out = Vec::new();
    inflate_into(&payload, 200_000, &mut out).unwrap_err();
    assert_eq!((out.len(), out.capacity()), (200_001, 200_001));
}

#[test]
fn each_thread_has_its_own_inflater() {
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| inflate(&HELLO, 100).unwrap()))
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), b"Hello");
    }
}
