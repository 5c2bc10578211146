//! permessage-deflate (RFC 7692) for the server: what is negotiated, and the two
//! transforms. Pure functions on bytes and header text; the session and the hub call them.
//!
//! - [`negotiate`] reads the client's `Sec-WebSocket-Extensions` offers and returns what
//!   was [`Agreed`], whose [`response_header`](Agreed::response_header) is the answer.
//! - [`Compressor`] turns one outbound message into the payload of a frame with RSV1 set.
//! - [`inflate()`] turns the payload of an inbound compressed message back into the
//!   message, never past `max` bytes.
//!
//! ## What is negotiated, and why
//!
//! The server always answers `server_no_context_takeover`: each message is compressed on
//! its own, with an empty window, so its compressed bytes depend on the message and the
//! window size only. A broadcast is therefore compressed **once** per window size in use,
//! and the same [`Bytes`](bytes::Bytes) go to every session that agreed on that window,
//! as the uncompressed frame already does (almost every client agrees on 15).
//!
//! Inbound, the server answers `client_no_context_takeover` when the client offered it:
//! each client message is then compressed on its own, and one inflater per thread, reset
//! after each message, serves every such session on that thread ([`inflate()`]). A client
//! that did not offer it (the defaults of Python `websockets`, Node `ws` and browsers)
//! may carry its compression context from message to message, so its session gets an
//! [`Inflater`] of its own, made at its first compressed message: a compressed session
//! that sends nothing compressed holds no inflate state (a zlib inflater is about 40 KiB
//! with its 32 KiB window). (RFC 7692 §7.1.1.2 would let the server answer
//! `client_no_context_takeover` unasked, but a client may refuse such an answer and fail
//! the connection: Node `ws` does, when told `clientNoContextTakeover: false`.)
//!
//! ## Parameters
//!
//! Parameter names and the extension name are matched ignoring ASCII case; a value may be
//! a token or a quoted string (RFC 6455 §9.1; `"10"` is `10`). A window size is a decimal
//! integer 8..=15 without leading zeros (RFC 7692 §7.1.2.1).
//!
//! | in the offer | | in the answer |
//! |---|---|---|
//! | `server_no_context_takeover` (no value) | accepted | always there |
//! | `client_no_context_takeover` (no value) | accepted | answered |
//! | `client_max_window_bits`, with or without a value 8..=15 | accepted | not answered: the inflater's 15-bit window reads any smaller window |
//! | `server_max_window_bits=N`, N in 9..=15 | accepted: the compressor uses window N | `server_max_window_bits=N` |
//! | `server_max_window_bits=8` | offer declined: zlib cannot make raw deflate with an 8-bit window | |
//! | a parameter twice, an unknown parameter, a bad value, a value where none belongs, `server_max_window_bits` without one | offer declined | |
//!
//! A client may send several offers, comma-separated and across several header lines;
//! they are tried in order and the first acceptable `permessage-deflate` one is taken
//! (RFC 7692 §5: a declined offer lets the server try the next). Other extensions
//! (`x-webkit-deflate-frame`, …) are ignored, and so is an element that does not parse
//! (up to the next comma that is not inside a quoted string). No acceptable offer: no
//! compression, and the answer carries no `Sec-WebSocket-Extensions`.
//!
//! What common clients offer, and what they get:
//!
//! | client | offer | answer |
//! |---|---|---|
//! | Chromium, Node `ws`, Python `websockets` (defaults) | `permessage-deflate; client_max_window_bits` | `permessage-deflate; server_no_context_takeover` |
//! | one that compresses each message on its own | `permessage-deflate; client_no_context_takeover` | `permessage-deflate; server_no_context_takeover; client_no_context_takeover` |
//! | one asking for a small server window | `permessage-deflate; server_max_window_bits=10` | `permessage-deflate; server_no_context_takeover; server_max_window_bits=10` |
//!
//! ## Outbound
//!
//! [`Compressor::compress`] deflates the message with a sync flush and removes the
//! `00 00 ff ff` that ends it (RFC 7692 §7.2.1). Same input, same window, same level:
//! same bytes, whatever was compressed before.
//!
//! ## Inbound limit
//!
//! [`inflate()`] appends the `00 00 ff ff` back and inflates, producing at most `max` bytes
//! (the session passes `max_message_size`): the byte after that stops it at once with
//! [`InflateError::TooBig`], so a decompression bomb (a few KiB that inflate to
//! gigabytes) costs at most `max` bytes of output plus the inflater's state, whatever its
//! ratio. Its output grows as it is produced: a small message allocates about its own
//! size, not `max`. How a final block (BFINAL), data after it and data cut inside a
//! block are read is in `inflate.rs`'s module docs: in short, a final block ends the
//! message and only empty blocks may follow it in the payload (RFC 7692 §7.2.3.4's own
//! example follows it with a `00`), and data cut inside a block is not detected.
//!
//! Tests are unit tests in each file (the items are crate-private, so no doctest).

