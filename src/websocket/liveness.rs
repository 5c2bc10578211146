//! Liveness: how a session finds that its client is gone or stalled, and what it does.
//!
//! ## The rule
//!
//! Each session checks it on its own timer, every tick: a twentieth of the shorter of
//! `connection_timeout` and `write_timeout`, at least 10 ms and at most 1 s (the hub's
//! metrics rate window wants a sample every second, and the hub takes it on this tick).
//! A session's actor runs whether or not its client reads (the frames it writes wait in
//! its [outlet](super::outlet), not in actix-web), so the session applies every rule
//! itself:
//!
//! - it pings the client every `heartbeat_interval`;
//! - when no frame at all arrived from the client (a pong, a ping, anything) for
//!   `connection_timeout`, it closes with 4000 (heartbeat timeout);
//! - when frames have been waiting and the socket took no byte for `write_timeout`, it
//!   closes with 4008 (slow consumer), dropping what waits;
//! - once closing (whoever decided it: the client, the hub, the session), it completes
//!   the closing handshake (RFC 6455 7.1): it hands its close frame to actix-web and
//!   reads on until the client's close arrives (or the client ends its side), then ends
//!   the connection itself (the server closes TCP first, 7.1.1). A client that takes the
//!   close frame but answers nothing gets its connection ended, in order, after
//!   [`CLOSE_REPLY_WAIT`];
//! - if the connection has not ended [`CLOSE_GRACE`] after the session started closing
//!   (a client that reads nothing never takes the close frame, and actix-web does not
//!   end a response whose bytes it cannot write; or a backlog ahead of the close frame
//!   took that long), the session cuts the TCP connection through the socket that
//!   [`on_connect`](super::on_connect) recorded (counted in `connections_reset`) and
//!   ends.
//!
//! "Handed over" is to actix-web's write buffer, not to the client: with a backlog in
//! the kernel's send buffer, [`CLOSE_REPLY_WAIT`] may run out before the client has read
//! the close frame. And once the connection is ended, Linux answers any later byte from
//! the client (a pong crossing the close, a late close reply) with a reset.
//!
//! [`Liveness`] is that rule on plain numbers; [`SessionLink`] is what a session and the
//! hub both see of a session (its close code, its clock, its socket).

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use super::socket::SessionSocket;
use crate::WebSocketServiceConfig;

/// How long a session that was asked to close, and whose actor still runs, may take
/// before its connection is cut anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long a session that sent its close frame waits for the client's before it ends
/// the connection without it.
pub const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// The shortest tick.
const MIN_TICK: Duration = Duration::from_millis(10);

/// The rule of the module docs, for one service's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Liveness {
    connection_timeout: Duration,
    heartbeat_interval: Duration,
    write_timeout: Duration,
    /// The session timer period.
    tick: Duration,
}

/// What a session's tick has to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionCheck {
    /// Nothing.
    Quiet,
    /// Ping the client: `heartbeat_interval` passed since the last ping.
    Ping,
    /// Close with 4000: nothing arrived for `connection_timeout`.
    TimedOut,
    /// Close with 4008: frames waited `write_timeout` with no byte taken.
    Stalled,
    /// End the connection in order without the client's close: the session's close
    /// frame went [`CLOSE_REPLY_WAIT`] ago.
    StopWaiting,
    /// Cut the connection and end: closing for [`CLOSE_GRACE`] already.
    Cut,
}

/// What a session's tick observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    /// Now, on the [`SessionLink`] clock (milliseconds).
    pub(crate) now_ms: u64,
    /// When the last frame arrived from the client (likewise).
    pub(crate) last_inbound: u64,
    /// Since the last ping (or the start).
    pub(crate) since_ping: Duration,
    /// How long frames have been waiting with no byte taken ([`Outlet::stalled_for`](super::outlet::Outlet::stalled_for)).
    pub(crate) stalled: Duration,
    /// How long the session has been closing, if it is.
    pub(crate) closing: Option<Duration>,
    /// How long ago its close frame was handed over, if it was.
    pub(crate) close_sent: Option<Duration>,
}

