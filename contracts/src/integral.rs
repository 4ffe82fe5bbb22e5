//! Integer fields that also accept JSON numbers written with a zero fraction (`2.0`).
//!
//! JSON Schema counts `2.0` as an integer, and so do many JSON encoders (JavaScript has one
//! number type); serde's integer types do not. These helpers accept both, and still reject
//! `2.5` or anything out of range.

use serde::{Deserialize, Deserializer, de::Error};

#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

fn integral<'de, D: Deserializer<'de>>(n: Number) -> Result<i64, D::Error> {
    match n {
        Number::Int(i) => Ok(i),
        Number::Float(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f <= i64::MAX as f64 => {
            Ok(f as i64)
        }
        Number::Float(f) => Err(D::Error::custom(format!("expected an integer, found {f}"))),
    }
}

pub fn i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let n = integral::<D>(Number::deserialize(d)?)?;
    i32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is out of range")))
}

pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    integral::<D>(Number::deserialize(d)?)
}

pub fn option_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => {
            let n = integral::<D>(n)?;
            i32::try_from(n)
                .map(Some)
                .map_err(|_| D::Error::custom(format!("{n} is out of range")))
        }
    }
}

pub fn option_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => integral::<D>(n).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use crate::{OrderLineRequest, ProductPatch};

    #[test]
    fn integral_floats_are_integers() {
        let line: OrderLineRequest =
            serde_json::from_str(r#"{"sku":"A","quantity":2.0}"#).expect("2.0 is an integer");
        assert_eq!(line.quantity, 2);
        assert!(serde_json::from_str::<OrderLineRequest>(r#"{"sku":"A","quantity":2.5}"#).is_err());
        assert!(
            serde_json::from_str::<OrderLineRequest>(r#"{"sku":"A","quantity":1e12}"#).is_err()
        );
        let patch: ProductPatch = serde_json::from_str(r#"{"price_cents":150.0}"#).expect("patch");
        assert_eq!(patch.price_cents, Some(150));
        let patch: ProductPatch = serde_json::from_str(r#"{"stock":null}"#).expect("patch");
        assert_eq!(patch.stock, None);
    }
}
