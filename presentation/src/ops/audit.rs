//! The console's audit page as data: the filter form read from the query string (checked
//! here, so a typo gets a message next to its field rather than a failed call), the query
//! sent to logic, the table rows and the pager links.

use chrono::{DateTime, NaiveDateTime, Utc};
use contracts::{AuditAction, AuditEntry, AuditOutcome, AuditPage};
use serde::{Deserialize, Serialize};

use crate::logic_client::AuditQuery;
use crate::ops::view::MISSING;

/// Entries per page.
pub const PER_PAGE: u32 = 50;

/// The form as it came (every field optional, kept as typed to show it back).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct AuditForm {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub since: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

/// A field the form could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: &'static str,
}

/// A time typed in the form: RFC 3339, or a `datetime-local` value read as UTC.
pub fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
    .map(|t| t.and_utc())
}

fn text(raw: &str, max: usize) -> Result<Option<String>, ()> {
    let trimmed = raw.trim();
    if trimmed.contains('\0') || trimmed.chars().count() > max {
        return Err(());
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

impl AuditForm {
    /// The query for logic, or the fields that need fixing first.
    pub fn query(&self) -> Result<AuditQuery, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut bad = |field, message| errors.push(FieldError { field, message });
        let action = match self.action.trim() {
            "" => None,
            a => AuditAction::parse(a).or_else(|| {
                bad("action", "Pick an action from the list.");
                None
            }),
        };
        let outcome = match self.outcome.trim() {
            "" => None,
            o => AuditOutcome::parse(o).or_else(|| {
                bad("outcome", "Pick an outcome from the list.");
                None
            }),
        };
        let actor = text(&self.actor, 100).unwrap_or_else(|()| {
            bad("actor", "At most 100 characters.");
            None
        });
        let target = text(&self.target, 200).unwrap_or_else(|()| {
            bad("target", "At most 200 characters.");
            None
        });
        let mut time = |field, raw: &str| match raw.trim() {
            "" => None,
            raw => parse_time(raw).or_else(|| {
                bad(field, "A date and time in UTC, like 2026-01-31 14:05.");
                None
            }),
        };
        let since = time("since", &self.since);
        let until = time("until", &self.until);
        let page = match self.page.as_deref().map(str::trim) {
            None | Some("") => 1,
            Some(p) => match p.parse::<u32>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    bad("page", "Not a page number.");
                    1
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AuditQuery {
            action: action.map(AuditAction::as_str),
            outcome: outcome.map(AuditOutcome::as_str),
            actor,
            target,
            since: since.map(|t| t.to_rfc3339()),
            until: until.map(|t| t.to_rfc3339()),
            page,
            per_page: PER_PAGE,
        })
    }

    /// This form's link, on another page.
    pub fn href(&self, page: u32) -> String {
        let form = AuditForm {
            page: (page > 1).then(|| page.to_string()),
            ..self.clone()
        };
        match serde_urlencoded::to_string(&form) {
            Ok(q) if !q.is_empty() => format!("/ops/audit?{q}"),
            _ => "/ops/audit".to_owned(),
        }
    }
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: &'static str,
    pub error_code: String,
    pub request_id: String,
    pub trace_id: String,
    pub detail: String,
}

pub fn row(e: &AuditEntry) -> AuditRow {
    let detail = match &e.detail {
        serde_json::Value::Object(map) if map.is_empty() => MISSING.to_owned(),
        other => {
            let text = other.to_string();
            if text.chars().count() > 300 {
                let cut: String = text.chars().take(299).collect();
                format!("{cut}…")
            } else {
                text
            }
        }
    };
    AuditRow {
        at: e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone().unwrap_or_else(|| MISSING.to_owned()),
        outcome: e.outcome.as_str(),
        error_code: e.error_code.clone().unwrap_or_else(|| MISSING.to_owned()),
        request_id: e
            .request_id
            .map(|id| id.to_string())
            .unwrap_or_else(|| MISSING.to_owned()),
        trace_id: e.trace_id.clone().unwrap_or_else(|| MISSING.to_owned()),
        detail,
    }
}

/// "Showing 51–100 of 230" and the links to the pages around this one.
pub struct Pager {
    pub summary: String,
    pub prev: Option<String>,
    pub next: Option<String>,
}

pub fn pager(form: &AuditForm, page: &AuditPage) -> Pager {
    let total = u64::try_from(page.total).unwrap_or(0);
    let per_page = u64::from(page.per_page.max(1));
    let first = u64::from(page.page.saturating_sub(1)) * per_page;
    let summary = if page.items.is_empty() {
        format!("No entries on this page ({total} in all).")
    } else {
        format!(
            "Showing {}–{} of {total}, newest first.",
            first + 1,
            first + page.items.len() as u64
        )
    };
    Pager {
        summary,
        prev: (page.page > 1).then(|| form.href(page.page - 1)),
        next: (first + per_page < total).then(|| form.href(page.page + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_utc() {
        let t = parse_time("2026-01-31T14:05").expect("datetime-local");
        assert_eq!(t.to_rfc3339(), "2026-01-31T14:05:00+00:00");
        let t = parse_time("2026-01-31T14:05:00+02:00").expect("RFC 3339");
        assert_eq!(t.to_rfc3339(), "2026-01-31T12:05:00+00:00");
        assert!(parse_time("2026-01-31 14:05:09").is_some());
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2026-13-01T00:00").is_none());
    }

    #[test]
    fn a_bad_form_names_its_fields() {
        let form = AuditForm {
            action: "product.delete".into(),
            since: "soon".into(),
            target: "x".repeat(201),
            page: Some("0".into()),
            ..AuditForm::default()
        };
        let errors = form.query().expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["action", "target", "since", "page"]);
    }

    #[test]
    fn a_good_form_becomes_the_query_and_keeps_its_filters_in_links() {
        let form = AuditForm {
            action: "order.place".into(),
            outcome: "rejected".into(),
            actor: " anonymous ".into(),
            until: "2026-02-01T00:00".into(),
            page: Some("2".into()),
            ..AuditForm::default()
        };
        let q = form.query().expect("valid");
        assert_eq!(q.action, Some("order.place"));
        assert_eq!(q.outcome, Some("rejected"));
        assert_eq!(q.actor.as_deref(), Some("anonymous"));
        assert_eq!(q.until.as_deref(), Some("2026-02-01T00:00:00+00:00"));
        assert_eq!((q.page, q.per_page), (2, PER_PAGE));
        assert_eq!(
            form.href(3),
            "/ops/audit?action=order.place&outcome=rejected&actor=+anonymous+&until=2026-02-01T00%3A00&page=3"
        );
        assert_eq!(AuditForm::default().href(1), "/ops/audit");
    }
}
