//! The uploader's side of sharing: create, list and revoke share links (API), channels with
//! their stable pages, and a build's install analytics (API).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::api::{AdminToken, BuildJson};
use super::base_url;
use super::share::{channel_page_token, channel_page_url, link_url};
use crate::AppState;
use crate::db::{BuildRow, DbError, EventCounts, LinkFilter, LinkRow, timestamp};
use crate::error::{ApiError, ErrorJson};
use crate::sharing::{LinkState, MAX_PASSWORD_BYTES};

/// Longest label.
const MAX_LABEL_CHARS: usize = 100;

/// A new share link.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLinkJson {
    /// A password testers must type on the link's page first (stored as an argon2id hash).
    password: Option<String>,
    /// When the link stops working, RFC 3339 (`2026-12-01T18:00:00Z`).
    #[schema(example = "2026-12-01T18:00:00Z")]
    expires_at: Option<String>,
    /// How many installs (manifest fetches by the iOS installer) the link allows.
    max_installs: Option<u64>,
    /// A name for the link in lists ("QA team").
    label: Option<String>,
}

/// A share link as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkJson {
    /// Its id in the API.
    id: String,
    /// The page to hand to testers.
    url: String,
    /// `build` (one build) or `channel` (always the channel's newest build).
    #[schema(example = "build")]
    kind: &'static str,
    /// The build (build links).
    build_id: Option<String>,
    /// The app.
    bundle_id: String,
    /// The channel (channel links).
    channel: Option<String>,
    /// Its label.
    label: Option<String>,
    /// Whether testers must type a password.
    password_protected: bool,
    /// When it stops working, RFC 3339.
    expires_at: Option<String>,
    /// Installs it allows.
    max_installs: Option<u64>,
    /// Installs started through it.
    installs: u64,
    /// `active`, `revoked`, `expired` or `exhausted`.
    #[schema(example = "active")]
    state: &'static str,
    /// Creation time, RFC 3339.
    created_at: String,
    /// Revocation time, RFC 3339.
    revoked_at: Option<String>,
    /// What testers did through it.
    stats: EventCounts,
}

impl LinkJson {
    async fn new(state: &AppState, link: &LinkRow, base: &str) -> Result<LinkJson, ApiError> {
        state.analytics.flush().await;
        Ok(LinkJson {
            id: link.id.clone(),
            url: link_url(base, link),
            kind: if link.build_id.is_some() { "build" } else { "channel" },
            build_id: link.build_id.clone(),
            bundle_id: link.bundle_id.clone(),
            channel: link.channel.clone(),
            label: link.label.clone(),
            password_protected: link.password_hash.is_some(),
            expires_at: link.expires_at.map(timestamp),
            max_installs: link.max_installs,
            installs: link.installs,
            state: LinkState::of(link, OffsetDateTime::now_utc()).word(),
            created_at: timestamp(link.created_at),
            revoked_at: link.revoked_at.map(timestamp),
            stats: state.db.link_event_counts(&link.id).await?,
        })
    }
}

/// What a link is to: one build, or a channel's newest.
pub(crate) enum LinkTarget<'a> {
    /// One build.
    Build(&'a BuildRow),
    /// An app's channel.
    Channel { bundle_id: &'a str, channel: &'a str },
}

/// A share link's settings, checked.
pub(crate) struct LinkSettings {
    pub password: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub max_installs: Option<u64>,
    pub label: Option<String>,
}

impl LinkSettings {
    /// Checks what a client sent: a non-empty password of sane length, an expiry in the future,
    /// at least one install, a short label.
    pub(crate) fn new(
        password: Option<String>,
        expires_at: Option<OffsetDateTime>,
        max_installs: Option<u64>,
        label: Option<String>,
    ) -> Result<LinkSettings, ApiError> {
        let bad = |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad-link", message.to_owned());
        if let Some(password) = &password {
            if password.is_empty() {
                return Err(bad("The password is empty: leave it out for a link without password."));
            }
            if password.len() > MAX_PASSWORD_BYTES {
                return Err(bad("The password is longer than 1024 bytes."));
            }
        }
        if expires_at.is_some_and(|at| at <= OffsetDateTime::now_utc()) {
            return Err(bad("The expiry is in the past: give a time in the future."));
        }
        if max_installs == Some(0) {
            return Err(bad("max_installs must be at least 1; leave it out for no limit."));
        }
        let label = label.map(|label| label.trim().to_owned()).filter(|label| !label.is_empty());
        if label.as_ref().is_some_and(|label| label.chars().count() > MAX_LABEL_CHARS) {
            return Err(bad("The label is longer than 100 characters."));
        }
        if label.as_ref().is_some_and(|label| label.chars().any(char::is_control)) {
            return Err(bad("The label holds a control character (a line break, tab or NUL): write it on one line."));
        }
        Ok(LinkSettings { password, expires_at, max_installs, label })
    }

    fn from_json(json: NewLinkJson) -> Result<LinkSettings, ApiError> {
        let expires_at = json
            .expires_at
            .map(|text| {
                OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad-link",
                        format!("expires_at {text:?} is not an RFC 3339 time such as 2026-12-01T18:00:00Z."),
                    )
                })
            })
            .transpose()?;
        LinkSettings::new(json.password, expires_at, json.max_installs, json.label)
    }
}

