//! Filter policies of subscriptions, in SNS's syntax, tested against an event's
//! attributes: keys are ANDed, the values listed under one key are ORed, and an array
//! attribute matches when any of its elements does. This version knows exact values
//! (strings and numbers) and `{"prefix": "..."}`.

use std::fmt;

use serde_json::Value;

use crate::messages::Attributes;

/// A policy that failed to parse, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid filter policy: {}", self.0)
    }
}

impl std::error::Error for FilterError {}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Exact(Value),
    Prefix(String),
}

impl Condition {
    fn parse(key: &str, value: &Value) -> Result<Condition, FilterError> {
        match value {
            Value::String(_) | Value::Number(_) => Ok(Condition::Exact(value.clone())),
            Value::Object(rule) => match (rule.len(), rule.get("prefix")) {
                (1, Some(Value::String(prefix))) => Ok(Condition::Prefix(prefix.clone())),
                _ => Err(FilterError(format!("{key}: unknown rule {value}"))),
            },
            _ => Err(FilterError(format!(
                "{key}: a value must be a string, a number or a rule"
            ))),
        }
    }

    fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Condition::Exact(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Condition::Exact(a), b) => a == b,
            (Condition::Prefix(prefix), Value::String(s)) => s.starts_with(prefix.as_str()),
            (Condition::Prefix(_), _) => false,
        }
    }
}

/// A parsed filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    keys: Vec<(String, Vec<Condition>)>,
}

impl FilterPolicy {
    /// Parses an SNS filter policy: an object of attribute names to arrays of conditions.
    pub fn parse(policy: &Value) -> Result<FilterPolicy, FilterError> {
        let Value::Object(map) = policy else {
            return Err(FilterError("the policy must be a JSON object".to_owned()));
        };
        let mut keys = Vec::with_capacity(map.len());
        for (key, values) in map {
            let Value::Array(values) = values else {
                return Err(FilterError(format!(
                    "{key}: the conditions must be an array"
                )));
            };
            if values.is_empty() {
                return Err(FilterError(format!("{key}: no condition")));
            }
            let conditions = values
                .iter()
                .map(|v| Condition::parse(key, v))
                .collect::<Result<_, _>>()?;
            keys.push((key.clone(), conditions));
        }
        Ok(FilterPolicy { keys })
    }

    /// Whether an event with these attributes passes the policy.
    pub fn matches(&self, attributes: &Attributes) -> bool {
        self.keys.iter().all(|(key, conditions)| {
            let Some(value) = attributes.get(key) else {
                return false;
            };
            let values = match value {
                Value::Array(items) => items.as_slice(),
                other => std::slice::from_ref(other),
            };
            values
                .iter()
                .any(|v| conditions.iter().any(|c| c.matches(v)))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attributes(value: Value) -> Attributes {
        serde_json::from_value(value).expect("attributes")
    }

    #[test]
    fn exact_values_and_prefixes_keys_and_values_or() {
        let policy = FilterPolicy::parse(&json!({
            "type": ["order.fulfilled", "order.placed"],
            "category": [{"prefix": "Kit"}],
        }))
        .expect("parses");
        assert!(policy.matches(&attributes(
            json!({"type": "order.fulfilled", "category": ["Tools", "Kitchen"]})
        )));
        assert!(!policy.matches(&attributes(
            json!({"type": "order.rejected", "category": ["Kitchen"]})
        )));
        assert!(!policy.matches(&attributes(json!({"type": "order.placed"}))));
        let numbers = FilterPolicy::parse(&json!({"line_count": [2]})).expect("parses");
        assert!(numbers.matches(&attributes(json!({"line_count": 2.0}))));
        assert!(FilterPolicy::parse(&json!(["type"])).is_err());
        assert!(FilterPolicy::parse(&json!({"type": "order.placed"})).is_err());
        assert!(FilterPolicy::parse(&json!({"type": [{"suffix": "x"}]})).is_err());
    }
}
