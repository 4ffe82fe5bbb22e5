//! Filter policies in SNS's syntax, on message attributes: a subscription gets an event only
//! when its policy matches the event's [`Attributes`].
//!
//! A policy is a JSON object of attribute names to arrays of conditions. Every key must
//! match (AND); one of a key's conditions is enough (OR). A condition is:
//! - a string, number or boolean: equal to the attribute (numbers compared as numbers);
//! - `{"prefix": "Kit"}`, `{"suffix": ".com"}`, `{"equals-ignore-case": "kitchen"}`;
//! - `{"numeric": [">=", 10000, "<", 20000]}`: one comparison (`=`, `<`, `<=`, `>`,
//!   `>=`) or a range (a lower bound `>`/`>=`, then an upper bound `<`/`<=`);
//! - `{"anything-but": ["XX", "YY"]}` (or one value, or `{"prefix": "..."}`): present and
//!   none of them;
//! - `{"exists": true}` / `{"exists": false}`: the attribute is present / absent.
//!
//! An array attribute (`category`, `sku`) matches a condition when any of its elements
//! does, as in SNS (so `anything-but` on an array matches when some element is none of the
//! values). A missing attribute matches only `{"exists": false}`.
//!
//! Limits, as SNS's: at most [`MAX_KEYS`] keys, at most [`MAX_COMBINATIONS`] combinations
//! (the product of the numbers of conditions of the keys), numbers within ±1e9. Payload
//! (nested-key) filtering is not supported: the policy tests attributes only.

use std::fmt;

use serde_json::Value;

use crate::messages::Attributes;

/// Most keys (attribute names) in a policy.
pub const MAX_KEYS: usize = 5;
/// Most combinations of conditions: the product, over the keys, of their conditions.
pub const MAX_COMBINATIONS: usize = 150;
/// Bound of the numbers a policy may hold (SNS's).
pub const MAX_NUMBER: f64 = 1e9;

/// Why a policy was refused; the message names the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

fn err<T>(message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(message.into()))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn parse(s: &str) -> Option<Cmp> {
        Some(match s {
            "=" => Cmp::Eq,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            _ => return None,
        })
    }

    fn test(self, value: f64, bound: f64) -> bool {
        match self {
            Cmp::Eq => value == bound,
            Cmp::Lt => value < bound,
            Cmp::Le => value <= bound,
            Cmp::Gt => value > bound,
            Cmp::Ge => value >= bound,
        }
    }
}

/// An exact value of a policy.
#[derive(Debug, Clone, PartialEq)]
enum Exact {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Exact {
    fn parse(key: &str, v: &Value) -> Result<Exact, FilterError> {
        match v {
            Value::String(s) => Ok(Exact::Text(s.clone())),
            Value::Bool(b) => Ok(Exact::Bool(*b)),
            Value::Number(_) => Ok(Exact::Number(number(key, v)?)),
            _ => err(format!(
                "\"{key}\": a value must be a string, a number, a boolean or an operator object"
            )),
        }
    }

