//! A component's link to other processes: what a cluster attaches to a core.
//!
//! A [`Tap`] decides which routes span processes ([`claims`](Tap::claims)) and takes the
//! items published on them ([`send`](Tap::send)), after the core delivered them to its
//! own plain subscriptions. Consumer groups on a claimed route get nothing from the
//! local publish: the tap's other side hands each item back to one group, on one node
//! ([`Core::deliver`](super::Core::deliver) with [`Scope::Group`]), so that a group
//! spans processes. Items that arrive from other processes are delivered with
//! [`Scope::Plain`] or [`Scope::Group`] and never reach the tap again: no loops.
//!
//! A publish on a claimed route is all-or-nothing like any other: the tap's room is
//! [`reserve`](Tap::reserve)d first, the local deliveries are made, and only then is the
//! item sent (or the reservation [`cancel`](Tap::cancel)led, when the local part was
//! refused). A tap with no room refuses the whole publish
//! ([`TryPublishError::ClusterUnavailable`](crate::TryPublishError::ClusterUnavailable)).
//!
//! The registry tells the tap about every group, the ones that exist when it is attached
//! and the ones that come and go after ([`group_opened`](Tap::group_opened),
//! [`group_closed`](Tap::group_closed)), in the order the registry makes them.

/// Which of the subscriptions matching an item get it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    /// Every matching subscription and group (a route no tap claims).
    All,
    /// The matching subscriptions that are not consumer groups.
    Plain,
    /// Only the group with this pattern and name, if it matches.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    Group(&'a str, &'a str),
}

/// A group as the registry names it: its pattern and its name.
pub(crate) type GroupKey = (Box<str>, Box<str>);

impl Scope<'_> {
    /// Whether a route of `group` (`None`: a plain subscription) is in scope.
    #[inline]
    pub(crate) fn admits(self, group: Option<&GroupKey>) -> bool {
        match (self, group) {
            (Scope::All, _) => true,
            (Scope::Plain, group) => group.is_none(),
            (Scope::Group(pattern, name), Some((p, n))) => **p == *pattern && **n == *name,
            (Scope::Group(..), None) => false,
        }
    }
}

