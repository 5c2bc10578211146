//! Liveness: how the service finds the sessions that are gone, and what it does with them.
//!
//! ## The rule
//!
//! Each session and the hub check it on the same tick: `connection_timeout / 20`, at
//! least 10 ms and at most 1 s (the hub's metrics rate window wants a sample every
//! second, and the hub takes it on this tick).
//!
//! - **The session** (its actor's timer) pings the client every `heartbeat_interval`.
//!   When no frame at all arrived from the client (a pong, a ping, anything) for
//!   `connection_timeout`, it closes with 4000 (heartbeat timeout).
//! - **The hub's sweep** watches for sessions that cannot do that themselves: actix-web
//!   runs a session's actor only while the connection takes bytes, so a client that
//!   stops reading freezes its session. An open session from which nothing arrived for
//!   `connection_timeout` plus a tick (so that a session that runs closes itself first)
//!   is closed by the hub with 4000, and is out of the routing at once.
//! - **A session asked to close** (by the hub: 4000, 4008 slow consumer, 1000
//!   disconnect, 1001 stop) has its TCP connection cut (reset, through the socket that
//!   [`on_connect`](super::on_connect) recorded) and is forgotten by the hub, counted in
//!   `connections_reset`: after the [stuck grace](Liveness::stuck_grace) (three ticks, at
//!   least 250 ms) if its actor has not run since it was asked, and after
//!   [`CLOSE_GRACE`] in any case.
//!
//! [`Liveness`] is that rule on plain numbers; [`SessionLink`] is what a session and the
//! hub both see of it (its clocks, its close code, its socket).

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::socket::SessionSocket;
use crate::WebSocketServiceConfig;

/// How long a session that was asked to close, and whose actor still runs, may take
/// before its connection is cut anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The shortest tick.
const MIN_TICK: Duration = Duration::from_millis(10);
/// The shortest stuck grace.
const MIN_STUCK_GRACE: Duration = Duration::from_millis(250);

/// The rule of the module docs, for one service's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Liveness {
    connection_timeout: Duration,
    heartbeat_interval: Duration,
    /// The sweep and session timer period.
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
}

/// When a session was asked to close, on both clocks: the hub's `Instant`, and the
/// milliseconds of [`SessionLink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Closing {
    pub(crate) at: Instant,
    pub(crate) at_ms: u64,
}

/// What the hub's sweep reads of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    /// When it was asked to close, if it was.
    pub(crate) closing: Option<Closing>,
    /// When the last frame arrived from the client ([`SessionLink`] milliseconds).
    pub(crate) last_inbound: u64,
    /// When its actor last ran (likewise).
    pub(crate) last_alive: u64,
}

/// What the hub's sweep does with one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing: it is alive, or closing within its grace.
    Keep,
    /// Close it with 4000: open, and nothing arrived for `connection_timeout` plus a tick.
    TimedOut,
    /// Cut its connection and forget it: asked to close, and not gone in time.
    Cut,
}

impl Liveness {
    /// The rule for `config`, on a tick of `connection_timeout / 20` clamped to
    /// 10 ms..=`max_tick`.
    pub(crate) fn new(config: &WebSocketServiceConfig, max_tick: Duration) -> Self {
        Liveness {
            connection_timeout: config.connection_timeout,
            heartbeat_interval: config.heartbeat_interval,
            tick: (config.connection_timeout / 20).clamp(MIN_TICK, max_tick),
        }
    }

    /// The period of the hub's sweep and of each session's timer.
    pub(crate) fn tick(&self) -> Duration {
        self.tick
    }

    /// How long a session asked to close may go without its actor running before its
    /// connection is cut: three ticks, at least 250 ms.
    pub(crate) fn stuck_grace(&self) -> Duration {
        (self.tick * 3).max(MIN_STUCK_GRACE)
    }

