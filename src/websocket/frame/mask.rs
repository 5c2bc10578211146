//! The masking of client frames (RFC 6455 §5.3): byte `i` of the payload is XORed with
//! byte `i % 4` of the frame's masking key. Applying it twice gives the data back.

/// XORs `data` with `key` in place, as the payload of one frame (its first byte takes
/// `key[0]`). Eight bytes at a time: the key repeated twice as a `u64`, over the
/// 8-byte chunks (which the compiler vectorizes), then the last 0–7 bytes one by one.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let [a, b, c, d] = key;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (chunks, rest) = data.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
    }
    // The chunks cover a multiple of 8 bytes, so the rest starts at key[0] again.
    for (byte, k) in rest.iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};

    use super::*;

    /// The definition, byte by byte.
    fn reference(data: &[u8], key: [u8; 4]) -> Vec<u8> {
        data.iter()
            .enumerate()
            .map(|(i, byte)| byte ^ key[i % 4])
            .collect()
    }

    #[test]
    fn the_rfc_example_unmasks_to_hello() {
        // RFC 6455 §5.7: "A single-frame masked text message".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn agrees_with_the_byte_by_byte_definition_at_every_length_and_alignment() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6455);
        let mut backing = vec![0u8; 300];
        for len in 0..=256 {
            // A sub-slice at every offset 0..8: the chunks are not aligned the same way.
            let offset = len % 8;
            let data = &mut backing[offset..offset + len];
            rng.fill(data);
            let key: [u8; 4] = rng.random();
            let expected = reference(data, key);
            let original = data.to_vec();
            apply_mask(data, key);
            assert_eq!(data, &expected[..], "len {len}");
            apply_mask(data, key);
            assert_eq!(
                data,
                &original[..],
                "masking twice gives the data back, len {len}"
            );
        }
    }

    #[test]
    fn a_large_payload_matches_the_definition() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut data = vec![0u8; 100_003];
        rng.fill(&mut data[..]);
        let key = [0xde, 0xad, 0xbe, 0xef];
        let expected = reference(&data, key);
        apply_mask(&mut data, key);
        assert_eq!(data, expected);
    }
}
