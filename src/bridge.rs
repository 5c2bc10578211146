//! Bridges between the components, as the seed's integration examples wire them:
//! EventBus → MessageQueue ([`event_bus_to_queue`]), MessageQueue → WebSocket
//! ([`queue_to_websocket`]) and EventBus → WebSocket ([`event_bus_to_websocket`]). The
//! WebSocket bridges need the `websocket` feature.
//!
//! ```
//! use serde_json::json;
//! use tickwire::{bridge, create_event, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, Priority};
//!
//! # actix_rt::System::new().block_on(async {
//! let bus = EventBus::start(EventBusConfig::default()).unwrap();
//! let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
//! bridge::event_bus_to_queue(&bus, &mq, "market.tick").await.unwrap();
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! mq.subscribe("events.market.tick", move |m| {
//!     let _ = tx.send(m);
//!     std::future::ready(Ok(()))
//! })
//! .await
//! .unwrap();
//! bus.publish(create_event("market.tick", json!({"price": 50000}), Priority::High)).await.unwrap();
//! let message = rx.recv().await.unwrap();
//! assert_eq!(message.priority(), Priority::High);
//! assert_eq!(message.data()["data"]["price"], 50000);
//! bus.stop().await;
//! mq.stop().await;
//! # });
//! ```

#![cfg_attr(
    not(feature = "websocket"),
    doc = "[`queue_to_websocket`]: crate#features"
)]
#![cfg_attr(
    not(feature = "websocket"),
    doc = "[`event_bus_to_websocket`]: crate#features"
)]

#[cfg(feature = "websocket")]
use crate::websocket::{Payload, WebSocketService};
use crate::{
    create_handler_config, EventBus, HandlerResult, Message, MessageQueue, SubscribeError,
    SubscriptionId,
};

/// Forwards every event matching `pattern` to the queue, on topic `events.<name>`, with
/// the event's priority. The message carries the event itself as a typed payload:
/// `message.payload::<Event>()` gives it back (with its own typed payload, uncopied), and
/// the message's JSON data is the event's (`Event::to_json`), built only if someone asks
/// for it. Returns the bus subscription (unsubscribe it to stop forwarding). A publish
/// that fails (queue full past `default_timeout`, or stopped) is a failure of the
/// bridge's handler: retried, then dead-lettered, like any other.
pub async fn event_bus_to_queue(
    bus: &EventBus,
    queue: &MessageQueue,
    pattern: &str,
) -> Result<SubscriptionId, SubscribeError> {
    let queue = queue.clone();
    let config = create_handler_config(format!("bridge:{pattern}->events.*"));
    bus.subscribe_with(pattern, config, move |event| {
        let queue = queue.clone();
        async move {
            let topic = format!("events.{}", event.name());
            let priority = event.priority();
            let result: HandlerResult = queue
                .publish_message(Message::typed(topic, event, priority))
                .await
                .map(|_| ())
                .map_err(|err| err.to_string().into());
            result
        }
    })
    .await
}

#[cfg(feature = "websocket")]
/// Broadcasts every message matching `pattern` to the WebSocket clients subscribed to its
/// topic, with the message's data as the frame's `data` (no copy is made of it; a typed
/// payload is serialized straight into the frame, once for all the clients). Returns
/// the queue subscription (unsubscribe it to stop forwarding). A message nobody is
/// subscribed to is simply not sent; the bridge never fails.
///
/// ```
/// use serde_json::json;
/// use tickwire::{bridge, MessageQueue, MessageQueueConfig, Priority, WebSocketService, WebSocketServiceConfig};
///
/// # actix_rt::System::new().block_on(async {
/// let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
/// let ws = WebSocketService::start(WebSocketServiceConfig::default()).unwrap();
/// bridge::queue_to_websocket(&mq, &ws, "market.>").await.unwrap();
/// mq.publish("market.data", json!({"price": 50000}), Priority::Normal).await.unwrap();
/// mq.publish("orders.new", json!({"qty": 1}), Priority::Normal).await.unwrap(); // not bridged
/// mq.stop().await; // the bridge has handled what it was given
/// // One message went through the bridge (to no client: nobody is connected).
/// let stats = mq.delivery_stats();
/// assert_eq!((stats.accepted, stats.processed), (1, 1));
/// assert_eq!(ws.get_performance_metrics().await.total_messages_sent, Some(0));
/// ws.stop().await;
/// # });
/// ```
pub async fn queue_to_websocket(
    queue: &MessageQueue,
    websocket: &WebSocketService,
    pattern: &str,
) -> Result<SubscriptionId, SubscribeError> {
    let websocket = websocket.clone();
    let config = create_handler_config(format!("bridge:{pattern}->websocket"));
    queue
        .subscribe_with(pattern, config, move |message| {
            let websocket = websocket.clone();
            async move {
                websocket.broadcast_payload(Payload::Message(message)).await;
                Ok(())
            }
        })
        .await
}

#[cfg(feature = "websocket")]
/// Broadcasts every event matching `pattern` to the WebSocket clients subscribed to the
/// event's name, with the event's data as the frame's `data`. Returns the bus
/// subscription. Like [`queue_to_websocket`], it never fails.
pub async fn event_bus_to_websocket(
    bus: &EventBus,
    websocket: &WebSocketService,
    pattern: &str,
) -> Result<SubscriptionId, SubscribeError> {
    let websocket = websocket.clone();
    let config = create_handler_config(format!("bridge:{pattern}->websocket"));
    bus.subscribe_with(pattern, config, move |event| {
        let websocket = websocket.clone();
        async move {
            websocket.broadcast_payload(Payload::Event(event)).await;
            Ok(())
        }
    })
    .await
}
