//! RabbitMQ: connecting and the one declaration of the topology ([`broker`]), the
//! management API's queue figures ([`management`]), the tools of the dead-letter queue
//! ([`dlq`]), the inventory feed's FIFO partitions ([`fifo`]), the queues of a subscription
//! ([`subscriptions`]), and, with the `store` feature, the transactional outbox that messages leave
//! Postgres through (`outbox`).

pub mod broker;
pub mod dlq;
pub mod fifo;
pub mod management;
#[cfg(feature = "store")]
pub mod outbox;
#[cfg(feature = "store")]
pub mod relay;
pub mod subscription_dlq;
pub mod subscriptions;
