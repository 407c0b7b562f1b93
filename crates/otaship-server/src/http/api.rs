//! API v1: upload, read, list and delete builds. JSON in and out; bearer-token auth, with the
//! token's scope deciding what it may do: [`ApiToken`] lets any live token in (the upload
//! routes), [`AdminToken`] only admin tokens (everything else).

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{BuildUrls, base_url};
use crate::db::{BuildRow, timestamp};
use crate::error::{ApiError, ErrorJson};
use crate::ingest::{BuildDetails, Ingested, MAX_NOTES_BYTES, ingest, receive, too_large};
use crate::tokens::Scope;
use crate::{AppState, tokens};

/// A request that carried a live API token of any scope: for the routes an upload-only token
/// may use (uploading a build, the resumable uploads). Missing, wrong or revoked: 401.
pub struct ApiToken {
    /// What the token may do.
    pub scope: Scope,
}

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
        match state.db.live_token(&tokens::hash(token)).await? {
            Some(live) => Ok(ApiToken { scope: live.scope }),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// A request that carried a live admin token: every route that reads, changes or deletes what
/// is on the server. Missing, wrong or revoked: 401; an upload-only token: 403
/// `insufficient-scope`.
pub struct AdminToken;

impl FromRequestParts<AppState> for AdminToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = ApiToken::from_request_parts(parts, state).await?;
        match token.scope {
            Scope::Admin => Ok(AdminToken),
            Scope::Upload => Err(insufficient_scope(&format!("{} {}", parts.method, parts.uri.path()))),
        }
    }
}

/// 403 for an upload-only token on a route that needs an admin token; `what` names the route.
pub(crate) fn insufficient_scope(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "insufficient-scope",
        format!(
            "This token may only upload builds; use an admin token (otaship token create --scope admin) for {what}."
        ),
    )
}

/// A build as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuildJson {
    /// The build's id in the API.
    id: String,
    /// `CFBundleIdentifier`; the app it belongs to.
    #[schema(example = "com.example.app")]
    bundle_id: String,
    /// Display name.
    name: Option<String>,
    /// `CFBundleShortVersionString`.
    #[schema(example = "1.4.0")]
    version: Option<String>,
    /// `CFBundleVersion`.
    #[schema(example = "412")]
    build: Option<String>,
    /// Bytes of the `.ipa`.
    size: u64,
    /// SHA-256 of the `.ipa`, hex.
    sha256: String,
    /// Upload time, RFC 3339.
    created_at: String,
    /// Release notes.
    notes: Option<String>,
    /// The channel it was pushed to.
    #[schema(example = "beta")]
    channel: String,
    /// Key/value pairs given at upload (git branch, commit, CI run URL).
    metadata: std::collections::BTreeMap<String, String>,
    /// `MinimumOSVersion`.
    min_os: Value,
    /// Platform (`ios`, ...).
    platform: Value,
    /// `UIDeviceFamily`, as names.
    device_families: Value,
    /// Facts about the icon.
    icon: Value,
    /// The embedded provisioning profile: kind, team, expiry, devices.
    profile: Value,
    /// App extensions and their profiles.
    extensions: Value,
    /// Whether the build can install over the air, and if not why.
    installable: Value,
    /// The install page to hand to testers.
    install_url: String,
    /// The manifest (`itms-services` points here).
    manifest_url: String,
    /// The `.ipa` itself.
    download_url: String,
    /// The icon as a standard PNG.
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
            channel: build.channel.clone(),
            metadata: build.metadata.clone(),
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

/// The multipart form of `POST /api/v1/builds`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "describes a form for the API document; the form is read field by field")]
pub struct UploadForm {
    /// The `.ipa`.
    #[schema(format = Binary, value_type = String)]
    file: Vec<u8>,
    /// Release notes (Markdown).
    notes: Option<String>,
    /// Channel, such as `beta` [default: `default`].
    channel: Option<String>,
    /// `key=value` metadata; repeat the field for more.
    meta: Option<Vec<String>>,
}