mod compress;
mod header;
mod inflate;

#[doc(hidden)]
pub mod fuzz;

pub(crate) use compress::Compressor;
pub(crate) use inflate::{inflate, InflateError, Inflater};

use header::{Element, Value};

/// The 4 bytes that end a sync-flushed deflate stream (an empty stored block's length
/// fields): removed from each compressed message and appended back before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The extension's name in `Sec-WebSocket-Extensions`.
const EXTENSION: &str = "permessage-deflate";

/// What was agreed with one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// Our compressor's window, 9..=15: `server_max_window_bits` when the client offered
    /// it, else 15.
    pub(crate) server_max_window_bits: u8,
    /// The offer had `server_max_window_bits`: the answer repeats it (RFC 7692 §7.1.2.1:
    /// a server accepts that parameter by answering it; Python `websockets` fails the
    /// connection otherwise).
    pub(crate) answer_window_bits: bool,
    /// The offer had `client_no_context_takeover`: the answer repeats it, and the
    /// client's messages are each compressed on their own (else the session keeps an
    /// [`Inflater`] of its own).
    pub(crate) client_no_context_takeover: bool,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value to answer.
    pub(crate) fn response_header(&self) -> String {
        let mut header = format!("{EXTENSION}; server_no_context_takeover");
        if self.client_no_context_takeover {
            header.push_str("; client_no_context_takeover");
        }
        if self.answer_window_bits {
            header.push_str("; server_max_window_bits=");
            header.push_str(&self.server_max_window_bits.to_string());
        }
        header
    }
}

/// The first acceptable permessage-deflate offer among these header values (each may
/// hold several comma-separated extensions), in order.
pub(crate) fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<Agreed> {
    header_values.into_iter().find_map(|value| {
        header::elements(value).find_map(|element| match element {
            Element::Extension(offer) if offer.name.eq_ignore_ascii_case(EXTENSION) => {
                accept(offer.params())
            }
            _ => None,
        })
    })
}