    fn test(&self, v: &Value) -> bool {
        match (self, v) {
            (Exact::Text(a), Value::String(b)) => a == b,
            (Exact::Number(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Exact::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

/// One condition on one attribute.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Exact(Exact),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    Numeric(Vec<(Cmp, f64)>),
    AnythingBut(Vec<Exact>),
    AnythingButPrefix(String),
    Exists(bool),
}

impl Condition {
    /// Whether one (scalar) attribute value meets the condition; `exists` is decided by the
    /// caller.
    fn test(&self, v: &Value) -> bool {
        match self {
            Condition::Exact(e) => e.test(v),
            Condition::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Condition::Suffix(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            Condition::EqualsIgnoreCase(p) => v
                .as_str()
                .is_some_and(|s| s.to_lowercase() == p.to_lowercase()),
            Condition::Numeric(cmps) => v
                .as_f64()
                .is_some_and(|n| cmps.iter().all(|(cmp, bound)| cmp.test(n, *bound))),
            Condition::AnythingBut(values) => !values.iter().any(|e| e.test(v)),
            Condition::AnythingButPrefix(p) => {
                v.as_str().is_some_and(|s| !s.starts_with(p.as_str()))
            }
            Condition::Exists(_) => true,
        }
    }

    /// Whether the attribute (absent: `None`) meets the condition.
    fn matches(&self, attribute: Option<&Value>) -> bool {
        match (self, attribute) {
            (Condition::Exists(want), a) => *want == a.is_some_and(|v| !v.is_null()),
            (_, None | Some(Value::Null)) => false,
            (_, Some(Value::Array(items))) => items.iter().any(|v| self.test(v)),
            (_, Some(v)) => self.test(v),
        }
    }
}

fn number(key: &str, v: &Value) -> Result<f64, FilterError> {
    match v.as_f64() {
        Some(n) if n.abs() <= MAX_NUMBER => Ok(n),
        Some(_) => err(format!("\"{key}\": numbers must be within ±1e9")),
        None => err(format!("\"{key}\": expected a number, found {v}")),
    }
}

fn text<'a>(key: &str, operator: &str, v: &'a Value) -> Result<&'a str, FilterError> {
    v.as_str()
        .ok_or_else(|| FilterError(format!("\"{key}\": \"{operator}\" takes a string")))
}

fn numeric(key: &str, v: &Value) -> Result<Vec<(Cmp, f64)>, FilterError> {
    let Some(items) = v.as_array() else {
        return err(format!(
            "\"{key}\": \"numeric\" takes an array such as [\">=\", 10, \"<\", 20]"
        ));
    };
    if items.len() != 2 && items.len() != 4 {
        return err(format!(
            "\"{key}\": \"numeric\" takes one comparison or a range of two"
        ));
    }
    let mut cmps = Vec::new();
    for pair in items.chunks(2) {
        let cmp = pair[0].as_str().and_then(Cmp::parse).ok_or_else(|| {
            FilterError(format!(
                "\"{key}\": unknown numeric operator {} (=, <, <=, >, >=)",
                pair[0]
            ))
        })?;
        cmps.push((cmp, number(key, &pair[1])?));
    }
    if let [(low, a), (high, b)] = cmps[..] {
        if !matches!(low, Cmp::Gt | Cmp::Ge) || !matches!(high, Cmp::Lt | Cmp::Le) {
            return err(format!(
                "\"{key}\": a numeric range is a lower bound (> or >=) then an upper bound (< or <=)"
            ));
        }
        if a >= b {
            return err(format!(
                "\"{key}\": the range's lower bound must be below its upper bound"
            ));
        }
    }
    Ok(cmps)
}

fn anything_but(key: &str, v: &Value) -> Result<Condition, FilterError> {
    match v {
        Value::Array(items) if items.is_empty() => err(format!(
            "\"{key}\": \"anything-but\" needs at least one value"
        )),
        Value::Array(items) => Ok(Condition::AnythingBut(
            items
                .iter()
                .map(|i| Exact::parse(key, i))
                .collect::<Result<_, _>>()?,
        )),
        Value::Object(o) => match (o.len(), o.get("prefix")) {
            (1, Some(p)) => Ok(Condition::AnythingButPrefix(
                text(key, "prefix", p)?.to_owned(),
            )),
            _ => err(format!(
                "\"{key}\": \"anything-but\" takes a value, an array of values or {{\"prefix\": ...}}"
            )),
        },
        v => Ok(Condition::AnythingBut(vec![Exact::parse(key, v)?])),
    }
}

fn condition(key: &str, v: &Value) -> Result<Condition, FilterError> {
    let Value::Object(o) = v else {
        return Exact::parse(key, v).map(Condition::Exact);
    };
    let mut entries = o.iter();
    let (Some((operator, arg)), None) = (entries.next(), entries.next()) else {
        return err(format!(
            "\"{key}\": an operator object has exactly one operator"
        ));
    };
    match operator.as_str() {
        "prefix" => Ok(Condition::Prefix(text(key, operator, arg)?.to_owned())),
        "suffix" => Ok(Condition::Suffix(text(key, operator, arg)?.to_owned())),
        "equals-ignore-case" => Ok(Condition::EqualsIgnoreCase(
            text(key, operator, arg)?.to_owned(),
        )),
        "numeric" => numeric(key, arg).map(Condition::Numeric),
        "anything-but" => anything_but(key, arg),
        "exists" => arg
            .as_bool()
            .map(Condition::Exists)
            .ok_or_else(|| FilterError(format!("\"{key}\": \"exists\" takes true or false"))),
        other => err(format!(
            "\"{key}\": unknown operator \"{other}\" (prefix, suffix, equals-ignore-case, numeric, anything-but, exists)"
        )),
    }
}

/// A parsed, valid filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    keys: Vec<(String, Vec<Condition>)>,
}

impl FilterPolicy {
    /// Parses and checks a policy; the error says what is wrong, naming the key.
    pub fn parse(policy: &Value) -> Result<FilterPolicy, FilterError> {
        let Value::Object(map) = policy else {
            return err("a filter policy is a JSON object of attribute names to arrays");
        };
        if map.is_empty() {
            return err("a filter policy names at least one attribute");
        }
        if map.len() > MAX_KEYS {
            return err(format!(
                "a filter policy names at most {MAX_KEYS} attributes, this one {}",
                map.len()
            ));
        }
        let mut keys = Vec::with_capacity(map.len());
        let mut combinations: usize = 1;
        for (key, values) in map {
            let Value::Array(values) = values else {
                let hint = if values.is_object() {
                    " (nested keys, i.e. payload filtering, are not supported)"
                } else {
                    ""
                };
                return err(format!(
                    "\"{key}\": the conditions of an attribute are an array{hint}"
                ));
            };
            if values.is_empty() {
                return err(format!("\"{key}\": at least one condition"));
            }
            let conditions = values
                .iter()
                .map(|v| condition(key, v))
                .collect::<Result<Vec<_>, _>>()?;
            combinations = combinations.saturating_mul(conditions.len());
            keys.push((key.clone(), conditions));
        }
        if combinations > MAX_COMBINATIONS {
            return err(format!(
                "a filter policy has at most {MAX_COMBINATIONS} combinations of conditions, this one {combinations}"
            ));
        }
        Ok(FilterPolicy { keys })
    }

    /// Whether an event with these attributes passes: every key has a condition it meets.
    pub fn matches(&self, attributes: &Attributes) -> bool {
        self.keys.iter().all(|(key, conditions)| {
            let attribute = attributes.get(key);
            conditions.iter().any(|c| c.matches(attribute))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attrs(v: Value) -> Attributes {
        serde_json::from_value(v).unwrap()
    }

    fn policy(v: Value) -> FilterPolicy {
        FilterPolicy::parse(&v).unwrap()
    }

    fn refused(v: Value) -> String {
        FilterPolicy::parse(&v).unwrap_err().0
    }

    fn order() -> Attributes {
        attrs(json!({
            "type": "order.fulfilled",
            "total_cents": 12500,
            "category": ["Kitchen", "Lamps"],
            "sku": ["KIT-00001", "LAMP-00002"],
            "country": "DE",
            "email_domain": "example.com",
        }))
    }

    #[test]
    fn exact_strings_and_numbers() {
        assert!(policy(json!({"type": ["order.fulfilled"]})).matches(&order()));
        assert!(!policy(json!({"type": ["order.placed"]})).matches(&order()));
        assert!(policy(json!({"total_cents": [12500]})).matches(&order()));
        assert!(policy(json!({"total_cents": [12500.0]})).matches(&order()));
        assert!(!policy(json!({"total_cents": ["12500"]})).matches(&order()));
        assert!(policy(json!({"flag": [true]})).matches(&attrs(json!({"flag": true}))));
    }

    #[test]
    fn values_of_a_key_or_and_keys_and() {
        let p = policy(json!({"type": ["order.placed", "order.fulfilled"], "country": ["DE"]}));
        assert!(p.matches(&order()));
        let p = policy(json!({"type": ["order.fulfilled"], "country": ["FR"]}));
        assert!(!p.matches(&order()));
    }

    #[test]
    fn prefix_suffix_and_ignore_case() {
        assert!(policy(json!({"category": [{"prefix": "Kit"}]})).matches(&order()));
        assert!(!policy(json!({"category": [{"prefix": "Gar"}]})).matches(&order()));
        assert!(policy(json!({"email_domain": [{"suffix": ".com"}]})).matches(&order()));
        assert!(policy(json!({"category": [{"equals-ignore-case": "LAMPS"}]})).matches(&order()));
        assert!(!policy(json!({"total_cents": [{"prefix": "1"}]})).matches(&order()));
    }

    #[test]
    fn numeric_comparisons_and_ranges() {
        let o = order();
        for (cmp, bound, want) in [
            ("=", 12500, true),
            ("<", 12500, false),
            ("<=", 12500, true),
            (">", 12499, true),
            (">=", 12501, false),
        ] {
            let p = policy(json!({"total_cents": [{"numeric": [cmp, bound]}]}));
            assert_eq!(p.matches(&o), want, "{cmp} {bound}");
        }
        let range = policy(json!({"total_cents": [{"numeric": [">=", 10000, "<", 20000]}]}));
        assert!(range.matches(&o));
        assert!(!range.matches(&attrs(json!({"total_cents": 20000}))));
        assert!(!range.matches(&attrs(json!({"total_cents": "15000"}))));
    }

    #[test]
    fn anything_but_values_one_value_and_prefix() {
        assert!(policy(json!({"country": [{"anything-but": ["XX", "YY"]}]})).matches(&order()));
        assert!(!policy(json!({"country": [{"anything-but": ["DE"]}]})).matches(&order()));
        assert!(!policy(json!({"country": [{"anything-but": "DE"}]})).matches(&order()));
        assert!(!policy(json!({"total_cents": [{"anything-but": [12500]}]})).matches(&order()));
        assert!(!policy(json!({"country": [{"anything-but": {"prefix": "D"}}]})).matches(&order()));
        assert!(policy(json!({"country": [{"anything-but": {"prefix": "F"}}]})).matches(&order()));
        // Absent: anything-but does not match (SNS).
        assert!(!policy(json!({"coupon": [{"anything-but": ["X"]}]})).matches(&order()));
    }

    #[test]
    fn exists_true_and_false() {
        assert!(policy(json!({"country": [{"exists": true}]})).matches(&order()));
        assert!(!policy(json!({"coupon": [{"exists": true}]})).matches(&order()));
        assert!(policy(json!({"coupon": [{"exists": false}]})).matches(&order()));
        assert!(!policy(json!({"country": [{"exists": false}]})).matches(&order()));
        // A missing attribute matches nothing but exists: false.
        assert!(!policy(json!({"coupon": ["X"]})).matches(&order()));
    }

    #[test]
    fn array_attributes_match_when_any_element_does() {
        assert!(policy(json!({"category": ["Lamps"]})).matches(&order()));
        assert!(policy(json!({"sku": [{"prefix": "LAMP-"}]})).matches(&order()));
        assert!(!policy(json!({"category": ["Garden"]})).matches(&order()));
        // Some element is neither.
        assert!(policy(json!({"category": [{"anything-but": ["Kitchen"]}]})).matches(&order()));
        assert!(
            !policy(json!({"category": [{"anything-but": ["Kitchen", "Lamps"]}]}))
                .matches(&order())
        );
    }

    #[test]
    fn the_issue_example_parses_and_matches() {
        let p = policy(json!({
            "type": ["order.fulfilled"],
            "total_cents": [{"numeric": [">=", 10000]}],
            "category": [{"prefix": "Kit"}],
            "country": [{"anything-but": ["XX"]}],
            "coupon": [{"exists": true}],
        }));
        assert!(!p.matches(&order()));
        let mut with_coupon = order();
        with_coupon.insert("coupon".into(), json!("WELCOME"));
        assert!(p.matches(&with_coupon));
    }

    #[test]
    fn malformed_policies_are_refused_with_a_reason() {
        assert!(refused(json!([])).contains("JSON object"));
        assert!(refused(json!({})).contains("at least one attribute"));
        assert!(refused(json!({"type": "order.placed"})).contains("array"));
        assert!(refused(json!({"a": {"b": ["c"]}})).contains("nested keys"));
        assert!(refused(json!({"type": []})).contains("at least one condition"));
        assert!(refused(json!({"type": [null]})).contains("\"type\""));
        assert!(refused(json!({"type": [["x"]]})).contains("\"type\""));
        assert!(refused(json!({"type": [{"wildcard": "x*"}]})).contains("unknown operator"));
        assert!(refused(json!({"type": [{"prefix": "a", "suffix": "b"}]})).contains("exactly one"));
        assert!(refused(json!({"type": [{"prefix": 1}]})).contains("takes a string"));
        assert!(refused(json!({"n": [{"numeric": [">", "x"]}]})).contains("expected a number"));
        assert!(refused(json!({"n": [{"numeric": ["~", 1]}]})).contains("unknown numeric"));
        assert!(refused(json!({"n": [{"numeric": [">", 1, ">", 2]}]})).contains("lower bound"));
        assert!(refused(json!({"n": [{"numeric": [">", 5, "<", 2]}]})).contains("below"));
        assert!(refused(json!({"n": [{"numeric": [">"]}]})).contains("one comparison"));
        assert!(refused(json!({"n": [{"numeric": [">", 1e10]}]})).contains("1e9"));
        assert!(refused(json!({"n": [{"anything-but": []}]})).contains("at least one value"));
        assert!(refused(json!({"n": [{"anything-but": {"suffix": "x"}}]})).contains("prefix"));
        assert!(refused(json!({"n": [{"exists": "yes"}]})).contains("true or false"));
    }

    #[test]
    fn limits_on_keys_and_combinations() {
        let six = json!({"a": [1], "b": [1], "c": [1], "d": [1], "e": [1], "f": [1]});
        assert!(refused(six).contains("at most 5"));
        let many: Vec<i32> = (0..13).collect();
        let over = json!({"a": many, "b": many});
        assert!(refused(over).contains("combinations"));
        let ten: Vec<i32> = (0..10).collect();
        assert!(FilterPolicy::parse(&json!({"a": ten, "b": ten})).is_ok());
    }
}
