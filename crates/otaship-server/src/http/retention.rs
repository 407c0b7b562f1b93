//! Retention and disk use over HTTP: the rules API (read, set, remove, run with or without
//! `dry_run`) and the **Storage** page (`/admin/storage`): what the builds take per app and
//! channel, the free space where they are stored, the rules, a preview of what they remove and
//! a button that applies them. Planning and deleting belong to `crate::retention`.

use askama::Template;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::api::AdminToken;
use super::pages::human_size;
use super::ui::{PageError, Session, private_page};
use crate::AppState;
use crate::config::StorageSetting;
use crate::db::{RetentionRule, timestamp};
use crate::error::{ApiError, ErrorJson};
use crate::ingest::BuildDetails;
use crate::retention::{self, Doomed, MAX_AGE_DAYS, MAX_KEEP_LAST};

/// A retention rule as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRuleJson {
    /// The app.
    #[schema(example = "com.example.app")]
    bundle_id: String,
    /// The channel it governs; `null` for every channel of the app that has no rule of its own.
    #[schema(example = "beta")]
    channel: Option<String>,
    /// Builds kept per channel, newest first.
    #[schema(example = 5)]
    keep_last: Option<u32>,
    /// Builds older than this many days go.
    #[schema(example = 30)]
    max_age_days: Option<u32>,
    /// When the rule was last set, RFC 3339.
    updated_at: String,
}

impl RetentionRuleJson {
    fn new(rule: &RetentionRule) -> Self {
        RetentionRuleJson {
            bundle_id: rule.bundle_id.clone(),
            channel: Some(rule.channel.clone()).filter(|channel| !channel.is_empty()),
            keep_last: rule.keep_last,
            max_age_days: rule.max_age_days,
            updated_at: timestamp(rule.updated_at),
        }
    }
}

/// Every retention rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRulesJson {
    /// By app; an app's rule for every channel before its channels' own.
    rules: Vec<RetentionRuleJson>,
}

/// The body of `PUT /api/v1/apps/{app}/retention`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRuleRequest {
    /// The channel the rule governs; absent, `null` or empty for every channel of the app
    /// without a rule of its own. A channel's own rule replaces the app's for that channel.
    #[schema(example = "beta")]
    channel: Option<String>,
    /// Keep this many builds per channel, newest first (1 to 100000).
    #[schema(example = 5)]
    keep_last: Option<i64>,
    /// Remove builds older than this many days (1 to 36500).
    #[schema(example = 30)]
    max_age_days: Option<i64>,
}

/// A build retention removes (or would remove).
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionBuildJson {
    /// The build's id.
    id: String,
    /// The app.
    bundle_id: String,
    /// Its channel.
    channel: String,
    /// `CFBundleShortVersionString`.
    version: Option<String>,
    /// `CFBundleVersion`.
    build: Option<String>,
    /// Upload time, RFC 3339.
    created_at: String,
    /// Bytes of the `.ipa`.
    size: u64,
    /// Why it goes.
    #[schema(example = "beyond the newest 5 of beta")]
    reason: String,
}

/// What a run of the rules removed, or would remove.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRunJson {
    /// True when nothing was deleted: `builds` is what a real run would remove now.
    dry_run: bool,
    /// The builds removed (or to remove), by app and channel, newest first.
    builds: Vec<RetentionBuildJson>,
    /// Their `.ipa` bytes.
    bytes_freed: u64,
}

impl RetentionRunJson {
    fn new(dry_run: bool, doomed: &[Doomed]) -> Self {
        RetentionRunJson {
            dry_run,
            builds: doomed
                .iter()
                .map(|doomed| RetentionBuildJson {
                    id: doomed.build.id.clone(),
                    bundle_id: doomed.build.bundle_id.clone(),
                    channel: doomed.build.channel.clone(),
                    version: doomed.build.version.clone(),
                    build: doomed.build.build.clone(),
                    created_at: timestamp(doomed.build.created_at),
                    size: doomed.build.size,
                    reason: doomed.reason.clone(),
                })
                .collect(),
            bytes_freed: doomed.iter().map(|doomed| doomed.build.size).sum(),
        }
    }
}