impl Liveness {
    /// The rule for `config`, on a tick of a twentieth of the shorter of
    /// `connection_timeout` and `write_timeout`, clamped to 10 ms..=`max_tick`.
    pub(crate) fn new(config: &WebSocketServiceConfig, max_tick: Duration) -> Self {
        let shortest = config.connection_timeout.min(config.write_timeout);
        Liveness {
            connection_timeout: config.connection_timeout,
            heartbeat_interval: config.heartbeat_interval,
            write_timeout: config.write_timeout,
            tick: (shortest / 20).clamp(MIN_TICK, max_tick),
        }
    }

    /// The period of each session's timer (and of the hub's metrics sample).
    pub(crate) fn tick(&self) -> Duration {
        self.tick
    }

    /// A session's check at its tick: the first rule of the module docs that applies.
    pub(crate) fn session_check(&self, seen: Observed) -> SessionCheck {
        if let Some(closing) = seen.closing {
            return if closing >= CLOSE_GRACE {
                SessionCheck::Cut
            } else if seen.close_sent >= Some(CLOSE_REPLY_WAIT) {
                SessionCheck::StopWaiting
            } else {
                SessionCheck::Quiet
            };
        }
        if seen.now_ms.saturating_sub(seen.last_inbound) >= millis(self.connection_timeout) {
            SessionCheck::TimedOut
        } else if seen.stalled >= self.write_timeout {
            SessionCheck::Stalled
        } else if seen.since_ping >= self.heartbeat_interval {
            SessionCheck::Ping
        } else {
            SessionCheck::Quiet
        }
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// What a session and the hub both see of a session.
pub(crate) struct SessionLink {
    /// The close code decided for the session (0: none yet). The first to decide wins.
    close_code: AtomicU16,
    /// When the last frame arrived from the client (`HubShared::now_ms`).
    last_inbound: AtomicU64,
    /// The connection's socket, if the server registered [`on_connect`](super::on_connect).
    socket: Option<SessionSocket>,
}

impl SessionLink {
    /// A link for a session starting at `now_ms`, with its socket if known.
    pub(crate) fn new(now_ms: u64, socket: Option<SessionSocket>) -> Self {
        SessionLink {
            close_code: AtomicU16::new(0),
            last_inbound: AtomicU64::new(now_ms),
            socket,
        }
    }

    /// Decides the close code, unless one was decided already. True if this call decided.
    pub(crate) fn claim_close(&self, code: u16) -> bool {
        self.close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The close code decided, if any.
    pub(crate) fn close_code(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    /// A frame arrived from the client.
    pub(crate) fn inbound(&self, now_ms: u64) {
        self.last_inbound.store(now_ms, Ordering::Relaxed);
    }

    /// When the last frame arrived from the client.
    pub(crate) fn last_inbound(&self) -> u64 {
        self.last_inbound.load(Ordering::Relaxed)
    }

    /// Cuts the TCP connection (reset), if the socket is known. True if it was.
    pub(crate) fn cut(&self) -> bool {
        self.socket.as_ref().is_some_and(SessionSocket::cut)
    }

    /// Ends the reading side of the TCP connection, if the socket is known: the closing
    /// handshake is over, so actix-web ends the connection at once (after writing what
    /// it holds) instead of lingering for the client to end its side.
    pub(crate) fn shut_read(&self) {
        if let Some(socket) = &self.socket {
            socket.shut_read();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_TICK: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn liveness(connection_timeout: Duration, heartbeat_interval: Duration) -> Liveness {
        let config = WebSocketServiceConfig {
            connection_timeout,
            heartbeat_interval,
            write_timeout: Duration::from_secs(3600),
            ..WebSocketServiceConfig::default()
        };
        Liveness::new(&config, MAX_TICK)
    }

    fn with_timeout(connection_timeout: Duration) -> Liveness {
        liveness(connection_timeout, connection_timeout / 2)
    }

    fn quiet(now_ms: u64) -> Observed {
        Observed {
            now_ms,
            last_inbound: 0,
            since_ping: Duration::ZERO,
            stalled: Duration::ZERO,
            closing: None,
            close_sent: None,
        }
    }

    #[test]
    fn the_tick_is_a_twentieth_of_the_shorter_timeout_from_10_ms_to_the_max() {
        let ticks = [300_000, 10_000, 1_000, 100].map(|t| with_timeout(ms(t)).tick());
        assert_eq!(ticks, [ms(1000), ms(500), ms(50), ms(10)]);
        let config = WebSocketServiceConfig::default();
        assert_eq!(Liveness::new(&config, ms(200)).tick(), ms(200));
        let short_write = WebSocketServiceConfig {
            write_timeout: ms(400),
            ..config
        };
        assert_eq!(Liveness::new(&short_write, MAX_TICK).tick(), ms(20));
    }

    #[test]
    fn a_session_pings_every_heartbeat_interval_and_times_out_after_connection_timeout() {
        let rule = liveness(ms(1000), ms(300));
        let check = |now_ms, since_ping| {
            rule.session_check(Observed {
                since_ping,
                ..quiet(now_ms)
            })
        };
        assert_eq!(check(999, ms(299)), SessionCheck::Quiet);
        assert_eq!(check(999, ms(300)), SessionCheck::Ping);
        assert_eq!(check(1000, ms(0)), SessionCheck::TimedOut);
        assert_eq!(check(1000, ms(300)), SessionCheck::TimedOut, "no ping then");
        // A frame stored after the tick read its clock.
        let late = Observed {
            last_inbound: 6,
            ..quiet(5)
        };
        assert_eq!(rule.session_check(late), SessionCheck::Quiet);
    }

    #[test]
    fn frames_waiting_write_timeout_with_no_byte_taken_make_a_slow_consumer() {
        let config = WebSocketServiceConfig {
            write_timeout: ms(500),
            ..WebSocketServiceConfig::default()
        };
        let rule = Liveness::new(&config, MAX_TICK);
        let stalled = |stalled| Observed {
            stalled,
            ..quiet(10)
        };
        assert_eq!(rule.session_check(stalled(ms(499))), SessionCheck::Quiet);
        assert_eq!(rule.session_check(stalled(ms(500))), SessionCheck::Stalled);
    }

    #[test]
    fn a_closing_session_is_cut_after_the_close_grace_and_never_timed_out_again() {
        let rule = with_timeout(ms(1000));
        let closing = |for_| Observed {
            closing: Some(for_),
            stalled: ms(60_000),
            ..quiet(60_000)
        };
        assert_eq!(
            rule.session_check(closing(CLOSE_GRACE - ms(1))),
            SessionCheck::Quiet
        );
        assert_eq!(rule.session_check(closing(CLOSE_GRACE)), SessionCheck::Cut);
    }

    #[test]
    fn a_session_whose_close_went_waits_for_the_reply_a_while_then_stops_waiting() {
        let rule = with_timeout(ms(1000));
        let sent = |closing, sent| Observed {
            closing: Some(closing),
            close_sent: sent,
            ..quiet(60_000)
        };
        let wait = CLOSE_REPLY_WAIT;
        assert_eq!(rule.session_check(sent(wait, None)), SessionCheck::Quiet);
        assert_eq!(
            rule.session_check(sent(wait, Some(wait - ms(1)))),
            SessionCheck::Quiet
        );
        assert_eq!(
            rule.session_check(sent(wait, Some(wait))),
            SessionCheck::StopWaiting
        );
        assert_eq!(
            rule.session_check(sent(CLOSE_GRACE, Some(wait))),
            SessionCheck::Cut,
            "the grace bounds the whole close"
        );
    }

    #[test]
    fn the_link_records_the_first_close_code_and_the_last_inbound_frame() {
        let link = SessionLink::new(7, None);
        assert_eq!(link.close_code(), None);
        assert!(link.claim_close(4008));
        assert!(!link.claim_close(1000), "the first to decide wins");
        assert_eq!(link.close_code(), Some(4008));
        assert_eq!(link.last_inbound(), 7);
        link.inbound(12);
        assert_eq!(link.last_inbound(), 12);
        assert!(!link.cut(), "no socket to cut");
    }
}
