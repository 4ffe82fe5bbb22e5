//! What the console's pages share about calling logic: the words shown when a call fails
//! or cannot be made, and the one place such failures are logged.

use crate::logic_client::LogicError;

/// What the console says when a call to logic fails; logic's own words are never shown.
fn problem(err: &LogicError) -> &'static str {
    match err {
        LogicError::Rejected { status: 401, .. } => {
            "Logic refused the console's admin token: check LOGIC_ADMIN_TOKEN against logic's \
             ADMIN_TOKEN."
        }
        LogicError::NotFound => "This logic version does not offer that ops endpoint.",
        LogicError::Unavailable(_) => {
            "Logic, or the broker behind it, did not answer. Figures may be missing."
        }
        LogicError::Rejected { .. } => "Logic refused the request.",
    }
}

/// Shown instead of figures when there is no token to ask logic with.
pub const NO_TOKEN: &str =
    "LOGIC_ADMIN_TOKEN is not configured: logic's ops endpoints cannot be asked.";

/// Logic's answer, with failures logged here once.
pub fn logged<T>(what: &str, result: Result<T, LogicError>) -> Result<T, &'static str> {
    result.map_err(|err| {
        tracing::warn!(
            error = format!("{err:#}"),
            call = what,
            "ops call to logic failed"
        );
        problem(&err)
    })
}