/// The parameters of one permessage-deflate offer: what we agree to, or `None` to
/// decline it (also when they end in a syntax error).
fn accept<'a>(
    params: impl Iterator<Item = Option<(&'a str, Option<Value<'a>>)>>,
) -> Option<Agreed> {
    const SERVER_NO_CONTEXT: u8 = 1;
    const CLIENT_NO_CONTEXT: u8 = 2;
    const SERVER_WINDOW: u8 = 4;
    const CLIENT_WINDOW: u8 = 8;
    let mut seen = 0u8;
    let mut agreed = Agreed {
        server_max_window_bits: 15,
        answer_window_bits: false,
        client_no_context_takeover: false,
    };
    for param in params {
        let (name, value) = param?;
        let name = name.to_ascii_lowercase();
        let bit = match name.as_str() {
            "server_no_context_takeover" => SERVER_NO_CONTEXT,
            "client_no_context_takeover" => CLIENT_NO_CONTEXT,
            "server_max_window_bits" => SERVER_WINDOW,
            "client_max_window_bits" => CLIENT_WINDOW,
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match bit {
            SERVER_NO_CONTEXT | CLIENT_NO_CONTEXT if value.is_some() => return None,
            CLIENT_NO_CONTEXT => agreed.client_no_context_takeover = true,
            SERVER_WINDOW => {
                let bits = window_bits(value?)?;
                if bits < 9 {
                    return None;
                }
                agreed.server_max_window_bits = bits;
                agreed.answer_window_bits = true;
            }
            CLIENT_WINDOW => {
                if let Some(value) = value {
                    window_bits(value)?;
                }
            }
            _ => {}
        }
    }
    Some(agreed)
}

/// A window size: 8..=15, decimal, no leading zero, once unquoted.
fn window_bits(value: Value<'_>) -> Option<u8> {
    let mut digits = value.unescaped();
    let first = digits.next()?;
    let bits = match (first, digits.next(), digits.next()) {
        (b'8'..=b'9', None, _) => first - b'0',
        (b'1', Some(second @ b'0'..=b'5'), None) => 10 + second - b'0',
        _ => return None,
    };
    Some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "permessage-deflate; server_no_context_takeover";
    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn agreed(bits: u8, answer: bool) -> Option<Agreed> {
        Some(Agreed {
            server_max_window_bits: bits,
            answer_window_bits: answer,
            client_no_context_takeover: false,
        })
    }

    #[test]
    fn python_websockets_chromium_and_node_ws_defaults_agree_on_15() {
        // Python websockets' and Node ws's default offer, and Chromium's, are the same text.
        let offer = "permessage-deflate; client_max_window_bits";
        let got = negotiate([offer]);
        assert_eq!(got, agreed(15, false));
        assert_eq!(got.unwrap().response_header(), SERVER);
    }

    #[test]
    fn firefox_offer_and_a_client_window_value_are_accepted() {
        assert_eq!(negotiate(["permessage-deflate"]), agreed(15, false));
        assert_eq!(
            negotiate(["permessage-deflate; client_max_window_bits=12"]),
            agreed(15, false)
        );
        let both = negotiate([
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        ]);
        assert_eq!(
            both,
            agreed(15, false).map(|a| Agreed {
                client_no_context_takeover: true,
                ..a
            })
        );
        assert_eq!(
            both.unwrap().response_header(),
            BOTH,
            "answered when offered"
        );
    }

    #[test]
    fn a_server_window_is_used_and_answered() {
        let got = negotiate(["permessage-deflate; server_max_window_bits=10"]);
        assert_eq!(got, agreed(10, true));
        assert_eq!(
            got.unwrap().response_header(),
            format!("{SERVER}; server_max_window_bits=10")
        );
        for bits in 9..=15u8 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(negotiate([offer.as_str()]), agreed(bits, true), "{offer}");
        }
        // 15 is answered too: the offer asked for it.
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=15"])
                .unwrap()
                .response_header(),
            format!("{SERVER}; server_max_window_bits=15")
        );
    }

    #[test]
    fn window_8_is_declined_and_the_next_offer_taken() {
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=8"]),
            None
        );
        assert_eq!(
            negotiate([
                "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9"
            ]),
            agreed(9, true)
        );
        assert_eq!(
            negotiate([
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; client_max_window_bits"
            ]),
            agreed(15, false)
        );
        // The client's window may be 8: we inflate with 15, which reads it.
        assert_eq!(
            negotiate(["permessage-deflate; client_max_window_bits=8"]),
            agreed(15, false)
        );
    }

    #[test]
    fn quoted_values_are_unquoted() {
        assert_eq!(
            negotiate([r#"permessage-deflate; server_max_window_bits="10""#]),
            agreed(10, true)
        );
        assert_eq!(
            negotiate([r#"permessage-deflate; server_max_window_bits="1\1""#]),
            agreed(11, true)
        );
        assert_eq!(
            negotiate([r#"permessage-deflate; client_max_window_bits="9""#]),
            agreed(15, false)
        );
        // A quoted comma or semicolon does not split anything.
        assert_eq!(
            negotiate([r#"x-foo; a="1,2;3", permessage-deflate"#]),
            agreed(15, false)
        );
        assert_eq!(
            negotiate([r#"permessage-deflate; server_max_window_bits="1,0""#]),
            None
        );
    }

    #[test]
    fn bad_offers_are_declined() {
        for offer in [
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            "permessage-deflate; server_no_context_takeover; SERVER_NO_CONTEXT_TAKEOVER",
            "permessage-deflate; unknown",
            "permessage-deflate; unknown=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=9.0",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=foo",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            "permessage-deflate;",
            "permessage-deflate; ; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=10 11",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate client_max_window_bits",
            "permessage-deflate=1",
            "permessage-deflate-x",
            "x-webkit-deflate-frame",
            "x-webkit-deflate-frame; no_context_takeover",
            "deflate-frame",
            "",
            " , ,, ",
            "\u{7f}garbage\u{1}",
            "permessage-deflate; client_max_window_bits=\u{e9}",
        ] {
            assert_eq!(negotiate([offer]), None, "{offer:?}");
        }
    }

    #[test]
    fn garbage_and_other_extensions_are_skipped() {
        assert_eq!(
            negotiate(["x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"]),
            agreed(15, false)
        );
        assert_eq!(
            negotiate(["@@@ garbage = ; , permessage-deflate"]),
            agreed(15, false)
        );
        assert_eq!(
            negotiate([
                "permessage-deflate; unknown, permessage-deflate; server_max_window_bits=12"
            ]),
            agreed(12, true)
        );
        assert_eq!(
            negotiate([" \t, PerMessage-Deflate ; Server_Max_Window_Bits = 11 \t,"]),
            agreed(11, true)
        );
    }

    #[test]
    fn header_lines_are_read_in_order_and_the_first_acceptable_offer_wins() {
        assert_eq!(
            negotiate([
                "x-webkit-deflate-frame",
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=13, permessage-deflate",
                "permessage-deflate; server_max_window_bits=9",
            ]),
            agreed(13, true)
        );
        assert_eq!(negotiate(Vec::<&str>::new()), None);
        assert_eq!(negotiate(["", "permessage-deflate"]), agreed(15, false));
    }
}

#[cfg(test)]
mod roundtrip_tests;