    /// A session's own check at its tick, `now_ms` on the [`SessionLink`] clock, with
    /// `since_ping` elapsed since its last ping (or since it started).
    pub(crate) fn session_check(
        &self,
        now_ms: u64,
        last_inbound: u64,
        since_ping: Duration,
    ) -> SessionCheck {
        if now_ms.saturating_sub(last_inbound) >= millis(self.connection_timeout) {
            SessionCheck::TimedOut
        } else if since_ping >= self.heartbeat_interval {
            SessionCheck::Ping
        } else {
            SessionCheck::Quiet
        }
    }

    /// The hub's check of one session at its sweep, at `now` (`now_ms` on the
    /// [`SessionLink`] clock).
    pub(crate) fn sweep_check(&self, now: Instant, now_ms: u64, seen: Seen) -> Verdict {
        match seen.closing {
            Some(Closing { at, at_ms }) => {
                let waited = now.duration_since(at);
                let ran_since = seen.last_alive > at_ms;
                if (!ran_since && waited >= self.stuck_grace()) || waited >= CLOSE_GRACE {
                    Verdict::Cut
                } else {
                    Verdict::Keep
                }
            }
            None if now_ms.saturating_sub(seen.last_inbound) > self.idle_limit() => {
                Verdict::TimedOut
            }
            None => Verdict::Keep,
        }
    }