/// The channel a rule governs, as stored: `""` for every channel, else a channel name as
/// uploads spell it (lower case).
fn rule_channel(channel: Option<&str>) -> Result<String, ApiError> {
    match channel.map(str::trim).filter(|channel| !channel.is_empty()) {
        None => Ok(String::new()),
        Some(channel) => Ok(BuildDetails::new(None, Some(channel), Vec::new())?.channel),
    }
}

/// A count of a rule: absent, or within `1..=max`.
fn rule_count(value: Option<i64>, field: &str, max: u32) -> Result<Option<u32>, ApiError> {
    match value {
        None => Ok(None),
        Some(value) => u32::try_from(value).ok().filter(|value| (1..=max).contains(value)).map(Some).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-retention-rule",
                format!("`{field}` must be a whole number from 1 to {max}, not {value}."),
            )
        }),
    }
}

/// Checks a rule and stores it (the app must have builds).
async fn set_rule(
    state: &AppState,
    bundle_id: &str,
    channel: Option<&str>,
    keep_last: Option<i64>,
    max_age_days: Option<i64>,
) -> Result<RetentionRule, ApiError> {
    let channel = rule_channel(channel)?;
    let keep_last = rule_count(keep_last, "keep_last", MAX_KEEP_LAST)?;
    let max_age_days = rule_count(max_age_days, "max_age_days", MAX_AGE_DAYS)?;
    if keep_last.is_none() && max_age_days.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty-retention-rule",
            "A retention rule needs `keep_last` (builds to keep per channel), `max_age_days` (days a build is kept), \
             or both; to remove a rule, delete it.",
        ));
    }
    let (_, builds) = state.db.list_builds(bundle_id, 0, 1).await?;
    if builds == 0 {
        return Err(ApiError::not_found(&format!("The app {bundle_id}")));
    }
    let rule = RetentionRule {
        bundle_id: bundle_id.to_owned(),
        channel,
        keep_last,
        max_age_days,
        updated_at: OffsetDateTime::now_utc(),
    };
    state.db.set_retention_rule(&rule).await?;
    tracing::info!(bundle_id, channel = %rule.channel, ?keep_last, ?max_age_days, "retention rule set");
    Ok(rule)
}

/// Removes a rule; 404 when there is none.
async fn remove_rule(state: &AppState, bundle_id: &str, channel: Option<&str>) -> Result<(), ApiError> {
    let channel = rule_channel(channel)?;
    if state.db.delete_retention_rule(bundle_id, &channel).await? {
        Ok(())
    } else {
        let which = if channel.is_empty() { "every channel".to_owned() } else { format!("the channel {channel}") };
        Err(ApiError::not_found(&format!("The retention rule of {bundle_id} for {which}")))
    }
}

/// Runs the rules, or only says what they would remove.
async fn run(state: &AppState, dry_run: bool) -> Result<Vec<Doomed>, ApiError> {
    Ok(if dry_run { retention::plan(&state.db).await? } else { retention::apply(state).await? })
}

