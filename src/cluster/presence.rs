//! A node's hold on its name. Two processes under one name would each take the other's
//! messages for their own (the origin in the `Tickwire` header says who published) and
//! drop them, silently: so a node asks, when it connects, whether one of its name is
//! there, and answers that question for as long as it is connected.
//!
//! The question is a NATS request on `<prefix>.node.<hash of the name>`
//! ([`wire::node_subject`]): no responder at all (the server says so at once) means the
//! name is free; an answer with the exact name (two names of one hash are still two)
//! means it is taken, and says by whom. Anything else on that subject (a debugging
//! `nats sub '>'`, a stream that captures it) is no holder: silence for [`PATIENCE`] is
//! taken as free, with a warning. A node that closes gives its name up before
//! [`Cluster::close`](super::Cluster::close) returns.
//!
//! The check is best effort, for the config copied with its `node`, not a lock: two
//! processes that connect under one name at the same instant, or one that connects
//! while the holder's connection is down, may both hold it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, StatusCode, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::wire;

/// How long a node waits for an answer about its name, at most (and at most its
/// `connect_timeout`): a holder answers within a round trip.
const PATIENCE: Duration = Duration::from_secs(2);

/// Why a name could not be claimed.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Held by another process: who, as it says.
    Taken(String),
    /// A subscription (the question's inbox, or the name's) failed.
    Subscribe { subject: String, reason: String },
    /// The question could not be sent.
    Unsent(String),
}

/// What a node answers: its name, then who it is.
fn answer(node: &str) -> Bytes {
    let host = super::config::host_name().unwrap_or_else(|| "an unnamed host".into());
    Bytes::from(format!(
        "{node}\nthe process with pid {} on {host}",
        std::process::id()
    ))
}

/// Who holds `node`, if `payload` is its holder's answer.
fn holder<'a>(payload: &'a [u8], node: &str) -> Option<&'a str> {
    let (name, holder) = std::str::from_utf8(payload).ok()?.split_once('\n')?;
    (name == node).then_some(holder)
}

/// Asks (on `client`) whether a node of this name is connected, waiting up to
/// [`PATIENCE`] or `patience`; if none is, subscribes (on `groups`) to answer for it
/// from now on.
pub(crate) async fn claim(
    client: &Client,
    groups: &Client,
    prefix: &str,
    node: &str,
    patience: Duration,
) -> Result<Subscriber, Refused> {
    let subject = wire::node_subject(prefix, node);
    let subscribe_failed = |subject: &str, err: async_nats::SubscribeError| Refused::Subscribe {
        subject: subject.to_owned(),
        reason: err.to_string(),
    };
    // An inbox of our own rather than `request`: every answer is read, not the first
    // only, and silence is not an error.
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|err| subscribe_failed(&inbox, err))?;
    client
        .publish_with_reply(subject.clone(), inbox, Bytes::new())
        .await
        .map_err(|err| Refused::Unsent(err.to_string()))?;
    client
        .flush()
        .await
        .map_err(|err| Refused::Unsent(err.to_string()))?;
    let deadline = tokio::time::Instant::now() + patience.min(PATIENCE);
    loop {
        match tokio::time::timeout_at(deadline, answers.next()).await {
            Ok(Some(reply)) if reply.status == Some(StatusCode::NO_RESPONDERS) => break,
            Ok(Some(reply)) => {
                if let Some(holder) = holder(&reply.payload, node) {
                    return Err(Refused::Taken(holder.to_owned()));
                }
            }
            Ok(None) => return Err(Refused::Unsent("the connection closed".into())),
            Err(_) => {
                tracing::warn!(%node, %subject, "cluster: something listens on the node's name and does not answer; taking the name as free");
                break;
            }
        }
    }
    groups
        .subscribe(subject.clone())
        .await
        .map_err(|err| subscribe_failed(&subject, err))
}

/// Answers every question for this node's name until `release`, then unsubscribes: the
/// name is free once the server has that (a round trip on `groups` after this returns
/// proves it). A release dropped unsent (the cluster dropped without `close`, its
/// connections still up) does not give the name up.
pub(crate) async fn hold(
    groups: Client,
    node: Arc<str>,
    mut asked: Subscriber,
    mut release: oneshot::Receiver<()>,
) {
    let answer = answer(&node);
    loop {
        tokio::select! {
            question = asked.next() => match question {
                Some(question) => {
                    if let Some(reply) = question.reply {
                        let _ = groups.publish(reply, answer.clone()).await;
                    }
                }
                None => return,
            },
            Ok(()) = &mut release => break,
        }
    }
    let _ = asked.unsubscribe().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_with_the_exact_name_is_a_holder() {
        let answer = answer("gw-1");
        let text = std::str::from_utf8(&answer).unwrap();
        assert!(text.starts_with("gw-1\nthe process with pid "), "{text}");
        assert_eq!(
            holder(&answer, "gw-1"),
            Some(text.split_once('\n').unwrap().1)
        );
        assert_eq!(holder(&answer, "gw-2"), None);
        assert_eq!(holder(&answer, "gw"), None);
        assert_eq!(holder(b"gw-1", "gw-1"), None, "no holder line");
        assert_eq!(
            holder(b"{\"stream\":\"t-durable\",\"seq\":1}", "gw-1"),
            None
        );
        assert_eq!(holder(b"\xff\ngw-1", "gw-1"), None, "not UTF-8");
    }
}