/// Upload a build in one request.
///
/// The body is the raw `.ipa` (`curl --data-binary @app.ipa`), or `multipart/form-data` with a
/// `file` field and optional `notes`, `channel` and `meta` (`key=value`, repeatable) fields.
/// With a raw body those go in the query string. Uploading a file the server already has
/// returns the existing build (`200`), so retries are safe. For large files over unreliable
/// links, use the resumable uploads.
#[utoipa::path(
    post, path = "/api/v1/builds", tag = "builds",
    params(
        ("notes" = Option<String>, Query, description = "Release notes (Markdown)."),
        ("channel" = Option<String>, Query, description = "Channel, such as `beta` [default: `default`]."),
        ("meta" = Option<Vec<String>>, Query, description = "`key=value` metadata, repeatable: `meta=git_commit=abc123`."),
    ),
    request_body(
        description = "The `.ipa` as the body, or a form with the `.ipa` as `file`.",
        content(
            (String = "application/octet-stream"),
            (UploadForm = "multipart/form-data"),
        )
    ),
    responses(
        (status = 201, description = "The new build.", body = BuildJson),
        (status = 200, description = "The existing build of the same file.", body = BuildJson),
        (status = 400, description = "Not an installable archive, or a bad field (the error says which).", body = ErrorJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 413, description = "Larger than the server's limit.", body = ErrorJson),
        (status = 507, description = "The server's disk is full.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn upload_build(
    State(state): State<AppState>,
    _token: ApiToken,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let ingested = receive_build(&state, &headers, query.as_deref(), body).await?;
    Ok(build_created(&state, &headers, &ingested))
}

/// `201 Created` with a new build, `200 OK` with the build that already held the same file.
fn build_created(state: &AppState, headers: &HeaderMap, ingested: &Ingested) -> (StatusCode, Json<BuildJson>) {
    let status = if ingested.created { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(BuildJson::new(&ingested.build, &base_url(state, headers))))
}

/// What the uploader said about a build, as sent (query string or form fields), before
/// [`BuildDetails::new`] checks it.
#[derive(Default)]
struct SentDetails {
    notes: Option<String>,
    channel: Option<String>,
    metadata: Vec<(String, String)>,
}

impl SentDetails {
    fn from_query(query: Option<&str>) -> Result<Self, ApiError> {
        let mut sent = SentDetails::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "notes" => sent.notes = Some(value.into_owned()),
                "channel" => sent.channel = Some(value.into_owned()),
                "meta" => sent.metadata.push(BuildDetails::metadata_entry(&value)?),
                _ => {}
            }
        }
        Ok(sent)
    }
}

/// Streams an upload body (raw `.ipa`, or multipart with `file`, `notes`, `channel`, `meta`) to
/// disk, checks it and records the build. Shared by the API and the web UI.
pub async fn receive_build(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
) -> Result<Ingested, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.config.max_upload_size) {
        return Err(too_large(state.config.max_upload_size));
    }
    let mut sent = SentDetails::from_query(query)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let received = if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(content_type).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-multipart",
                format!("The multipart body is malformed: {error}."),
            )
        })?;
        let small = MAX_NOTES_BYTES as u64;
        let constraints =
            multer::Constraints::new().allowed_fields(vec!["file", "notes", "channel", "meta"]).size_limit(
                multer::SizeLimit::new().for_field("notes", small).for_field("channel", 1024).for_field("meta", 4096),
            );
        let mut multipart = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
        let mut received = None;
        while let Some(field) = multipart.next_field().await.map_err(bad_multipart)? {
            match field.name() {
                Some("file") if received.is_none() => received = Some(receive(state, field).await?),
                Some("notes") => sent.notes = Some(field.text().await.map_err(bad_multipart)?),
                Some("channel") => sent.channel = Some(field.text().await.map_err(bad_multipart)?),
                Some("meta") => {
                    sent.metadata.push(BuildDetails::metadata_entry(&field.text().await.map_err(bad_multipart)?)?);
                }
                _ => {}
            }
        }
        received.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing-file",
                "The multipart body has no `file` field holding the .ipa.",
            )
        })?
    } else {
        let stream = body.into_data_stream().map_err(|error| error.to_string());
        receive(state, stream).await?
    };
    let details = BuildDetails::new(sent.notes, sent.channel.as_deref(), sent.metadata)?;
    ingest(state, received, details).await
}

