//! The one error type of the HTTP boundary.
//!
//! Every error has an HTTP status, a stable kebab-case code and a sentence that says what to do.
//! API routes answer `{"error": {"code", "message"}}`; pages render the same sentence as HTML.
//! Server-side failures are logged once here, with their cause, and answered with a generic
//! sentence so that internals never leak.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::db::DbError;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and sentence.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
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

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::NotFound => ApiError::not_found("The build or app"),
            other => ApiError::internal(other),
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
        let body = ErrorJson { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}
