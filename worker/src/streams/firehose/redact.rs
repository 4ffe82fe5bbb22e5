//! The transform every record goes through before it is buffered (the role of Firehose's
//! Lambda transform): e-mail addresses are replaced by [`MARKER`]. A field named `email`,
//! `customer_email` or ending in `_email` loses its whole value; an address anywhere in
//! any other string is cut out of it.
//!
//! A marker rather than a hash: an unsalted hash of an address is found again by hashing
//! a list of addresses, so it would still be personal data in the archive.

use std::sync::LazyLock;

use regex_lite::Regex;
use serde_json::Value;

/// What an address becomes.
pub const MARKER: &str = "[email redacted]";

/// An address as people write them: a local part, `@`, a domain of two or more labels.
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+",
    )
    .expect("a valid pattern")
});

/// A field whose value is an address whatever it looks like.
fn is_email_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "email" || name.ends_with("_email")
}

/// Redacts `text`; returns how many addresses it held.
pub fn redact_text(text: &mut String) -> usize {
    let found = ADDRESS.find_iter(text).count();
    if found > 0 {
        *text = ADDRESS.replace_all(text, MARKER).into_owned();
    }
    found
}

/// Redacts a JSON value in place; returns how many values were redacted.
pub fn redact(value: &mut Value) -> usize {
    match value {
        Value::String(s) => redact_text(s),
        Value::Array(items) => items.iter_mut().map(redact).sum(),
        Value::Object(fields) => fields
            .iter_mut()
            .map(|(name, v)| match v {
                Value::Null => 0,
                _ if is_email_field(name) => {
                    *v = Value::String(MARKER.to_owned());
                    1
                }
                _ => redact(v),
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn email_fields_lose_their_value_whatever_it_is() {
        let mut v = json!({
            "email": "a@example.com",
            "payload": {"customer_email": "not an address", "Billing_Email": 42, "email": null},
        });
        assert_eq!(redact(&mut v), 3);
        assert_eq!(
            v,
            json!({
                "email": MARKER,
                "payload": {"customer_email": MARKER, "Billing_Email": MARKER, "email": null},
            })
        );
    }

    #[test]
    fn addresses_are_cut_out_of_any_string() {
        let mut v = json!({
            "note": "write to Jane.Doe+orders@mail.example.co.uk, or bob@example.org.",
            "lines": [{"sku": "KIT-1", "comment": "x@y.io"}],
            "total": 5,
        });
        assert_eq!(redact(&mut v), 3);
        assert_eq!(
            v["note"],
            format!("write to {MARKER}, or {MARKER}."),
            "the sentence around the addresses stays"
        );
        assert_eq!(v["lines"][0]["comment"], MARKER);
        assert_eq!(v["lines"][0]["sku"], "KIT-1");
    }

    #[test]
    fn what_is_not_an_address_stays() {
        for text in [
            "KIT-00001",
            "user@localhost",
            "@example.com",
            "a @ b.com",
            "50%",
        ] {
            let mut v = json!({ "note": text });
            assert_eq!(redact(&mut v), 0, "{text}");
            assert_eq!(v["note"], text);
        }
    }
}
