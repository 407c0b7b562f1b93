//! API v1, resumable uploads: create, send parts, complete; read and cancel. The lifecycle and
//! the bytes belong to `crate::uploads`; this module only speaks HTTP and JSON.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{ApiToken, BuildJson};
use super::base_url;
use crate::AppState;
use crate::db::{UploadRow, timestamp};
use crate::error::{ApiError, ErrorJson};
use crate::ingest::BuildDetails;
use crate::uploads::{self, Created, NewUpload};

/// The body of `POST /api/v1/uploads`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// The file's name (for the record; paths are stripped).
    #[schema(example = "MyApp.ipa")]
    file_name: Option<String>,
    /// The file's length in bytes.
    #[schema(example = 734_003_200)]
    size: u64,
    /// The whole file's SHA-256, 64 hex digits. Completing checks it.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    sha256: String,
    /// Preferred part size in bytes (1 MiB to 256 MiB; default 8 MiB). The server may choose a
    /// larger one so that no upload has more than 10,000 parts; the answer says which.
    part_size: Option<u64>,
    /// Release notes (Markdown).
    notes: Option<String>,
    /// Channel, such as `beta` [default: `default`].
    channel: Option<String>,
    /// Key/value pairs shown with the build, such as `git_commit`, `git_branch`, `ci_run_url`.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// A resumable upload in progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadJson {
    /// The upload's id.
    id: String,
    /// The file name.
    file_name: String,
    /// Bytes of the whole file.
    size: u64,
    /// SHA-256 the whole file must have.
    sha256: String,
    /// Bytes per part; the last part holds the rest.
    part_size: u64,
    /// How many parts the file has, numbered from 1.
    part_count: u32,
    /// Part numbers already received and checked.
    received_parts: Vec<u32>,
    /// Part numbers still to send.
    missing_parts: Vec<u32>,
    /// When the upload is deleted unless more parts arrive (RFC 3339); each part pushes it on.
    expires_at: String,
    /// `PUT` each part to this URL with `{number}` replaced.
    part_url: String,
    /// `POST` here once every part is in.
    complete_url: String,
}

impl UploadJson {
    fn new(upload: &UploadRow, base: &str) -> Self {
        let url = format!("{base}/api/v1/uploads/{}", upload.id);
        UploadJson {
            id: upload.id.clone(),
            file_name: upload.file_name.clone(),
            size: upload.size,
            sha256: upload.sha256.clone(),
            part_size: upload.part_size,
            part_count: uploads::part_count(upload),
            received_parts: upload.received.clone(),
            missing_parts: uploads::missing_parts(upload),
            expires_at: timestamp(upload.expires_at),
            part_url: format!("{url}/parts/{{number}}"),
            complete_url: format!("{url}/complete"),
        }
    }
}

/// The answer to creating an upload: either the upload to send parts to, or, when the server
/// already has a build of this file, that build (and nothing needs sending).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUpload {
    /// The upload (new, or the open upload of the same file with the parts it already holds).
    #[serde(skip_serializing_if = "Option::is_none")]
    upload: Option<UploadJson>,
    /// The existing build of the same file.
    #[serde(skip_serializing_if = "Option::is_none")]
    build: Option<BuildJson>,
}

/// A part the server received and checked.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartJson {
    /// The part's number.
    number: u32,
    /// Its length.
    size: u64,
    /// Its SHA-256, hex.
    sha256: String,
}

/// Create a resumable upload.
///
/// Declares the file (size and SHA-256). If an open upload of the same file exists it is
/// returned with the parts it already holds (`200`), so that an interrupted push resumes from any
/// machine; if a build of the same file exists, it is returned instead and nothing needs sending.
#[utoipa::path(
    post, path = "/api/v1/uploads", tag = "uploads",
    request_body = CreateUpload,
    responses(
        (status = 201, description = "A new upload; send its parts.", body = CreatedUpload),
        (status = 200, description = "The open upload of the same file (send its `missing_parts`), or the existing build of it.", body = CreatedUpload),
        (status = 400, description = "A field is invalid.", body = ErrorJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 413, description = "Larger than the server's limit.", body = ErrorJson),
        (status = 507, description = "The server's disk is full.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn create_upload(
    State(state): State<AppState>,
    _token: ApiToken,
    headers: HeaderMap,
    body: Result<Json<CreateUpload>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "The JSON body is too large; release notes may be up to 1 MiB.",
            );
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-json",
            format!("The body must be a JSON object with `size` and `sha256`: {}", rejection.body_text()),
        )
    })?;
    let details = BuildDetails::new(request.notes, request.channel.as_deref(), request.metadata)?;
    let new = NewUpload {
        file_name: request.file_name.unwrap_or_default(),
        size: request.size,
        sha256: request.sha256,
        part_size: request.part_size,
        details,
    };
    let base = base_url(&state, &headers);
    Ok(match uploads::create(&state, new).await? {
        Created::Upload { upload, resumed } => {
            let status = if resumed { StatusCode::OK } else { StatusCode::CREATED };
            let body = CreatedUpload { upload: Some(UploadJson::new(&upload, &base)), build: None };
            (status, Json(body)).into_response()
        }
        Created::Build(build) => {
            let body = CreatedUpload { upload: None, build: Some(BuildJson::new(&build, &base)) };
            (StatusCode::OK, Json(body)).into_response()
        }
    })
}