    /// Milliseconds of silence after which the hub closes an open session.
    fn idle_limit(&self) -> u64 {
        millis(self.connection_timeout + self.tick)
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// What a session and the hub both see of it.
pub(crate) struct SessionLink {
    /// The close code decided for the session (0: none yet). The first to decide wins.
    close_code: AtomicU16,
    /// When the last frame arrived from the client (`HubShared::now_ms`).
    last_inbound: AtomicU64,
    /// When the session's actor last ran.
    last_alive: AtomicU64,
    /// The connection's socket, if the server registered [`on_connect`](super::on_connect).
    socket: Option<SessionSocket>,
}

impl SessionLink {
    /// A link for a session starting at `now_ms`, with its socket if known.
    pub(crate) fn new(now_ms: u64, socket: Option<SessionSocket>) -> Self {
        SessionLink {
            close_code: AtomicU16::new(0),
            last_inbound: AtomicU64::new(now_ms),
            last_alive: AtomicU64::new(now_ms),
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
        self.last_alive.store(now_ms, Ordering::Relaxed);
    }

    /// The session's actor ran.
    pub(crate) fn alive(&self, now_ms: u64) {
        self.last_alive.store(now_ms, Ordering::Relaxed);
    }

    /// When the last frame arrived from the client.
    pub(crate) fn last_inbound(&self) -> u64 {
        self.last_inbound.load(Ordering::Relaxed)
    }

    /// What the hub's sweep reads of the session, `closing` being the hub's own record.
    pub(crate) fn seen(&self, closing: Option<Closing>) -> Seen {
        Seen {
            closing,
            last_inbound: self.last_inbound(),
            last_alive: self.last_alive.load(Ordering::Relaxed),
        }
    }

    /// Cuts the TCP connection (reset), if the socket is known. True if it was.
    pub(crate) fn cut(&self) -> bool {
        self.socket.as_ref().is_some_and(SessionSocket::cut)
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
            ..WebSocketServiceConfig::default()
        };
        Liveness::new(&config, MAX_TICK)
    }

    fn with_timeout(connection_timeout: Duration) -> Liveness {
        liveness(connection_timeout, connection_timeout / 2)
    }

    #[test]
    fn the_tick_is_a_twentieth_of_the_timeout_from_10_ms_to_the_max() {
        let ticks = [300_000, 10_000, 1_000, 100].map(|t| with_timeout(ms(t)).tick());
        assert_eq!(ticks, [ms(1000), ms(500), ms(50), ms(10)]);
        let config = WebSocketServiceConfig::default();
        assert_eq!(Liveness::new(&config, ms(200)).tick(), ms(200));
    }

    #[test]
    fn the_stuck_grace_is_three_ticks_and_at_least_250_ms() {
        let graces = [300_000, 2_000, 1_000].map(|t| with_timeout(ms(t)).stuck_grace());
        assert_eq!(graces, [ms(3000), ms(300), ms(250)]);
    }

    #[test]
    fn a_session_pings_every_heartbeat_interval_and_times_out_after_connection_timeout() {
        let rule = liveness(ms(1000), ms(300));
        let check = |now_ms, since_ping| rule.session_check(now_ms, 0, since_ping);
        assert_eq!(check(999, ms(299)), SessionCheck::Quiet);
        assert_eq!(check(999, ms(300)), SessionCheck::Ping);
        assert_eq!(check(1000, ms(0)), SessionCheck::TimedOut);
        assert_eq!(check(1000, ms(300)), SessionCheck::TimedOut, "no ping then");
        // A frame stored after the tick read its clock.
        assert_eq!(rule.session_check(5, 6, ms(0)), SessionCheck::Quiet);
    }

    #[test]
    fn the_hub_times_out_an_open_session_a_tick_after_the_session_would() {
        let rule = with_timeout(ms(1000)); // tick 50 ms
        let now = Instant::now();
        let open = |last_inbound| Seen {
            closing: None,
            last_inbound,
            last_alive: last_inbound,
        };
        assert_eq!(rule.sweep_check(now, 1050, open(0)), Verdict::Keep);
        assert_eq!(rule.sweep_check(now, 1051, open(0)), Verdict::TimedOut);
        assert_eq!(rule.sweep_check(now, 1051, open(2)), Verdict::Keep);
        assert_eq!(rule.sweep_check(now, 3, open(9)), Verdict::Keep);
    }

    #[test]
    fn a_closing_session_whose_actor_stopped_running_is_cut_after_the_stuck_grace() {
        let rule = with_timeout(ms(1000)); // stuck grace 250 ms
        let at = Instant::now();
        let closing = |last_alive| Seen {
            closing: Some(Closing { at, at_ms: 100 }),
            last_inbound: 0,
            last_alive,
        };
        // Not run since it was asked (last alive at the same millisecond, or before).
        assert_eq!(
            rule.sweep_check(at + ms(249), 349, closing(100)),
            Verdict::Keep
        );
        assert_eq!(
            rule.sweep_check(at + ms(250), 350, closing(100)),
            Verdict::Cut
        );
        assert_eq!(
            rule.sweep_check(at + ms(250), 350, closing(40)),
            Verdict::Cut
        );
        // Silent for far longer than the timeout: closing, it is never timed out again.
        assert_eq!(
            rule.sweep_check(at + ms(10), 60_000, closing(101)),
            Verdict::Keep
        );
    }

    #[test]
    fn a_closing_session_whose_actor_runs_is_cut_after_the_close_grace() {
        let rule = with_timeout(ms(1000));
        let at = Instant::now();
        let ran = Seen {
            closing: Some(Closing { at, at_ms: 100 }),
            last_inbound: 0,
            last_alive: 101,
        };
        assert_eq!(rule.sweep_check(at + ms(250), 350, ran), Verdict::Keep);
        let grace = CLOSE_GRACE - ms(1);
        assert_eq!(rule.sweep_check(at + grace, 5099, ran), Verdict::Keep);
        assert_eq!(rule.sweep_check(at + CLOSE_GRACE, 5100, ran), Verdict::Cut);
    }

    #[test]
    fn the_link_records_the_first_close_code_and_both_clocks() {
        let link = SessionLink::new(7, None);
        assert_eq!(link.close_code(), None);
        assert!(link.claim_close(4008));
        assert!(!link.claim_close(1000), "the first to decide wins");
        assert_eq!(link.close_code(), Some(4008));
        link.alive(9);
        let closing = Some(Closing {
            at: Instant::now(),
            at_ms: 8,
        });
        let seen = link.seen(closing);
        assert_eq!((seen.last_inbound, seen.last_alive), (7, 9));
        link.inbound(12);
        assert_eq!(
            (link.seen(None).last_inbound, link.seen(None).last_alive),
            (12, 12)
        );
        assert!(!link.cut(), "no socket to cut");
    }
}
