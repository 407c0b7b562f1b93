//! API v1: upload, read, list and delete builds. JSON in and out; bearer-token auth.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BuildUrls, base_url};
use crate::db::{BuildRow, timestamp};
use crate::error::ApiError;
use crate::ingest::{ingest, receive, too_large};
use crate::{AppState, tokens};

/// A request that carried a valid API token.
pub struct ApiToken;

impl FromRequestParts<AppState> for ApiToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        match state.db.live_token_id(&tokens::hash(token)).await? {
            Some(_) => Ok(ApiToken),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// A build as the API shows it.
#[derive(Debug, Serialize)]
pub struct BuildJson {
    id: String,
    bundle_id: String,
    name: Option<String>,
    version: Option<String>,
    build: Option<String>,
    size: u64,
    sha256: String,
    created_at: String,
    notes: Option<String>,
    min_os: Value,
    platform: Value,
    device_families: Value,
    icon: Value,
    profile: Value,
    extensions: Value,
    installable: Value,
    install_url: String,
    manifest_url: String,
    download_url: String,
    icon_url: Option<String>,
}

impl BuildJson {
    /// The JSON of a stored build, with URLs under `base`.
    pub fn new(build: &BuildRow, base: &str) -> Self {
        let report: Value = serde_json::from_str(&build.report).unwrap_or(Value::Null);
        let field = |name: &str| report.get(name).cloned().unwrap_or(Value::Null);
        let urls = BuildUrls::new(base, &build.install_token, build.has_icon);
        BuildJson {
            id: build.id.clone(),
            bundle_id: build.bundle_id.clone(),
            name: build.name.clone(),
            version: build.version.clone(),
            build: build.build.clone(),
            size: build.size,
            sha256: build.sha256.clone(),
            created_at: timestamp(build.created_at),
            notes: build.notes.clone(),
            min_os: field("min_os"),
            platform: field("platform"),
            device_families: field("device_families"),
            icon: field("icon"),
            profile: field("profile"),
            extensions: field("extensions"),
            installable: field("installable"),
            install_url: urls.install,
            manifest_url: urls.manifest,
            download_url: urls.download,
            icon_url: urls.icon,
        }
    }
}

/// Release notes are text for people; a megabyte is far more than any changelog.
const MAX_NOTES_BYTES: u64 = 1 << 20;

/// `POST /api/v1/builds`: the raw `.ipa` as the body, or `multipart/form-data` with a `file`
/// field and an optional `notes` field.
pub async fn upload_build(
    State(state): State<AppState>,
    _token: ApiToken,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let build = receive_build(&state, &headers, body).await?;
    Ok((StatusCode::CREATED, Json(BuildJson::new(&build, &base_url(&state, &headers)))))
}

/// Streams an upload body (raw `.ipa`, or multipart with `file` and `notes`) to disk, checks it
/// and records the build. Shared by the API and the web UI.
pub async fn receive_build(state: &AppState, headers: &HeaderMap, body: Body) -> Result<BuildRow, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.config.max_upload_size) {
        return Err(too_large(state.config.max_upload_size));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let (received, notes) = if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(content_type).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-multipart",
                format!("The multipart body is malformed: {error}."),
            )
        })?;
        let constraints = multer::Constraints::new()
            .allowed_fields(vec!["file", "notes"])
            .size_limit(multer::SizeLimit::new().for_field("notes", MAX_NOTES_BYTES));
        let mut multipart = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
        let mut received = None;
        let mut notes = None;
        while let Some(field) = multipart.next_field().await.map_err(bad_multipart)? {
            match field.name() {
                Some("file") if received.is_none() => received = Some(receive(state, field).await?),
                Some("notes") => notes = Some(field.text().await.map_err(bad_multipart)?),
                _ => {}
            }
        }
        let received = received.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing-file",
                "The multipart body has no `file` field holding the .ipa.",
            )
        })?;
        (received, notes)
    } else {
        let stream = body.into_data_stream().map_err(|error| error.to_string());
        (receive(state, stream).await?, None)
    };
    ingest(state, received, notes.filter(|notes| !notes.trim().is_empty())).await
}

fn bad_multipart(error: multer::Error) -> ApiError {
    match error {
        multer::Error::FieldSizeExceeded { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "notes-too-large",
            format!("The release notes are larger than {MAX_NOTES_BYTES} bytes."),
        ),
        multer::Error::UnknownField { field_name } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-multipart",
            format!("Unknown field {field_name:?}: send `file` and optionally `notes`."),
        ),
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-multipart",
            format!("The multipart body is malformed: {other}."),
        ),
    }
}

/// `GET /api/v1/builds/{id}`.
pub async fn get_build(
    State(state): State<AppState>,
    _token: ApiToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BuildJson>, ApiError> {
    let build = state.db.build_by_id(&id).await.map_err(|_| ApiError::not_found("The build"))?;
    Ok(Json(BuildJson::new(&build, &base_url(&state, &headers))))
}

/// `DELETE /api/v1/builds/{id}`.
pub async fn delete_build(
    State(state): State<AppState>,
    _token: ApiToken,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_build(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a build: the row first (so nothing serves it), then its files. Returns the deleted
/// build.
pub async fn remove_build(state: &AppState, id: &str) -> Result<BuildRow, ApiError> {
    let build = state.db.delete_build(id).await.map_err(|error| match error {
        crate::db::DbError::NotFound => ApiError::not_found("The build"),
        other => other.into(),
    })?;
    if let Err(error) = state.storage.delete_build(&build.id).await {
        // The row is gone; start-up reconciliation removes what could not be deleted now.
        tracing::warn!(build.id = %build.id, %error, "could not delete the files of a deleted build");
    }
    Ok(build)
}

#[derive(Debug, Serialize)]
struct AppJson {
    bundle_id: String,
    name: Option<String>,
    build_count: u64,
    latest_build: BuildJson,
}

/// `GET /api/v1/apps`: every app with its newest build.
pub async fn list_apps(
    State(state): State<AppState>,
    _token: ApiToken,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let base = base_url(&state, &headers);
    let apps: Vec<AppJson> = state
        .db
        .list_apps()
        .await?
        .into_iter()
        .map(|app| AppJson {
            latest_build: BuildJson::new(&app.latest, &base),
            bundle_id: app.bundle_id,
            name: app.name,
            build_count: app.build_count,
        })
        .collect();
    Ok(Json(serde_json::json!({ "apps": apps })))
}

/// Paging of lists.
#[derive(Debug, Deserialize)]
pub struct Page {
    page: Option<u64>,
    per_page: Option<u64>,
}

/// `GET /api/v1/apps/{app}/builds?page=1&per_page=20`: newest first.
pub async fn list_builds(
    State(state): State<AppState>,
    _token: ApiToken,
    headers: HeaderMap,
    Path(app): Path<String>,
    Query(page): Query<Page>,
) -> Result<impl IntoResponse, ApiError> {
    let per_page = page.per_page.unwrap_or(20).clamp(1, 100);
    let number = page.page.unwrap_or(1).max(1);
    let (builds, total) = state.db.list_builds(&app, (number - 1).saturating_mul(per_page), per_page).await?;
    if total == 0 {
        return Err(ApiError::not_found(&format!("The app {app}")));
    }
    let base = base_url(&state, &headers);
    let builds: Vec<BuildJson> = builds.iter().map(|build| BuildJson::new(build, &base)).collect();
    Ok(Json(serde_json::json!({
        "builds": builds,
        "page": number,
        "per_page": per_page,
        "total": total,
    })))
}
