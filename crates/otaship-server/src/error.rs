//! The one error type of the HTTP boundary.
//!
//! Every error has an HTTP status, a stable kebab-case code and a sentence that says what to do.
//! API routes answer `{"error": {"code", "message"}}`; pages render the same sentence as HTML.
//! Server-side failures are logged once here, with their cause, and answered with a generic
//! sentence so that internals never leak.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::db::{DbError, DbFailure};

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// When to try again, for a `429` or `503` (sent as `Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// An error with this status, code and sentence.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// The same error, telling the client to wait `wait` before trying again.
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The `Retry-After` header this error carries, if any: whole seconds, rounded up.
    pub fn retry_after_header(&self) -> Option<(axum::http::HeaderName, axum::http::HeaderValue)> {
        let wait = self.retry_after?;
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Some((axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds.max(1))))
    }

    /// 404 with a sentence about what was not found.
    pub fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", format!("{what} does not exist (or was deleted)."))
    }

    /// 401: a missing, wrong or revoked token.
    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send a valid API token as `Authorization: Bearer TOKEN`; create one with `otaship token create`.",
        )
    }

    /// 500, logging the cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "The server failed to handle the request; the details are in its log.",
        )
    }
}

/// How long a client should wait before trying again when the database is unreachable: about
/// what a restart of PostgreSQL or a fail-over takes.
const DATABASE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

impl ApiError {
    /// 507: the disk the server writes to (its data directory, object storage's or the
    /// database's) is full.
    pub fn storage_full() -> Self {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage-full",
            "The server's disk is full; free space in its data directory (or delete old builds), then upload again.",
        )
    }

    /// 503: the database does not answer; logged as a warning, not as a failure of the request.
    pub fn database_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "the database is unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database-unavailable",
            "The server cannot reach its database right now; try again in a moment. If this lasts, check that \
             the database server is running and reachable from otaship (the server's log says more).",
        )
        .with_retry_after(DATABASE_RETRY_AFTER)
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error.failure() {
            DbFailure::NotFound => ApiError::not_found("The build or app"),
            DbFailure::Unavailable => ApiError::database_unavailable(error),
            DbFailure::DiskFull => {
                tracing::error!(%error, "the database's disk is full");
                ApiError::storage_full()
            }
            DbFailure::UnstorableText => {
                tracing::warn!(%error, "the database refused a character of the request's text");
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-text",
                    "The request holds a character the server cannot store (a NUL); remove it and send the \
                     request again.",
                )
            }
            DbFailure::Other => ApiError::internal(error),
        }
    }
}

/// How every API error looks on the wire.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorJson {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's code and sentence.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, kebab-case; scripts may match on it.
    #[schema(example = "upload-too-large")]
    pub code: String,
    /// What is wrong and what to do, for people.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after_header();
        let body = ErrorJson { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if let Some((name, value)) = retry_after {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