fn bad_multipart(error: multer::Error) -> ApiError {
    match error {
        multer::Error::FieldSizeExceeded { field_name, limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            if field_name.as_deref() == Some("notes") { "notes-too-large" } else { "field-too-large" },
            format!("The field `{}` is larger than {limit} bytes.", field_name.as_deref().unwrap_or("?")),
        ),
        multer::Error::UnknownField { field_name } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-multipart",
            format!("Unknown field {field_name:?}: send `file` and optionally `notes`, `channel` and `meta`."),
        ),
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-multipart",
            format!("The multipart body is malformed: {other}."),
        ),
    }
}

/// Read a build.
#[utoipa::path(
    get, path = "/api/v1/builds/{id}", tag = "builds",
    params(("id" = String, Path, description = "The build's id.")),
    responses(
        (status = 200, description = "The build.", body = BuildJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such build.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn get_build(
    State(state): State<AppState>,
    _token: AdminToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BuildJson>, ApiError> {
    let build = state.db.build_by_id(&id).await.map_err(|_| ApiError::not_found("The build"))?;
    Ok(Json(BuildJson::new(&build, &base_url(&state, &headers))))
}

/// Delete a build and its files.
#[utoipa::path(
    delete, path = "/api/v1/builds/{id}", tag = "builds",
    params(("id" = String, Path, description = "The build's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such build.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn delete_build(
    State(state): State<AppState>,
    _token: AdminToken,
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
    crate::ingest::remove_files(state, &build).await;
    Ok(build)
}

/// An app and its newest build.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppJson {
    /// `CFBundleIdentifier`.
    bundle_id: String,
    /// Name of the newest build.
    name: Option<String>,
    /// How many builds it has.
    build_count: u64,
    /// The newest build.
    latest_build: BuildJson,
}

/// Every app.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppsJson {
    /// Most recently updated first.
    apps: Vec<AppJson>,
}

/// One page of an app's builds.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuildsPageJson {
    /// Newest first.
    builds: Vec<BuildJson>,
    /// This page's number, from 1.
    page: u64,
    /// Builds per page.
    per_page: u64,
    /// Builds of the app in all.
    total: u64,
}

/// List apps, each with its newest build.
#[utoipa::path(
    get, path = "/api/v1/apps", tag = "apps",
    responses(
        (status = 200, description = "Every app.", body = AppsJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn list_apps(
    State(state): State<AppState>,
    _token: AdminToken,
    headers: HeaderMap,
) -> Result<Json<AppsJson>, ApiError> {
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
    Ok(Json(AppsJson { apps }))
}

/// Paging of lists.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Page {
    /// Page number, from 1 [default: 1].
    page: Option<u64>,
    /// Items per page, 1 to 100 [default: 20].
    per_page: Option<u64>,
}

/// List an app's builds, newest first.
#[utoipa::path(
    get, path = "/api/v1/apps/{app}/builds", tag = "apps",
    params(("app" = String, Path, description = "The app's bundle id."), Page),
    responses(
        (status = 200, description = "One page of builds.", body = BuildsPageJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such app.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn list_builds(
    State(state): State<AppState>,
    _token: AdminToken,
    headers: HeaderMap,
    Path(app): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<BuildsPageJson>, ApiError> {
    let per_page = page.per_page.unwrap_or(20).clamp(1, 100);
    let number = page.page.unwrap_or(1).max(1);
    let (builds, total) = state.db.list_builds(&app, (number - 1).saturating_mul(per_page), per_page).await?;
    if total == 0 {
        return Err(ApiError::not_found(&format!("The app {app}")));
    }
    let base = base_url(&state, &headers);
    let builds: Vec<BuildJson> = builds.iter().map(|build| BuildJson::new(build, &base)).collect();
    Ok(Json(BuildsPageJson { builds, page: number, per_page, total }))
}