/// List the retention rules.
#[utoipa::path(
    get, path = "/api/v1/retention", tag = "retention",
    responses(
        (status = 200, description = "Every rule.", body = RetentionRulesJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn list_rules(
    State(state): State<AppState>,
    _admin: AdminToken,
) -> Result<Json<RetentionRulesJson>, ApiError> {
    let rules = state.db.retention_rules().await?.iter().map(RetentionRuleJson::new).collect();
    Ok(Json(RetentionRulesJson { rules }))
}

/// Set an app's retention rule, for one channel or for all of them.
///
/// A build goes when it is beyond the newest `keep_last` of its channel, or older than
/// `max_age_days`; either suffices. The newest build of every channel always stays. Rules are
/// applied hourly (`--retention-interval`) and by `POST /api/v1/retention/run`.
#[utoipa::path(
    put, path = "/api/v1/apps/{app}/retention", tag = "retention",
    params(("app" = String, Path, description = "The app's bundle id.")),
    request_body = RetentionRuleRequest,
    responses(
        (status = 200, description = "The rule as stored.", body = RetentionRuleJson),
        (status = 400, description = "Neither `keep_last` nor `max_age_days`, or one out of range, or a bad channel.", body = ErrorJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such app.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn put_rule(
    State(state): State<AppState>,
    _admin: AdminToken,
    Path(app): Path<String>,
    body: Result<Json<RetentionRuleRequest>, JsonRejection>,
) -> Result<Json<RetentionRuleJson>, ApiError> {
    let Json(request) = body.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-json",
            format!(
                "The body must be a JSON object with `keep_last`, `max_age_days` or both, and optionally `channel`: {}",
                rejection.body_text()
            ),
        )
    })?;
    let rule = set_rule(&state, &app, request.channel.as_deref(), request.keep_last, request.max_age_days).await?;
    Ok(Json(RetentionRuleJson::new(&rule)))
}

/// Which rule of an app.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RuleQuery {
    /// The channel whose own rule to remove; absent for the app's rule for every channel.
    channel: Option<String>,
}

/// Remove an app's retention rule.
#[utoipa::path(
    delete, path = "/api/v1/apps/{app}/retention", tag = "retention",
    params(("app" = String, Path, description = "The app's bundle id."), RuleQuery),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "A bad channel name.", body = ErrorJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
        (status = 404, description = "No such rule.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn delete_rule(
    State(state): State<AppState>,
    _admin: AdminToken,
    Path(app): Path<String>,
    Query(query): Query<RuleQuery>,
) -> Result<StatusCode, ApiError> {
    remove_rule(&state, &app, query.channel.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether to delete.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RunQuery {
    /// `true` only lists what would go; `false` deletes it [default: true].
    dry_run: Option<bool>,
}

/// Apply the retention rules now, or preview them.
///
/// With `dry_run=true` (the default) nothing is deleted: the answer lists what a run would
/// remove now and why. With `dry_run=false` the builds are deleted, rows then files; a build
/// that became the newest of its channel meanwhile stays and is not listed.
#[utoipa::path(
    post, path = "/api/v1/retention/run", tag = "retention",
    params(RunQuery),
    responses(
        (status = 200, description = "What was (or would be) removed.", body = RetentionRunJson),
        (status = 400, description = "`dry_run` is not `true` or `false`.", body = ErrorJson),
        (status = 401, description = "No valid token.", body = ErrorJson),
        (status = 403, description = "The token may only upload builds.", body = ErrorJson),
    ),
    security(("token" = []))
)]
pub async fn run_api(
    State(state): State<AppState>,
    _admin: AdminToken,
    query: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RetentionRunJson>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-dry-run",
            "`dry_run` must be `true` (only list what would go) or `false` (delete it).",
        )
    })?;
    let dry_run = query.dry_run.unwrap_or(true);
    Ok(Json(RetentionRunJson::new(dry_run, &run(&state, dry_run).await?)))
}

// ---------------------------------------------------------------------------------------------
// The Storage page
// ---------------------------------------------------------------------------------------------

/// One row of the usage table: an app's total, or one of its channels.
struct UsageView {
    bundle_id: String,
    /// `None` on the app's total row.
    channel: Option<String>,
    builds: u64,
    size: String,
    bytes: u64,
    oldest: String,
    newest: String,
    /// The rule that governs it, in words.
    rule: String,
}

/// Free space where the builds are.
enum DiskView {
    /// Local disk: the filesystem of this directory.
    Local { path: String, free: String, total: String, used_percent: u64 },
    /// Local disk, but its filesystem could not be read.
    Unknown { path: String, error: String },
    /// Object storage: its capacity is the provider's.
    Object { url: String },
}