/// The other end of a core's link to other processes (see the module docs).
pub(crate) trait Tap<T>: Send + Sync + 'static {
    /// Whether items on `route` span processes.
    fn claims(&self, route: &str) -> bool;
    /// Takes room for one item; false if there is none (the publish is refused).
    fn reserve(&self) -> bool;
    /// Gives back room taken by [`reserve`](Self::reserve) (the publish was refused).
    fn cancel(&self);
    /// Sends an item, in the room [`reserve`](Self::reserve) took.
    fn send(&self, item: T);
    /// A group now exists on this core.
    fn group_opened(&self, pattern: &str, name: &str);
    /// A group is gone from this core (its last member left).
    fn group_closed(&self, pattern: &str, name: &str);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use crate::{
        Message, MessageQueue, MessageQueueConfig, Priority, PublishError, TryPublishError,
    };

    /// A tap that claims `x.>`, with room for `room` items, and records what it gets.
    #[derive(Default)]
    struct Recording {
        room: AtomicUsize,
        sent: Mutex<Vec<String>>,
        groups: Mutex<Vec<String>>,
    }

    impl Tap<Message> for Recording {
        fn claims(&self, route: &str) -> bool {
            route.starts_with("x.")
        }
        fn reserve(&self) -> bool {
            self.room
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
        }
        fn cancel(&self) {
            self.room.fetch_add(1, Ordering::AcqRel);
        }
        fn send(&self, item: Message) {
            self.room.fetch_add(1, Ordering::AcqRel);
            self.sent.lock().unwrap().push(item.topic().to_owned());
        }
        fn group_opened(&self, pattern: &str, name: &str) {
            self.groups
                .lock()
                .unwrap()
                .push(format!("+{pattern}/{name}"));
        }
        fn group_closed(&self, pattern: &str, name: &str) {
            self.groups
                .lock()
                .unwrap()
                .push(format!("-{pattern}/{name}"));
        }
    }

    type Got = Arc<Mutex<Vec<String>>>;

    async fn recorded(
        mq: &MessageQueue,
        pattern: &str,
        group: Option<&str>,
    ) -> (Got, crate::SubscriptionId) {
        let got: Got = Arc::default();
        let g = got.clone();
        let handler = move |m: Message| {
            g.lock().unwrap().push(m.topic().to_owned());
            std::future::ready(Ok(()))
        };
        let id = match group {
            Some(group) => mq.subscribe_group(pattern, group, handler).await,
            None => mq.subscribe(pattern, handler).await,
        };
        (got, id.unwrap())
    }

    #[actix_rt::test]
    async fn a_publish_dropped_while_it_waits_for_room_gives_the_tap_its_room_back() {
        let mq = MessageQueue::start(MessageQueueConfig {
            max_size: 1,
            ..MessageQueueConfig::default()
        })
        .unwrap();
        let tap = Arc::new(Recording {
            room: AtomicUsize::new(2),
            ..Default::default()
        });
        assert!(mq.core().attach(tap.clone()).await);
        // A handler that never finishes: the first message holds the queue's one slot.
        let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
        mq.subscribe("x.>", move |_| {
            let _ = entered_tx.send(());
            std::future::pending::<crate::HandlerResult>()
        })
        .await
        .unwrap();
        mq.publish("x.a", json!(1), Priority::Normal).await.unwrap();
        entered.recv().await.unwrap();
        mq.publish("x.b", json!(2), Priority::Normal).await.unwrap(); // waits in the mailbox
        assert_eq!(
            tap.room.load(Ordering::Acquire),
            2,
            "both sent, their room back"
        );
        // The third waits for room, holding the tap's; dropped, it gives it back.
        let waiting = mq.publish("x.c", json!(3), Priority::Normal);
        let dropped = tokio::time::timeout(std::time::Duration::from_millis(20), waiting).await;
        assert!(dropped.is_err(), "no room: the publish was still waiting");
        assert_eq!(
            tap.room.load(Ordering::Acquire),
            2,
            "the dropped publish's room came back"
        );
        assert_eq!(*tap.sent.lock().unwrap(), ["x.a", "x.b"]);
    }

    #[actix_rt::test]
    async fn a_claimed_publish_goes_to_plain_subscriptions_and_the_tap_and_groups_get_theirs_through_it(
    ) {
        let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
        let (early, _) = recorded(&mq, "x.>", Some("early")).await;
        let tap = Arc::new(Recording {
            room: AtomicUsize::new(1),
            ..Default::default()
        });
        assert!(mq.core().attach(tap.clone()).await);
        assert!(!mq.core().attach(tap.clone()).await, "once per component");
        let (plain, _) = recorded(&mq, "x.>", None).await;
        let (late, late_id) = recorded(&mq, "x.>", Some("late")).await;
        let (local, _) = recorded(&mq, "y.>", Some("local")).await;
        assert_eq!(
            *tap.groups.lock().unwrap(),
            ["+x.>/early", "+x.>/late", "+y.>/local"]
        );

        mq.publish("x.a", json!(1), Priority::Normal).await.unwrap();
        mq.publish("y.a", json!(2), Priority::Normal).await.unwrap();
        // The tap is full: the publish is refused whole, and handed back.
        tap.room.store(0, Ordering::Release);
        let err = mq
            .try_publish("x.b", json!(3), Priority::Normal)
            .unwrap_err();
        assert!(matches!(err, TryPublishError::ClusterUnavailable(ref m) if m.topic() == "x.b"));
        let err = mq
            .publish("x.b", json!(3), Priority::Normal)
            .await
            .unwrap_err();
        assert!(matches!(err, PublishError::ClusterUnavailable(_)));
        // What came back from the other side: to one group, or to the plain ones.
        let back = |topic: &str| Message::new(topic, json!(0), Priority::Normal);
        mq.core()
            .deliver(back("x.c"), Scope::Group("x.>", "late"))
            .await
            .unwrap();
        mq.core().deliver(back("x.d"), Scope::Plain).await.unwrap();
        mq.core()
            .deliver(back("x.e"), Scope::Group("x.>", "nobody"))
            .await
            .unwrap();
        // Its last member leaving discards what waits for it: let it take x.c first.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while late.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "late never got x.c");
            actix_rt::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(mq.unsubscribe(late_id).await);
        mq.stop().await;

        assert_eq!(
            *tap.sent.lock().unwrap(),
            ["x.a"],
            "only the accepted claimed publish"
        );
        assert_eq!(*plain.lock().unwrap(), ["x.a", "x.d"]);
        assert_eq!(
            *early.lock().unwrap(),
            Vec::<String>::new(),
            "groups wait for the tap's side"
        );
        assert_eq!(*late.lock().unwrap(), ["x.c"]);
        assert_eq!(
            *local.lock().unwrap(),
            ["y.a"],
            "unclaimed names are local, groups too"
        );
        // The last member of `late` left; then the stop closed the rest (in no order).
        let mut groups = tap.groups.lock().unwrap().clone();
        assert_eq!(
            groups[..4],
            ["+x.>/early", "+x.>/late", "+y.>/local", "-x.>/late"]
        );
        groups[4..].sort();
        assert_eq!(groups[4..], ["-x.>/early", "-y.>/local"]);
    }

    #[cfg(feature = "cluster")]
    #[actix_rt::test]
    async fn a_settled_delivery_says_whether_the_group_handled_it_dead_lettered_it_or_dropped_it() {
        use crate::core::Settled;
        use crate::MessageQueueConfig;
        let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
        let back = |topic: &str| Message::new(topic, json!(0), Priority::Normal);
        let core = mq.core();
        let ok = Scope::Group("ok.>", "g");
        assert_eq!(
            core.deliver_settled(back("ok.a"), ok).await.unwrap(),
            Settled::Nobody
        );
        let (got, _) = recorded(&mq, "ok.>", Some("g")).await;
        assert_eq!(
            core.deliver_settled(back("ok.a"), ok).await.unwrap(),
            Settled::Done
        );
        assert_eq!(*got.lock().unwrap(), ["ok.a"], "handled before it returned");

        // Failing on every attempt: a dead letter, which settles it too.
        let once = crate::HandlerConfig::new("bad").max_retries(0);
        mq.subscribe_group_with("bad.>", "g", once, |_| async { Err("no".into()) })
            .await
            .unwrap();
        let bad = Scope::Group("bad.>", "g");
        assert_eq!(
            core.deliver_settled(back("bad.a"), bad).await.unwrap(),
            Settled::Done
        );
        assert_eq!(mq.dead_letters().await.len(), 1);

        // Its only member leaves while the handler holds it: discarded.
        let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
        let id = mq
            .subscribe_group("slow.>", "g", move |_| {
                let _ = entered_tx.send(());
                std::future::pending::<crate::HandlerResult>()
            })
            .await
            .unwrap();
        let core2 = core.clone();
        let waiting = actix_rt::spawn(async move {
            core2
                .deliver_settled(back("slow.a"), Scope::Group("slow.>", "g"))
                .await
                .unwrap()
        });
        entered.recv().await.unwrap();
        assert!(mq.unsubscribe(id).await);
        assert_eq!(waiting.await.unwrap(), Settled::Discarded);
        mq.stop().await;
    }

    #[test]
    fn scopes() {
        let g: GroupKey = ("orders.>".into(), "routers".into());
        let other: GroupKey = ("orders.>".into(), "audit".into());
        assert!(Scope::All.admits(None) && Scope::All.admits(Some(&g)));
        assert!(Scope::Plain.admits(None) && !Scope::Plain.admits(Some(&g)));
        let only = Scope::Group("orders.>", "routers");
        assert!(only.admits(Some(&g)));
        assert!(!only.admits(Some(&other)) && !only.admits(None));
        assert!(!Scope::Group("orders.new", "routers").admits(Some(&g)));
    }
}