/// Read an upload: which parts are in, which are missing.
#[utoipa::path(
    get, path = "/api/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "The upload's id.")),
    responses(
        (status = 200, description = "The upload.", body = UploadJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 404, description = "Completed, cancelled or abandoned.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn get_upload(
    State(state): State<AppState>,
    _token: ApiToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<UploadJson>, ApiError> {
    let upload = uploads::find(&state, &id).await?;
    Ok(Json(UploadJson::new(&upload, &base_url(&state, &headers))))
}

/// Send one part.
///
/// The body is the part's bytes: exactly `part_size` bytes (the last part holds the rest).
/// `Content-Digest` (RFC 9530) carries its SHA-256, as
/// `sha-256=:$(openssl dgst -sha256 -binary part | base64):`. Parts may be sent in any order and
/// in parallel; sending a part again replaces it.
#[utoipa::path(
    put, path = "/api/v1/uploads/{id}/parts/{number}", tag = "uploads",
    params(
        ("id" = String, Path, description = "The upload's id."),
        ("number" = u32, Path, minimum = 1, description = "The part's number, from 1."),
        ("Content-Digest" = String, Header, description = "`sha-256=:BASE64:` of the part (RFC 9530)."),
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "The part's bytes."),
    responses(
        (status = 200, description = "Received and checked.", body = PartJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 400, description = "Wrong part number or length, or no `Content-Digest`.", body = ErrorJson),
        (status = 404, description = "No such upload.", body = ErrorJson),
        (status = 409, description = "The upload is being completed.", body = ErrorJson),
        (status = 422, description = "The part's SHA-256 is not the declared one; send it again.", body = ErrorJson),
        (status = 507, description = "The server's disk is full.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn put_part(
    State(state): State<AppState>,
    _token: ApiToken,
    headers: HeaderMap,
    Path((id, number)): Path<(String, String)>,
    body: Body,
) -> Result<Json<PartJson>, ApiError> {
    let number: u32 = number.parse().map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-part-number", format!("{number:?} is not a part number."))
    })?;
    let digest = headers
        .get("content-digest")
        .and_then(|value| value.to_str().ok())
        .and_then(uploads::sha256_from_content_digest)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing-digest",
                "Send the part's SHA-256 as `Content-Digest: sha-256=:BASE64:` (RFC 9530), e.g. \
                 `sha-256=:$(openssl dgst -sha256 -binary part | base64):`.",
            )
        })?;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let stream = body.into_data_stream().map_err(|error| error.to_string());
    let receipt = uploads::put_part(&state, &id, number, digest, length, stream).await?;
    Ok(Json(PartJson { number: receipt.number, size: receipt.size, sha256: receipt.sha256 }))
}

/// Complete an upload.
///
/// Every part must have been received. The server checks the whole file's SHA-256, then
/// records the build exactly as `POST /api/v1/builds` does. The upload is gone afterwards.
#[utoipa::path(
    post, path = "/api/v1/uploads/{id}/complete", tag = "uploads",
    params(("id" = String, Path, description = "The upload's id.")),
    responses(
        (status = 201, description = "The new build.", body = BuildJson),
        (status = 200, description = "The existing build of the same file.", body = BuildJson),
        (status = 400, description = "The file is not an installable archive (the error says why).", body = ErrorJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 404, description = "No such upload.", body = ErrorJson),
        (status = 409, description = "Parts are missing (the message lists them), or another request is completing it.", body = ErrorJson),
        (status = 422, description = "The whole file's SHA-256 is not the declared one; the upload was discarded.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn complete_upload(
    State(state): State<AppState>,
    _token: ApiToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<BuildJson>), ApiError> {
    // Completing runs to its end even if the client goes away meanwhile (syncing and checking
    // a large file takes a while): dropped half-way, the upload would be lost.
    let completing = state.clone();
    let ingested =
        tokio::spawn(async move { uploads::complete(&completing, &id).await }).await.map_err(ApiError::internal)??;
    let status = if ingested.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(BuildJson::new(&ingested.build, &base_url(&state, &headers)))))
}

/// Cancel an upload and delete what it received.
#[utoipa::path(
    delete, path = "/api/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "The upload's id.")),
    responses(
        (status = 204, description = "Cancelled."),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 404, description = "No such upload.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn delete_upload(
    State(state): State<AppState>,
    _token: ApiToken,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    uploads::abort(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
