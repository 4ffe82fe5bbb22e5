//! `/ops/audit`: the audit trail in the console, newest first, with filters and pages. Every
//! call to logic carries logic's admin token, which never reaches the browser.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, web};
use askama::Template;
use contracts::{AuditAction, AuditOutcome};

use crate::csrf::CsrfToken;
use crate::error::PageError;
use crate::logic_client::LogicClient;
use crate::ops::audit::{self, AuditForm, AuditRow, FieldError, Pager};
use crate::ops::auth::{OpsAuth, OpsSession};
use crate::ops::calls::{NO_TOKEN, logged};
use crate::telemetry::trace_context;
use crate::views;

#[derive(Template)]
#[template(path = "ops_audit.html")]
struct AuditTrailPage {
    title: &'static str,
    user: Option<String>,
    csrf: String,
    form: AuditForm,
    actions: Vec<&'static str>,
    outcomes: Vec<&'static str>,
    errors: Vec<FieldError>,
    problem: Option<&'static str>,
    rows: Vec<AuditRow>,
    pager: Option<Pager>,
}

impl AuditTrailPage {
    /// The message of a field the form could not use.
    fn error_of(&self, field: &str) -> Option<&'static str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message)
    }

    fn is_current(&self, chosen: &str, option: &str) -> bool {
        chosen.trim() == option
    }
}

#[get("/ops/audit")]
pub async fn show(
    session: OpsSession,
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    csrf: CsrfToken,
    form: web::Query<AuditForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let mut page = AuditTrailPage {
        title: "Audit trail",
        user: Some(session.user),
        csrf: csrf.value,
        form,
        actions: AuditAction::ALL.iter().map(|a| a.as_str()).collect(),
        outcomes: AuditOutcome::ALL.iter().map(|o| o.as_str()).collect(),
        errors: Vec::new(),
        problem: None,
        rows: Vec::new(),
        pager: None,
    };
    let status = match (page.form.query(), auth.logic_token()) {
        (Err(errors), _) => {
            page.errors = errors;
            StatusCode::BAD_REQUEST
        }
        (Ok(_), None) => {
            page.problem = Some(NO_TOKEN);
            StatusCode::OK
        }
        (Ok(query), Some(token)) => {
            match logged(
                "audit",
                logic.audit(&trace_context(&req), token, &query).await,
            ) {
                Ok(trail) => {
                    page.rows = trail.items.iter().map(audit::row).collect();
                    page.pager = Some(audit::pager(&page.form, &trail));
                }
                Err(problem) => page.problem = Some(problem),
            }
            StatusCode::OK
        }
    };
    Ok(views::html(status, &page))
}