struct RuleView {
    bundle_id: String,
    /// Empty for every channel.
    channel: String,
    keep_last: String,
    max_age_days: String,
    updated: String,
}

struct DoomedView {
    id: String,
    bundle_id: String,
    channel: String,
    version: String,
    uploaded: String,
    size: String,
    reason: String,
}

struct RunView {
    dry_run: bool,
    builds: Vec<DoomedView>,
    freed: String,
    bytes: u64,
}

#[derive(Template)]
#[template(path = "storage.html")]
struct StoragePage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    insecure: bool,
    total_builds: u64,
    total_size: String,
    total_bytes: u64,
    disk: DiskView,
    usage: Vec<UsageView>,
    apps: Vec<String>,
    rules: Vec<RuleView>,
    run: Option<RunView>,
}

fn minute(at: OffsetDateTime) -> String {
    format!("{} UTC", timestamp(at).get(..16).unwrap_or("").replace('T', " "))
}

fn rule_words(rule: &RetentionRule) -> String {
    let mut parts = Vec::new();
    if let Some(keep) = rule.keep_last {
        parts.push(format!("keep the newest {keep}"));
    }
    if let Some(days) = rule.max_age_days {
        parts.push(format!("remove after {days} days"));
    }
    let mut words = parts.join(", ");
    if rule.channel.is_empty() {
        words.push_str(" (app-wide)");
    }
    words
}

/// The filesystem's free and total bytes at `path`.
async fn disk_space(path: std::path::PathBuf) -> std::io::Result<(u64, u64)> {
    tokio::task::spawn_blocking(move || {
        let stats = rustix::fs::statvfs(path.as_path())?;
        let block = stats.f_frsize.max(1);
        Ok((stats.f_bavail.saturating_mul(block), stats.f_blocks.saturating_mul(block)))
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn disk_view(state: &AppState) -> DiskView {
    match &state.config.storage {
        StorageSetting::Local(root) => {
            let path = root.display().to_string();
            match disk_space(root.clone()).await {
                Ok((free, total)) => DiskView::Local {
                    path,
                    free: human_size(free),
                    total: human_size(total),
                    used_percent: u64::try_from(u128::from(total - free.min(total)) * 100 / u128::from(total.max(1)))
                        .unwrap_or(100),
                },
                Err(error) => DiskView::Unknown { path, error: error.to_string() },
            }
        }
        other => DiskView::Object { url: other.url() },
    }
}

async fn storage_page(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    run: Option<RunView>,
) -> Result<Response, PageError> {
    let usage = state.db.channel_usage().await?;
    let rules = state.db.retention_rules().await?;
    let rule_for = |bundle_id: &str, channel: &str| {
        rules
            .iter()
            .find(|rule| rule.bundle_id == bundle_id && rule.channel == channel)
            .or_else(|| rules.iter().find(|rule| rule.bundle_id == bundle_id && rule.channel.is_empty()))
            .map_or_else(|| "keep all".to_owned(), rule_words)
    };
    let mut rows: Vec<UsageView> = Vec::new();
    let mut apps: Vec<String> = Vec::new();
    for (index, channel) in usage.iter().enumerate() {
        if apps.last() != Some(&channel.bundle_id) {
            let members: Vec<_> =
                usage[index..].iter().take_while(|other| other.bundle_id == channel.bundle_id).collect();
            let bytes = members.iter().map(|member| member.bytes).sum();
            rows.push(UsageView {
                bundle_id: channel.bundle_id.clone(),
                channel: None,
                builds: members.iter().map(|member| member.builds).sum(),
                size: human_size(bytes),
                bytes,
                oldest: members.iter().map(|member| member.oldest).min().map(minute).unwrap_or_default(),
                newest: members.iter().map(|member| member.newest).max().map(minute).unwrap_or_default(),
                rule: String::new(),
            });
            apps.push(channel.bundle_id.clone());
        }
        rows.push(UsageView {
            bundle_id: channel.bundle_id.clone(),
            channel: Some(channel.channel.clone()),
            builds: channel.builds,
            size: human_size(channel.bytes),
            bytes: channel.bytes,
            oldest: minute(channel.oldest),
            newest: minute(channel.newest),
            rule: rule_for(&channel.bundle_id, &channel.channel),
        });
    }
    let total_bytes = usage.iter().map(|channel| channel.bytes).sum();
    private_page(&StoragePage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.csrf_token().to_owned(),
        insecure: super::base_url(state, headers).starts_with("http://"),
        total_builds: usage.iter().map(|channel| channel.builds).sum(),
        total_size: human_size(total_bytes),
        total_bytes,
        disk: disk_view(state).await,
        usage: rows,
        apps,
        rules: rules
            .iter()
            .map(|rule| RuleView {
                bundle_id: rule.bundle_id.clone(),
                channel: rule.channel.clone(),
                keep_last: rule.keep_last.map_or_else(|| "—".to_owned(), |keep| keep.to_string()),
                max_age_days: rule.max_age_days.map_or_else(|| "—".to_owned(), |days| format!("{days} days")),
                updated: minute(rule.updated_at),
            })
            .collect(),
        run,
    })
}

/// `GET /admin/storage`.
pub async fn page(State(state): State<AppState>, session: Session, headers: HeaderMap) -> Result<Response, PageError> {
    session.require_admin()?;
    storage_page(&state, &session, &headers, None).await
}

/// The form that sets a rule. Numbers arrive as text: an empty field is no limit.
#[derive(Deserialize)]
pub struct RuleForm {
    csrf: String,
    bundle_id: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    keep_last: String,
    #[serde(default)]
    max_age_days: String,
}

fn form_number(text: &str, field: &str) -> Result<Option<i64>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<i64>().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-retention-rule",
            format!("{field} must be a whole number, not {text:?}; leave it empty for no limit."),
        )
    })
}

