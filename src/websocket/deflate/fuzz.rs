//! What the `inflater` fuzz target (`fuzz/`) and the corpus replay test call: **not part
//! of the API** (re-exported, hidden, from `tickwire::websocket::fuzz`).

use std::cell::RefCell;
use std::collections::HashMap;

use super::inflate::{inflate_into, Failure};
use super::Compressor;

/// Why [`inflate`] refused a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InflateRefusal {
    /// It inflates to more than `max` bytes.
    TooBig,
    /// A final block is followed by data, or by what is not deflate.
    AfterFinalBlock,
    /// The inflater refused the data, with its message.
    Invalid(String),
}

/// The server's inflate (`deflate::inflate`), with the kind of corruption told apart.
/// Also asserts that the crate's own `inflate` agrees.
pub fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateRefusal> {
    let mut out = Vec::new();
    let result = inflate_into(compressed, max, &mut out);
    assert!(
        out.len() <= max.saturating_add(1) && out.capacity() <= max.saturating_add(1),
        "inflate went past its limit: {} bytes in {} for max {max}",
        out.len(),
        out.capacity()
    );
    let public = super::inflate(compressed, max);
    let result = match result {
        Ok(()) => {
            assert_eq!(
                public.as_deref(),
                Ok(&out[..]),
                "inflate and inflate_into differ"
            );
            return Ok(out);
        }
        Err(Failure::TooBig) => InflateRefusal::TooBig,
        Err(Failure::AfterFinalBlock) => InflateRefusal::AfterFinalBlock,
        Err(Failure::Invalid(message)) => InflateRefusal::Invalid(message),
    };
    match (&result, public) {
        (InflateRefusal::TooBig, Err(super::InflateError::TooBig { max: m })) if m == max => {}
        (
            InflateRefusal::AfterFinalBlock | InflateRefusal::Invalid(_),
            Err(super::InflateError::Corrupt(m)),
        ) if !m.is_empty() => {}
        (result, public) => panic!("inflate_into said {result:?}, inflate {public:?}"),
    }
    Err(result)
}

thread_local! {
    /// One compressor per (level, window), reused across inputs: a state left over from
    /// one message would show as a difference with [`compress_fresh`].
    static COMPRESSORS: RefCell<HashMap<(u32, u8), Compressor>> = RefCell::new(HashMap::new());
}

/// `payload` compressed by this thread's compressor for `level` (0..=9) and
/// `window_bits` (9..=15), which has compressed other inputs before.
pub fn compress(level: u32, window_bits: u8, payload: &[u8]) -> Vec<u8> {
    COMPRESSORS.with(|cell| {
        cell.borrow_mut()
            .entry((level, window_bits))
            .or_insert_with(|| Compressor::new(level, window_bits))
            .compress(payload)
            .to_vec()
    })
}

/// `payload` compressed by a new compressor.
pub fn compress_fresh(level: u32, window_bits: u8, payload: &[u8]) -> Vec<u8> {
    Compressor::new(level, window_bits)
        .compress(payload)
        .to_vec()
}

/// What the server agrees to for these `Sec-WebSocket-Extensions` lines: the window its
/// compressor uses, and the header it answers.
pub fn negotiate(header_values: &[&str]) -> Option<(u8, String)> {
    super::negotiate(header_values.iter().copied())
        .map(|agreed| (agreed.server_max_window_bits, agreed.response_header()))
}