/// Creates a share link.
pub(crate) async fn create_link(
    state: &AppState,
    target: LinkTarget<'_>,
    settings: LinkSettings,
) -> Result<LinkRow, ApiError> {
    let password_hash = match settings.password {
        Some(password) => Some(crate::accounts::hash_password(password).await.map_err(ApiError::internal)?),
        None => None,
    };
    let (build_id, bundle_id, channel) = match target {
        LinkTarget::Build(build) => (Some(build.id.clone()), build.bundle_id.clone(), None),
        LinkTarget::Channel { bundle_id, channel } => (None, bundle_id.to_owned(), Some(channel.to_owned())),
    };
    let link = LinkRow {
        id: crate::tokens::random_hex(8),
        token: crate::tokens::random_hex(16),
        build_id,
        bundle_id,
        channel,
        label: settings.label,
        password_hash,
        expires_at: settings.expires_at,
        max_installs: settings.max_installs,
        installs: 0,
        created_at: OffsetDateTime::now_utc(),
        revoked_at: None,
    };
    state.db.insert_link(&link).await?;
    tracing::info!(link.id = %link.id, bundle_id = %link.bundle_id, "created share link {}", link.id);
    Ok(link)
}

/// Share a build.
///
/// The answer's `url` is the page to hand to testers. With a password, they type it on that
/// page first; the install button then carries short-lived signed URLs, so the iOS installer
/// (which sends no cookies) can fetch the manifest and the `.ipa`.
#[utoipa::path(
    post, path = "/api/v1/builds/{id}/links", tag = "sharing",
    params(("id" = String, Path, description = "The build's id.")),
    request_body = NewLinkJson,
    responses(
        (status = 201, description = "The new link.", body = LinkJson),
        (status = 400, description = "A bad setting (the error says which).", body = ErrorJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such build.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn create_build_link(
    State(state): State<AppState>,
    _admin: AdminToken,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<NewLinkJson>,
) -> Result<(StatusCode, Json<LinkJson>), ApiError> {
    let build = build_or_404(&state, &id).await?;
    let link = create_link(&state, LinkTarget::Build(&build), LinkSettings::from_json(body)?).await?;
    Ok((StatusCode::CREATED, Json(LinkJson::new(&state, &link, &base_url(&state, &headers)).await?)))
}

/// Share a channel: the link always serves the channel's newest build.
#[utoipa::path(
    post, path = "/api/v1/apps/{app}/channels/{channel}/links", tag = "sharing",
    params(
        ("app" = String, Path, description = "The app's bundle id."),
        ("channel" = String, Path, description = "The channel, such as `beta`."),
    ),
    request_body = NewLinkJson,
    responses(
        (status = 201, description = "The new link.", body = LinkJson),
        (status = 400, description = "A bad setting (the error says which).", body = ErrorJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "The app has no build in that channel.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn create_channel_link(
    State(state): State<AppState>,
    _admin: AdminToken,
    headers: HeaderMap,
    Path((app, channel)): Path<(String, String)>,
    Json(body): Json<NewLinkJson>,
) -> Result<(StatusCode, Json<LinkJson>), ApiError> {
    if state.db.latest_in_channel(&app, &channel).await?.is_none() {
        return Err(ApiError::not_found(&format!("A build of {app} in the channel {channel}")));
    }
    let target = LinkTarget::Channel { bundle_id: &app, channel: &channel };
    let link = create_link(&state, target, LinkSettings::from_json(body)?).await?;
    Ok((StatusCode::CREATED, Json(LinkJson::new(&state, &link, &base_url(&state, &headers)).await?)))
}

/// Which links to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LinksQuery {
    /// Only the links to this build.
    build_id: Option<String>,
    /// Only the links of this app (build and channel links).
    app: Option<String>,
}

/// Every share link.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinksJson {
    /// Newest first.
    links: Vec<LinkJson>,
}

/// List share links, newest first, with what testers did through each.
#[utoipa::path(
    get, path = "/api/v1/links", tag = "sharing",
    params(LinksQuery),
    responses(
        (status = 200, description = "The links.", body = LinksJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn list_links(
    State(state): State<AppState>,
    _admin: AdminToken,
    headers: HeaderMap,
    Query(query): Query<LinksQuery>,
) -> Result<Json<LinksJson>, ApiError> {
    let filter = LinkFilter { build_id: query.build_id, bundle_id: query.app };
    let base = base_url(&state, &headers);
    let mut links = Vec::new();
    for link in state.db.links(&filter).await? {
        links.push(LinkJson::new(&state, &link, &base).await?);
    }
    Ok(Json(LinksJson { links }))
}

/// Read a share link.
#[utoipa::path(
    get, path = "/api/v1/links/{id}", tag = "sharing",
    params(("id" = String, Path, description = "The link's id.")),
    responses(
        (status = 200, description = "The link.", body = LinkJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such link.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn get_link(
    State(state): State<AppState>,
    _admin: AdminToken,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<LinkJson>, ApiError> {
    let link = state.db.link_by_id(&id).await?.ok_or_else(|| ApiError::not_found("The link"))?;
    Ok(Json(LinkJson::new(&state, &link, &base_url(&state, &headers)).await?))
}

/// Revoke a share link: its page answers `410 Gone`, and installs in progress through it stop.
#[utoipa::path(
    delete, path = "/api/v1/links/{id}", tag = "sharing",
    params(("id" = String, Path, description = "The link's id.")),
    responses(
        (status = 204, description = "Revoked (or already revoked)."),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such link.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn revoke_link(
    State(state): State<AppState>,
    _admin: AdminToken,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.db.revoke_link(&id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found("The link")) }
}

/// A channel of an app.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelJson {
    /// Its name.
    name: String,
    /// Builds in it.
    build_count: u64,
    /// The stable install page of its newest build (the URL stays; the build changes).
    page_url: String,
    /// Its newest build.
    latest_build: BuildJson,
}

/// An app's channels.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelsJson {
    /// By name.
    channels: Vec<ChannelJson>,
}

/// List an app's channels, each with its newest build and stable install page.
#[utoipa::path(
    get, path = "/api/v1/apps/{app}/channels", tag = "sharing",
    params(("app" = String, Path, description = "The app's bundle id.")),
    responses(
        (status = 200, description = "The channels.", body = ChannelsJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such app.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn list_channels(
    State(state): State<AppState>,
    _admin: AdminToken,
    headers: HeaderMap,
    Path(app): Path<String>,
) -> Result<Json<ChannelsJson>, ApiError> {
    let rows = state.db.channels(&app).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(&format!("The app {app}")));
    }
    let base = base_url(&state, &headers);
    let mut channels = Vec::with_capacity(rows.len());
    for row in rows {
        let token = channel_page_token(&state, &app, &row.name).await?;
        channels.push(ChannelJson {
            page_url: channel_page_url(&base, &token),
            latest_build: BuildJson::new(&row.latest, &base),
            name: row.name,
            build_count: row.build_count,
        });
    }
    Ok(Json(ChannelsJson { channels }))
}

/// Installs by device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceInstallsJson {
    /// Model identifier from the installer (`iPhone15,2`).
    device_model: Option<String>,
    /// The model in words (`iPhone 14 Pro`), when known.
    model_name: Option<String>,
    /// iOS version.
    os_version: Option<String>,
    /// Manifest fetches (install attempts).
    installs: u64,
}

/// A share link's figures, in a build's analytics.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkStatsJson {
    /// The link's id.
    id: String,
    /// Its label.
    label: Option<String>,
    /// Its state.
    state: &'static str,
    /// What testers did through it.
    stats: EventCounts,
}

/// A build's install analytics.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyticsJson {
    /// Through every page and link.
    total: EventCounts,
    /// Install attempts by device model and iOS version (from the installer's user agent).
    devices: Vec<DeviceInstallsJson>,
    /// Per share link to this build (channel links count the builds they served).
    links: Vec<LinkStatsJson>,
}

/// A build's install analytics: page views, manifest fetches (with device model and iOS
/// version), downloads started and completed, in all and per share link.
#[utoipa::path(
    get, path = "/api/v1/builds/{id}/analytics", tag = "sharing",
    params(("id" = String, Path, description = "The build's id.")),
    responses(
        (status = 200, description = "The figures.", body = AnalyticsJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such build.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn build_analytics(
    State(state): State<AppState>,
    _admin: AdminToken,
    Path(id): Path<String>,
) -> Result<Json<AnalyticsJson>, ApiError> {
    let build = build_or_404(&state, &id).await?;
    Ok(Json(analytics_of(&state, &build).await?))
}

/// A build's analytics (the API's and the build page's).
pub(crate) async fn analytics_of(state: &AppState, build: &BuildRow) -> Result<AnalyticsJson, ApiError> {
    state.analytics.flush().await;
    let total = state.db.build_event_counts(&build.id).await?;
    let devices = state
        .db
        .build_install_devices(&build.id)
        .await?
        .into_iter()
        .map(|row| DeviceInstallsJson {
            model_name: row.device_model.as_deref().and_then(crate::devices::models::marketing_name).map(str::to_owned),
            device_model: row.device_model,
            os_version: row.os_version,
            installs: row.count,
        })
        .collect();
    let now = OffsetDateTime::now_utc();
    let mut links = Vec::new();
    for link in state.db.links(&LinkFilter { build_id: Some(build.id.clone()), bundle_id: None }).await? {
        links.push(LinkStatsJson {
            stats: state.db.link_event_counts(&link.id).await?,
            state: LinkState::of(&link, now).word(),
            id: link.id,
            label: link.label,
        });
    }
    Ok(AnalyticsJson { total, devices, links })
}

async fn build_or_404(state: &AppState, id: &str) -> Result<BuildRow, ApiError> {
    match state.db.build_by_id(id).await {
        Ok(build) => Ok(build),
        Err(DbError::NotFound) => Err(ApiError::not_found("The build")),
        Err(other) => Err(other.into()),
    }
}