/// `POST /admin/storage/rules`: sets a rule.
pub async fn set_rule_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<RuleForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let keep_last = form_number(&form.keep_last, "Keep the newest")?;
    let max_age_days = form_number(&form.max_age_days, "Days to keep")?;
    set_rule(&state, &form.bundle_id, Some(&form.channel), keep_last, max_age_days).await?;
    Ok(Redirect::to("/admin/storage").into_response())
}

/// The form that removes a rule.
#[derive(Deserialize)]
pub struct RemoveRuleForm {
    csrf: String,
    bundle_id: String,
    #[serde(default)]
    channel: String,
}

/// `POST /admin/storage/rules/delete`.
pub async fn remove_rule_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<RemoveRuleForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    remove_rule(&state, &form.bundle_id, Some(&form.channel)).await?;
    Ok(Redirect::to("/admin/storage").into_response())
}

/// The Preview and Apply buttons.
#[derive(Deserialize)]
pub struct RunForm {
    csrf: String,
    /// `true` from Preview, `false` from Apply now.
    dry_run: String,
}

/// `POST /admin/storage/run`: previews or applies the rules, and shows the page with the list.
pub async fn run_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<RunForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    // Anything but an explicit `false` only previews.
    let dry_run = form.dry_run != "false";
    let doomed = run(&state, dry_run).await?;
    let bytes = doomed.iter().map(|doomed| doomed.build.size).sum();
    let view = RunView {
        dry_run,
        builds: doomed
            .iter()
            .map(|doomed| DoomedView {
                id: doomed.build.id.clone(),
                bundle_id: doomed.build.bundle_id.clone(),
                channel: doomed.build.channel.clone(),
                version: format!(
                    "{} ({})",
                    doomed.build.version.as_deref().unwrap_or("—"),
                    doomed.build.build.as_deref().unwrap_or("—")
                ),
                uploaded: minute(doomed.build.created_at),
                size: human_size(doomed.build.size),
                reason: doomed.reason.clone(),
            })
            .collect(),
        freed: human_size(bytes),
        bytes,
    };
    storage_page(&state, &session, &headers, Some(view)).await
}
