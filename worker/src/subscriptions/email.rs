//! Email deliveries over SMTP (lettre, async on tokio): an `order.fulfilled` event becomes
//! an order confirmation mail, text and HTML; any other event a plain notification; a
//! pending subscription gets its confirmation request. Mails go to the subscription's
//! endpoint, each carrying the event id in `Strata-Event-Id` and its Message-ID.

use askama::Template;
use chrono::SecondsFormat;
use contracts::money;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::event::Event;
use super::settings::SubscriptionSettings;
use super::store::Subscription;

/// The mail transport of the process; without `SMTP_URL` every email delivery fails.
#[derive(Clone)]
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(settings: &SubscriptionSettings) -> anyhow::Result<Self> {
        let from: Mailbox = settings
            .smtp_from
            .parse()
            .map_err(|e| anyhow::anyhow!("SMTP_FROM is not a mail address: {e}"))?;
        let transport = match settings.smtp_url()? {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?
                    .timeout(Some(settings.timeout()))
                    .build(),
            ),
            None => None,
        };
        Ok(Mailer { transport, from })
    }

    /// Sends the mail of `event` to the subscription's address.
    pub async fn deliver(&self, subscription: &Subscription, event: &Event) -> Result<(), String> {
        let mail = event_mail(subscription, event)?;
        let message = self
            .builder(subscription)?
            .subject(mail.subject)
            .message_id(Some(format!("<{}.{}@strata>", event.id, subscription.id)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Strata-Event-Id"),
                event.id.to_string(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Strata-Event-Type"),
                event.event_type.clone(),
            ));
        let message = match mail.html {
            Some(html) => message.multipart(MultiPart::alternative_plain_html(mail.text, html)),
            None => message.body(mail.text),
        }
        .map_err(|e| format!("building the mail: {e}"))?;
        self.send(message).await
    }

    /// Sends the confirmation request with its link.
    pub async fn confirm(
        &self,
        subscription: &Subscription,
        confirm_url: &str,
    ) -> Result<(), String> {
        let text = ConfirmationRequest {
            topic: subscription.topic.as_str(),
            confirm_url,
            subscription_id: subscription.id,
        }
        .render()
        .map_err(|e| format!("rendering the mail: {e}"))?;
        let message = self
            .builder(subscription)?
            .subject(format!(
                "Confirm your subscription to Strata's {} topic",
                subscription.topic.as_str()
            ))
            .body(text)
            .map_err(|e| format!("building the mail: {e}"))?;
        self.send(message).await
    }

    fn builder(
        &self,
        subscription: &Subscription,
    ) -> Result<lettre::message::MessageBuilder, String> {
        let to: Mailbox = subscription
            .endpoint
            .parse()
            .map_err(|e| format!("invalid endpoint: {e}"))?;
        Ok(Message::builder().from(self.from.clone()).to(to))
    }

    async fn send(&self, message: Message) -> Result<(), String> {
        let Some(transport) = &self.transport else {
            return Err("SMTP_URL is not set".to_owned());
        };
        transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| format!("SMTP: {e}"))
    }
}

/// A mail's subject and parts.
struct Mail {
    subject: String,
    text: String,
    html: Option<String>,
}

#[derive(Deserialize)]
struct OrderPayload {
    order_id: Uuid,
    total_cents: i64,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    lines: Vec<LinePayload>,
}

#[derive(Deserialize)]
struct LinePayload {
    sku: String,
    #[serde(default)]
    name: String,
    quantity: i64,
    unit_price_cents: i64,
}

struct Line {
    sku: String,
    name: String,
    quantity: i64,
    unit_price: String,
    total: String,
}

struct Order {
    order_id: Uuid,
    customer: Option<String>,
    lines: Vec<Line>,
    total: String,
}

#[derive(Template)]
#[template(path = "order_confirmation.txt")]
struct OrderText<'a> {
    order: &'a Order,
    topic: &'a str,
    event_id: Uuid,
}

#[derive(Template)]
#[template(path = "order_confirmation.html")]
struct OrderHtml<'a> {
    order: &'a Order,
    topic: &'a str,
    event_id: Uuid,
}

#[derive(Template)]
#[template(path = "notification.txt")]
struct Notification<'a> {
    event_type: &'a str,
    topic: &'a str,
    timestamp: String,
    attributes: String,
    message: String,
    event_id: Uuid,
}

#[derive(Template)]
#[template(path = "confirmation_request.txt")]
struct ConfirmationRequest<'a> {
    topic: &'a str,
    confirm_url: &'a str,
    subscription_id: Uuid,
}

fn order(payload: OrderPayload) -> Order {
    let lines = payload
        .lines
        .into_iter()
        .map(|l| Line {
            name: if l.name.is_empty() {
                l.sku.clone()
            } else {
                l.name
            },
            sku: l.sku,
            quantity: l.quantity,
            unit_price: money(l.unit_price_cents),
            total: money(l.unit_price_cents.saturating_mul(l.quantity)),
        })
        .collect();
    Order {
        order_id: payload.order_id,
        customer: payload.email.filter(|e| !e.is_empty()),
        lines,
        total: money(payload.total_cents),
    }
}

fn event_mail(subscription: &Subscription, event: &Event) -> Result<Mail, String> {
    let topic = subscription.topic.as_str();
    let render = |e: askama::Error| format!("rendering the mail: {e}");
    if event.event_type == "order.fulfilled"
        && let Ok(payload) = OrderPayload::deserialize(&event.payload)
    {
        let order = order(payload);
        let text = OrderText {
            order: &order,
            topic,
            event_id: event.id,
        }
        .render()
        .map_err(render)?;
        let html = OrderHtml {
            order: &order,
            topic,
            event_id: event.id,
        }
        .render()
        .map_err(render)?;
        return Ok(Mail {
            subject: format!("Your Strata order {} is confirmed", order.order_id),
            text,
            html: Some(html),
        });
    }
    let text = Notification {
        event_type: &event.event_type,
        topic,
        timestamp: event
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        attributes: pretty(&event.attributes),
        message: pretty(&event.payload),
        event_id: event.id,
    }
    .render()
    .map_err(render)?;
    Ok(Mail {
        subject: format!("Strata {topic}: {}", event.event_type),
        text,
        html: None,
    })
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
