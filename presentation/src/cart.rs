//! The shopping cart. It lives in the browser, in a signed cookie, so any replica can serve
//! any request; an edited or forged cookie is ignored (the cart reads as empty).

use std::future::{Ready, ready};

use actix_web::cookie::Cookie;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use contracts::{MAX_LINES, MAX_QUANTITY, MIN_QUANTITY};

use crate::cookies::CookieKeys;
use crate::error::PageError;

pub const CART_COOKIE: &str = "strata_cart";
/// Longest sku the cart stores; the catalog's are far shorter.
const MAX_SKU_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartError {
    Full,
    BadQuantity,
    BadSku,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cart {
    lines: Vec<(String, i32)>,
}

/// Skus are kept to cookie-safe characters: `A-Z a-z 0-9 . _ -`.
pub fn valid_sku(sku: &str) -> bool {
    !sku.is_empty()
        && sku.len() <= MAX_SKU_LEN
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_quantity(quantity: i32) -> bool {
    (MIN_QUANTITY..=MAX_QUANTITY).contains(&quantity)
}

impl Cart {
    pub fn lines(&self) -> &[(String, i32)] {
        &self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Units over all lines (the number on the header's cart link).
    pub fn units(&self) -> i32 {
        self.lines.iter().map(|(_, q)| q).sum()
    }

    /// Adds to a line (capped at the largest quantity) or starts a new one.
    pub fn add(&mut self, sku: &str, quantity: i32) -> Result<(), CartError> {
        if !valid_sku(sku) {
            return Err(CartError::BadSku);
        }
        if !valid_quantity(quantity) {
            return Err(CartError::BadQuantity);
        }
        if let Some(line) = self.lines.iter_mut().find(|(s, _)| s == sku) {
            line.1 = (line.1 + quantity).min(MAX_QUANTITY);
            return Ok(());
        }
        if self.lines.len() >= MAX_LINES {
            return Err(CartError::Full);
        }
        self.lines.push((sku.to_owned(), quantity));
        Ok(())
    }

    /// Sets a line's quantity; 0 removes it. Unknown skus are ignored.
    pub fn set(&mut self, sku: &str, quantity: i32) -> Result<(), CartError> {
        if quantity == 0 {
            self.remove(sku);
            return Ok(());
        }
        if !valid_quantity(quantity) {
            return Err(CartError::BadQuantity);
        }
        if let Some(line) = self.lines.iter_mut().find(|(s, _)| s == sku) {
            line.1 = quantity;
        }
        Ok(())
    }

    pub fn remove(&mut self, sku: &str) {
        self.lines.retain(|(s, _)| s != sku);
    }

    /// `SKU:QTY|SKU:QTY`, every character cookie-safe.
    pub fn encode(&self) -> String {
        self.lines
            .iter()
            .map(|(sku, q)| format!("{sku}:{q}"))
            .collect::<Vec<_>>()
            .join("|")
    }

    /// Parses [`Cart::encode`]'s format; anything out of bounds makes the whole value invalid.
    pub fn decode(value: &str) -> Option<Cart> {
        let mut cart = Cart::default();
        if value.is_empty() {
            return Some(cart);
        }
        for part in value.split('|') {
            let (sku, quantity) = part.split_once(':')?;
            let quantity: i32 = quantity.parse().ok()?;
            if !valid_sku(sku) || !valid_quantity(quantity) || cart.lines.len() >= MAX_LINES {
                return None;
            }
            if cart.lines.iter().any(|(s, _)| s == sku) {
                return None;
            }
            cart.lines.push((sku.to_owned(), quantity));
        }
        Some(cart)
    }

    /// The cart of a request: empty when there is no cookie or it does not verify.
    pub fn of(req: &HttpRequest) -> Cart {
        let Some(keys) = req.app_data::<web::Data<CookieKeys>>() else {
            return Cart::default();
        };
        keys.read(req, CART_COOKIE)
            .and_then(|v| Cart::decode(&v))
            .unwrap_or_default()
    }

    /// The cookie that stores this cart (or deletes it when empty).
    pub fn cookie(&self, keys: &CookieKeys) -> Cookie<'static> {
        if self.is_empty() {
            keys.removal(CART_COOKIE)
        } else {
            keys.signed(CART_COOKIE, self.encode(), 30)
        }
    }
}

impl FromRequest for Cart {
    type Error = PageError;
    type Future = Ready<Result<Cart, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Cart::of(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds() {
        let mut cart = Cart::default();
        cart.add("LAMP-1", 2).unwrap();
        cart.add("MUG_2.b", 1).unwrap();
        cart.add("LAMP-1", 99).unwrap();
        assert_eq!(cart.lines()[0], ("LAMP-1".to_owned(), 100));
        assert_eq!(Cart::decode(&cart.encode()), Some(cart.clone()));
        assert_eq!(cart.add("a<b", 1), Err(CartError::BadSku));
        assert_eq!(cart.add("X", 0), Err(CartError::BadQuantity));
        assert_eq!(cart.set("X", 101), Err(CartError::BadQuantity));
        cart.set("LAMP-1", 0).unwrap();
        assert_eq!(cart.lines().len(), 1);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in ["A", "A:0", "A:101", "A:1|A:2", "A:x", "<s>:1", "A:1|"] {
            assert_eq!(Cart::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn holds_at_most_max_lines() {
        let mut cart = Cart::default();
        for i in 0..MAX_LINES {
            cart.add(&format!("SKU-{i}"), 1).unwrap();
        }
        assert_eq!(cart.add("ONE-MORE", 1), Err(CartError::Full));
        assert!(cart.encode().len() < 4000);
    }
}
