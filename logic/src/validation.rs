//! Input validation of the API's bodies, with the error codes the contract names.

use std::collections::HashSet;

use contracts::{
    MAX_LINES, MAX_PRICE_CENTS, MAX_QUANTITY, MAX_STOCK, MIN_QUANTITY, PlaceOrder, ProductPatch,
    is_valid_sku,
};

use crate::error::ApiError;

/// Whether a patch changes anything.
pub fn is_empty_patch(patch: &ProductPatch) -> bool {
    patch.name.is_none()
        && patch.description.is_none()
        && patch.price_cents.is_none()
        && patch.stock.is_none()
}

/// Checks an order request and returns it normalised (email trimmed).
pub fn order(mut order: PlaceOrder) -> Result<PlaceOrder, ApiError> {
    order.email = order.email.trim().to_owned();
    if order.email.len() > 254 || !email_address::EmailAddress::is_valid(&order.email) {
        return Err(ApiError::InvalidEmail(
            "email must be a valid address like name@example.com".to_owned(),
        ));
    }
    // A local part without a dot-separated domain is legal in RFC 5322 but not deliverable.
    if !order
        .email
        .rsplit_once('@')
        .is_some_and(|(_, d)| d.contains('.'))
    {
        return Err(ApiError::InvalidEmail(
            "email must have a domain like example.com".to_owned(),
        ));
    }
    if order.lines.is_empty() {
        return Err(ApiError::NoLines);
    }
    if order.lines.len() > MAX_LINES {
        return Err(ApiError::TooManyLines(MAX_LINES));
    }
    let mut seen = HashSet::new();
    for line in &order.lines {
        if !(MIN_QUANTITY..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(ApiError::InvalidQuantity(format!(
                "quantity of {} must be between {MIN_QUANTITY} and {MAX_QUANTITY}",
                line.sku
            )));
        }
        // A sku of the wrong shape cannot exist; no need to ask the database.
        if !is_valid_sku(&line.sku) {
            return Err(ApiError::UnknownSku(line.sku.clone()));
        }
        if !seen.insert(line.sku.as_str()) {
            return Err(ApiError::DuplicateSku(line.sku.clone()));
        }
    }
    Ok(order)
}

pub fn product_patch(patch: &ProductPatch) -> Result<(), ApiError> {
    let bad = |m: &str| Err(ApiError::InvalidProductPatch(m.to_owned()));
    let has_nul = |s: &Option<String>| s.as_ref().is_some_and(|s| s.contains('\0'));
    if has_nul(&patch.name) || has_nul(&patch.description) {
        return bad("text must not contain NUL characters");
    }
    if let Some(name) = &patch.name
        && (name.trim().is_empty() || name.chars().count() > 200)
    {
        return bad("name must be 1 to 200 characters");
    }
    if patch
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 4000)
    {
        return bad("description must be at most 4000 characters");
    }
    if patch
        .price_cents
        .is_some_and(|p| !(1..=MAX_PRICE_CENTS).contains(&p))
    {
        return bad("price_cents must be between 1 and 100000000");
    }
    if patch.stock.is_some_and(|s| !(0..=MAX_STOCK).contains(&s)) {
        return bad("stock must be between 0 and 1000000000");
    }
    Ok(())
}

/// Idempotency keys are opaque client strings of printable ASCII, 1 to 255 bytes.
pub fn idempotency_key(raw: &str) -> Result<&str, ApiError> {
    if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::InvalidIdempotencyKey(
            "Idempotency-Key must be 1 to 255 printable ASCII characters".to_owned(),
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::OrderLineRequest;

    fn req(email: &str, lines: Vec<(&str, i32)>) -> PlaceOrder {
        PlaceOrder {
            email: email.to_owned(),
            lines: lines
                .into_iter()
                .map(|(sku, quantity)| OrderLineRequest {
                    sku: sku.to_owned(),
                    quantity,
                })
                .collect(),
        }
    }

    #[test]
    fn codes() {
        let code = |o| order(o).err().map(|e| e.code());
        assert_eq!(code(req("a@example.com", vec![("A", 1)])), None);
        assert_eq!(code(req("nope", vec![("A", 1)])), Some("invalid_email"));
        assert_eq!(
            code(req("a@localhost", vec![("A", 1)])),
            Some("invalid_email")
        );
        assert_eq!(code(req("a@example.com", vec![])), Some("no_lines"));
        assert_eq!(
            code(req("a@example.com", vec![("A", 0)])),
            Some("invalid_quantity")
        );
        assert_eq!(
            code(req("a@example.com", vec![("A", 101)])),
            Some("invalid_quantity")
        );
        assert_eq!(
            code(req("a@example.com", vec![("A", 1), ("A", 2)])),
            Some("duplicate_sku")
        );
        let many: Vec<(&str, i32)> = (0..51).map(|_| ("A", 1)).collect();
        assert_eq!(code(req("a@example.com", many)), Some("too_many_lines"));
    }

    #[test]
    fn keys() {
        assert!(idempotency_key("abc-123").is_ok());
        assert!(idempotency_key("").is_err());
        assert!(idempotency_key("has space").is_err());
        assert!(idempotency_key(&"k".repeat(256)).is_err());
    }
}
