//! RabbitMQ: connecting and the one declaration of the topology ([`broker`]), the
//! management API's queue figures ([`management`]), the tools of the dead-letter queue
//! ([`dlq`]), and the transactional outbox that messages leave Postgres through
//! ([`outbox`]).

pub mod broker;
pub mod dlq;
pub mod management;
pub mod outbox;
