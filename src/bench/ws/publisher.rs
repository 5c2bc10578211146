//! The publisher of the fan-out scenarios: `POST /api/publish` requests at an offered
//! rate, open loop, pipelined on one keep-alive connection (raw HTTP/1.1 on a blocking
//! socket, `TCP_NODELAY`).
//!
//! Request `i` is due at `start + i / rate`; the thread sleeps until then with the
//! operating system's timer (not a runtime's, whose granularity is a millisecond), and
//! the request carries its due time (`data.sent`, Unix ns). A second thread reads the
//! responses (any that is not 2xx fails the run). So a stall anywhere, in the generator
//! or in the server, shows in the latency instead of delaying the measurement.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The topic the fan-out clients subscribe to and the publisher publishes on.
pub(super) const TOPIC: &str = "bench.ws";

/// `len` bytes of quotes, the same for every message of a run: a few symbols with
/// prices and sizes whose digits vary, as market data has (`BTCUSD 50012.25x0.40 ...`).
/// Deflate finds the symbols and separators again but not the digits, so it shrinks
/// this about as much as it shrinks market data, not to nothing as it would a run of
/// one letter.
pub(super) fn pad(len: usize) -> String {
    const SYMBOLS: [&str; 4] = ["BTCUSD", "ETHUSD", "SOLUSD", "XRPUSD"];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        // xorshift64: fixed, so that every run publishes the same bytes.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut text = String::with_capacity(len + 32);
    while text.len() < len {
        let symbol = SYMBOLS[next(4) as usize];
        let _ = write!(
            text,
            "{symbol} {}.{:02}x{}.{:02} ",
            10_000 + next(90_000),
            next(100),
            next(10),
            next(100)
        );
    }
    text.truncate(len);
    text
}

/// When and what to publish.
pub(super) struct Schedule<'a> {
    /// Requests in all.
    pub(super) total: u64,
    /// Between two due times.
    pub(super) period: Duration,
    /// The first due time.
    pub(super) start: Instant,
    /// `start` as Unix time, ns.
    pub(super) start_unix: u64,
    /// `data.pad` of every message.
    pub(super) pad: &'a str,
}

/// Sends the schedule's `POST /api/publish` requests to `host`, pipelined on one
/// connection: request `i` is written whole at `start + i × period` and carries that due
/// time. A second thread reads the responses; any that is not 2xx is the error returned.
pub(super) fn publish_open_loop(host: &str, schedule: &Schedule<'_>) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(host)?;
    stream.set_nodelay(true)?;
    // A safety net: the responses come within milliseconds.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let responses = {
        let stream = stream.try_clone()?;
        let total = schedule.total;
        std::thread::Builder::new()
            .name("bench-ws-responses".into())
            .spawn(move || read_responses(stream, total))?
    };
    let mut request = Vec::with_capacity(512);
    let mut sent = Ok(());
    for i in 0..schedule.total {
        let offset = schedule.period.mul_f64(i as f64);
        if let Some(wait) = (schedule.start + offset).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let body = format!(
            r#"{{"topic":"{TOPIC}","data":{{"sent":{},"pad":"{}"}}}}"#,
            schedule.start_unix + offset.as_nanos() as u64,
            schedule.pad
        );
        request.clear();
        write!(
            request,
            "POST /api/publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        if let Err(err) = stream.write_all(&request) {
            sent = Err(err);
            // Unblock the response reader: no more responses are coming.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            break;
        }
    }
    let read = responses
        .join()
        .map_err(|_| std::io::Error::other("the response reader panicked"))?;
    // The server's reason, when there is one, says more than a failed write.
    read.and(sent)
}

/// Reads `total` HTTP/1.1 responses; an error for the first that is not 2xx.
fn read_responses(stream: TcpStream, total: u64) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    for n in 0..total {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other(format!(
                "the server closed the publishing connection after {n} of {total} responses"
            )));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Err(std::io::Error::other("the server closed mid-response"));
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().map_err(std::io::Error::other)?;
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if !(200..300).contains(&status) {
            return Err(std::io::Error::other(format!(
                "publish {n} refused: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pad;

    #[test]
    fn the_pad_is_fixed_quotes() {
        let p = pad(200);
        assert_eq!(p.len(), 200);
        assert!(p.starts_with("BTCUSD ") || p.contains("USD "), "{p}");
        assert!(p.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{p}");
        assert_eq!(p, pad(200));
    }
}
