//! Webhook routes: the API to register, pause, delete and test webhooks, read their deliveries
//! and look for expiring profiles now, and the **Webhooks** page that does the same with forms
//! and shows the delivery log. A webhook's secret is shown once, when it is created.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::api::AdminToken;
use super::base_url;
use super::ui::{CsrfForm, PageError, Session, private_page};
use crate::db::{DeliveryRow, WebhookRow, timestamp};
use crate::error::{ApiError, ErrorJson};
use crate::webhooks::{self, EVENTS, Kind};
use crate::{AppState, tokens};

/// Longest webhook URL accepted.
const MAX_URL_CHARS: usize = 2048;
/// The `expiry_days` a webhook gets unless told otherwise.
const DEFAULT_EXPIRY_DAYS: u32 = 7;
/// The most `expiry_days` may be (profiles last a year at most).
const MAX_EXPIRY_DAYS: u32 = 365;
/// Deliveries the API lists unless told otherwise, and the most it lists.
const DEFAULT_DELIVERIES: u32 = 50;
const MAX_DELIVERIES: u32 = 500;
/// Deliveries the page's log shows.
const PAGE_DELIVERIES: u32 = 100;

/// What a new webhook is asked to be, before it is checked.
struct Requested<'a> {
    url: &'a str,
    kind: Option<&'a str>,
    events: Option<Vec<String>>,
    bundle_id: Option<&'a str>,
    expiry_days: Option<u32>,
}

/// Checks a request for a webhook and makes it, with a new secret.
fn new_webhook(requested: Requested<'_>) -> Result<WebhookRow, ApiError> {
    let url = requested.url.trim();
    let parsed = url::Url::parse(url).ok().filter(|parsed| {
        matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some_and(|host| !host.is_empty())
    });
    if parsed.is_none() || url.chars().count() > MAX_URL_CHARS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-webhook-url",
            format!(
                "The webhook URL {url:?} is not an http:// or https:// URL of at most {MAX_URL_CHARS} characters; \
                 give the full address the events should be POSTed to."
            ),
        ));
    }
    let kind_text = requested.kind.map(str::trim).filter(|kind| !kind.is_empty()).unwrap_or("json");
    let kind = Kind::parse(kind_text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-webhook-kind",
            format!("There is no webhook kind {kind_text:?}; use `json` (otaship's event document) or `slack`."),
        )
    })?;
    let mut events = requested.events.unwrap_or_else(|| EVENTS.iter().map(|event| (*event).to_owned()).collect());
    events.sort();
    events.dedup();
    if events.is_empty() || events.iter().any(|event| !EVENTS.contains(&event.as_str())) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-webhook-events",
            format!("Choose the events among {}; at least one.", EVENTS.join(", ")),
        ));
    }
    let bundle_id = requested.bundle_id.map(str::trim).filter(|bundle_id| !bundle_id.is_empty());
    if let Some(bundle_id) = bundle_id
        && (bundle_id.len() > 255
            || !bundle_id.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_')))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-bundle-id",
            format!("{bundle_id:?} is not a bundle id; give the app's CFBundleIdentifier, like com.example.app."),
        ));
    }
    let expiry_days = requested.expiry_days.unwrap_or(DEFAULT_EXPIRY_DAYS);
    if !(1..=MAX_EXPIRY_DAYS).contains(&expiry_days) {
        return Err(bad_expiry_days());
    }
    Ok(WebhookRow {
        id: tokens::random_hex(8),
        url: url.to_owned(),
        kind: kind.as_str().to_owned(),
        secret: format!("whsec_{}", tokens::random_hex(32)),
        events,
        bundle_id: bundle_id.map(str::to_owned),
        expiry_days,
        enabled: true,
        created_at: OffsetDateTime::now_utc(),
    })
}

fn bad_expiry_days() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad-expiry-days",
        format!("Give the days before expiry as a whole number from 1 to {MAX_EXPIRY_DAYS}."),
    )
}

async fn webhook_or_404(state: &AppState, id: &str) -> Result<WebhookRow, ApiError> {
    state.db.webhook(id).await?.ok_or_else(|| ApiError::not_found("The webhook"))
}

/// A webhook as the API shows it (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookJson {
    /// Its id.
    id: String,
    /// Where deliveries are POSTed.
    #[schema(example = "https://hooks.example.com/otaship")]
    url: String,
    /// `json` (otaship's event document) or `slack` (`{"text": ...}`).
    #[schema(example = "json")]
    kind: String,
    /// The events it receives: `build.uploaded`, `profile.expiring`.
    events: Vec<String>,
    /// Only this app's events, when set.
    bundle_id: Option<String>,
    /// `profile.expiring` fires when a profile expires within this many days.
    expiry_days: u32,
    /// A paused webhook receives no new events.
    enabled: bool,
    /// RFC 3339.
    created_at: String,
}

impl WebhookJson {
    fn new(webhook: &WebhookRow) -> Self {
        WebhookJson {
            id: webhook.id.clone(),
            url: webhook.url.clone(),
            kind: webhook.kind.clone(),
            events: webhook.events.clone(),
            bundle_id: webhook.bundle_id.clone(),
            expiry_days: webhook.expiry_days,
            enabled: webhook.enabled,
            created_at: timestamp(webhook.created_at),
        }
    }
}

/// A new webhook, with its secret: the only time the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhookJson {
    /// The webhook as every other answer shows it.
    #[serde(flatten)]
    webhook: WebhookJson,
    /// The HMAC-SHA256 key of `X-Otaship-Signature` (its UTF-8 bytes). Keep it: it is not
    /// shown again.
    #[schema(example = "whsec_3f2a...")]
    secret: String,
}

impl CreatedWebhookJson {
    fn new(webhook: WebhookRow) -> Self {
        CreatedWebhookJson { webhook: WebhookJson::new(&webhook), secret: webhook.secret }
    }
}

/// A webhook to register.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewWebhookJson {
    /// Where to POST deliveries: an `http://` or `https://` URL.
    url: String,
    /// `json` (the default) or `slack`.
    kind: Option<String>,
    /// Among `build.uploaded` and `profile.expiring` [default: both].
    events: Option<Vec<String>>,
    /// Only this app's events.
    bundle_id: Option<String>,
    /// Announce profiles expiring within this many days, 1 to 365 [default: 7].
    expiry_days: Option<u32>,
}

/// A change to a webhook.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WebhookPatch {
    /// Resume (`true`) or pause (`false`).
    enabled: Option<bool>,
}

/// One delivery as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryJson {
    /// Its id, sent as `X-Otaship-Delivery` (the same in every retry).
    id: String,
    /// The webhook.
    webhook_id: String,
    /// `build.uploaded`, `profile.expiring` or `ping`.
    event: String,
    /// `pending`, `delivered` or `failed` (given up after 8 attempts).
    state: String,
    /// Attempts made so far.
    attempts: u32,
    /// When a pending delivery is next tried, RFC 3339.
    next_attempt_at: Option<String>,
    /// The HTTP status of the last attempt, when the endpoint answered.
    last_status: Option<u16>,
    /// Why the last attempt failed.
    last_error: Option<String>,
    /// When the event happened, RFC 3339.
    created_at: String,
    /// When it was delivered, RFC 3339.
    delivered_at: Option<String>,
    /// The event document (each attempt adds `sent_at`).
    #[schema(value_type = Object)]
    payload: Value,
}

impl DeliveryJson {
    fn new(delivery: &DeliveryRow) -> Self {
        DeliveryJson {
            id: delivery.id.clone(),
            webhook_id: delivery.webhook_id.clone(),
            event: delivery.event.clone(),
            state: delivery.state.clone(),
            attempts: delivery.attempts,
            next_attempt_at: (delivery.state == "pending").then(|| timestamp(delivery.next_attempt_at)),
            last_status: delivery.last_status,
            last_error: delivery.last_error.clone(),
            created_at: timestamp(delivery.created_at),
            delivered_at: delivery.delivered_at.map(timestamp),
            payload: serde_json::from_str(&delivery.payload).unwrap_or(Value::Null),
        }
    }
}

/// How many deliveries to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveriesQuery {
    /// 1 to 500 [default: 50].
    limit: Option<u32>,
}

/// What an expiry check did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiryCheckJson {
    /// `profile.expiring` deliveries it enqueued (none for a build already announced).
    enqueued: usize,
}

/// `GET /api/v1/webhooks`.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, description = "Every webhook, oldest first.", body = [WebhookJson]),
        (status = 401, description = "No valid token.", body = ErrorJson)),
    security(("token" = [])))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    _admin: AdminToken,
) -> Result<Json<Vec<WebhookJson>>, ApiError> {
    Ok(Json(state.db.webhooks().await?.iter().map(WebhookJson::new).collect()))
}

/// Register a webhook.
///
/// Each delivery is a `POST` with `Content-Type: application/json`, `X-Otaship-Event`,
/// `X-Otaship-Delivery` and `X-Otaship-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` of
/// `"<t>.<body>"` keyed with the secret. A `2xx` answer delivers it; anything else is retried
/// with exponential backoff, up to 8 attempts. Redirects are not followed.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = NewWebhookJson,
    responses((status = 201, description = "The webhook, with its secret (shown only now).", body = CreatedWebhookJson),
        (status = 400, description = "A bad field (the error says which).", body = ErrorJson),
        (status = 401, description = "No valid token.", body = ErrorJson)),
    security(("token" = [])))]
pub async fn create_webhook(
    State(state): State<AppState>,
    _admin: AdminToken,
    Json(request): Json<NewWebhookJson>,
) -> Result<(StatusCode, Json<CreatedWebhookJson>), ApiError> {
    let webhook = new_webhook(Requested {
        url: &request.url,
        kind: request.kind.as_deref(),
        events: request.events,
        bundle_id: request.bundle_id.as_deref(),
        expiry_days: request.expiry_days,
    })?;
    state.db.insert_webhook(&webhook).await?;
    Ok((StatusCode::CREATED, Json(CreatedWebhookJson::new(webhook))))
}

/// Pause or resume a webhook.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", request_body = WebhookPatch,
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookJson), (status = 401, body = ErrorJson), (status = 404, body = ErrorJson)),
    security(("token" = [])))]
pub async fn patch_webhook(
    State(state): State<AppState>,
    _admin: AdminToken,
    Path(id): Path<String>,
    Json(patch): Json<WebhookPatch>,
) -> Result<Json<WebhookJson>, ApiError> {
    if let Some(enabled) = patch.enabled
        && !state.db.set_webhook_enabled(&id, enabled).await?
    {
        return Err(ApiError::not_found("The webhook"));
    }
    Ok(Json(WebhookJson::new(&webhook_or_404(&state, &id).await?)))
}

/// Delete a webhook and its deliveries (pending ones are not sent).
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorJson), (status = 404, body = ErrorJson)),
    security(("token" = [])))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    _admin: AdminToken,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.db.delete_webhook(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("The webhook"))
    }
}

/// A webhook's deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id"), DeliveriesQuery),
    responses((status = 200, body = [DeliveryJson]), (status = 401, body = ErrorJson), (status = 404, body = ErrorJson)),
    security(("token" = [])))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    _admin: AdminToken,
    Path(id): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Vec<DeliveryJson>>, ApiError> {
    webhook_or_404(&state, &id).await?;
    let limit = query.limit.unwrap_or(DEFAULT_DELIVERIES).clamp(1, MAX_DELIVERIES);
    Ok(Json(state.db.deliveries(Some(&id), limit).await?.iter().map(DeliveryJson::new).collect()))
}

/// Send a test delivery (event `ping`), even to a paused webhook.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/ping", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 202, description = "Enqueued; follow it in the deliveries.", body = DeliveryJson),
        (status = 401, body = ErrorJson), (status = 404, body = ErrorJson)),
    security(("token" = [])))]
pub async fn ping_webhook(
    State(state): State<AppState>,
    _admin: AdminToken,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryJson>), ApiError> {
    let webhook = webhook_or_404(&state, &id).await?;
    let delivery = webhooks::ping(&state, &webhook).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryJson::new(&delivery))))
}

/// Look for expiring profiles now.
///
/// The server does this at start-up and every 24 hours: for the newest build of every app's
/// channel, when the profile of the app or of an extension expires within a webhook's
/// `expiry_days` (or has expired), `profile.expiring` is enqueued, once per webhook and build.
#[utoipa::path(post, path = "/api/v1/webhooks/check-expiry", tag = "webhooks",
    responses((status = 200, body = ExpiryCheckJson), (status = 401, body = ErrorJson)),
    security(("token" = [])))]
pub async fn check_expiry(
    State(state): State<AppState>,
    _admin: AdminToken,
) -> Result<Json<ExpiryCheckJson>, ApiError> {
    Ok(Json(ExpiryCheckJson { enqueued: webhooks::check_expiry(&state).await? }))
}

/// A webhook as the page shows it.
struct WebhookView {
    id: String,
    url: String,
    kind: String,
    events: String,
    app: String,
    expiry_days: u32,
    enabled: bool,
}

impl WebhookView {
    fn new(webhook: &WebhookRow) -> Self {
        WebhookView {
            id: webhook.id.clone(),
            url: webhook.url.clone(),
            kind: webhook.kind.clone(),
            events: webhook.events.join(", "),
            app: webhook.bundle_id.clone().unwrap_or_else(|| "every app".to_owned()),
            expiry_days: webhook.expiry_days,
            enabled: webhook.enabled,
        }
    }
}

/// A line of the delivery log.
struct DeliveryView {
    id: String,
    time: String,
    event: String,
    webhook_url: String,
    state: String,
    attempts: u32,
    status: String,
    error: String,
    next_attempt: Option<String>,
}

fn second(at: OffsetDateTime) -> String {
    format!("{} UTC", timestamp(at).get(..19).unwrap_or("").replace('T', " "))
}

impl DeliveryView {
    fn new(delivery: &DeliveryRow) -> Self {
        DeliveryView {
            id: delivery.id.clone(),
            time: second(delivery.created_at),
            event: delivery.event.clone(),
            webhook_url: delivery.webhook_url.clone(),
            state: delivery.state.clone(),
            attempts: delivery.attempts,
            status: delivery.last_status.map_or_else(|| "—".to_owned(), |status| status.to_string()),
            error: delivery.last_error.clone().unwrap_or_default(),
            next_attempt: (delivery.state == "pending").then(|| second(delivery.next_attempt_at)),
        }
    }
}

/// What the create form held, to show it again after a mistake.
#[derive(Default)]
struct FormValues {
    url: String,
    slack: bool,
    build_uploaded: bool,
    profile_expiring: bool,
    bundle_id: String,
    expiry_days: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    insecure: bool,
    webhooks: Vec<WebhookView>,
    deliveries: Vec<DeliveryView>,
    apps: Vec<String>,
    form: FormValues,
    error: Option<String>,
    created_secret: Option<String>,
    /// What an expiry check just did.
    checked: Option<String>,
    max_attempts: u32,
}

async fn render_page(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    form: FormValues,
    error: Option<String>,
    created_secret: Option<String>,
    checked: Option<u64>,
) -> Result<Response, PageError> {
    let page = WebhooksPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.csrf_token().to_owned(),
        insecure: base_url(state, headers).starts_with("http://"),
        webhooks: state.db.webhooks().await?.iter().map(WebhookView::new).collect(),
        deliveries: state.db.deliveries(None, PAGE_DELIVERIES).await?.iter().map(DeliveryView::new).collect(),
        apps: state.db.list_apps().await?.into_iter().map(|app| app.bundle_id).collect(),
        form,
        error,
        created_secret,
        checked: checked.map(|count| match count {
            1 => "Expiring profiles checked: 1 new delivery.".to_owned(),
            count => format!("Expiring profiles checked: {count} new deliveries."),
        }),
        max_attempts: webhooks::MAX_ATTEMPTS,
    };
    private_page(&page)
}

fn fresh_form() -> FormValues {
    FormValues {
        build_uploaded: true,
        profile_expiring: true,
        expiry_days: DEFAULT_EXPIRY_DAYS.to_string(),
        ..FormValues::default()
    }
}

/// What the page says after an expiry check.
#[derive(Deserialize)]
pub struct CheckedQuery {
    checked: Option<u64>,
}

/// `GET /admin/webhooks`: the webhooks, the form to add one, and the delivery log.
pub async fn webhooks_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<CheckedQuery>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    render_page(&state, &session, &headers, fresh_form(), None, None, query.checked).await
}

/// The create form. Checkboxes are sent only when ticked.
#[derive(Deserialize)]
pub struct WebhookForm {
    csrf: String,
    url: String,
    kind: String,
    event_build_uploaded: Option<String>,
    event_profile_expiring: Option<String>,
    #[serde(default)]
    bundle_id: String,
    #[serde(default)]
    expiry_days: String,
}

/// `POST /admin/webhooks`: registers a webhook and shows its secret, once.
pub async fn create_webhook_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    axum::Form(form): axum::Form<WebhookForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let values = FormValues {
        url: form.url.clone(),
        slack: form.kind == "slack",
        build_uploaded: form.event_build_uploaded.is_some(),
        profile_expiring: form.event_profile_expiring.is_some(),
        bundle_id: form.bundle_id.clone(),
        expiry_days: form.expiry_days.clone(),
    };
    let mut events = Vec::new();
    if values.build_uploaded {
        events.push(webhooks::BUILD_UPLOADED.to_owned());
    }
    if values.profile_expiring {
        events.push(webhooks::PROFILE_EXPIRING.to_owned());
    }
    let days = form.expiry_days.trim();
    let checked = match days {
        "" => Ok(None),
        days => days.parse::<u32>().map(Some).map_err(|_| bad_expiry_days()),
    }
    .and_then(|expiry_days| {
        new_webhook(Requested {
            url: &form.url,
            kind: Some(&form.kind),
            events: Some(events),
            bundle_id: Some(&form.bundle_id),
            expiry_days,
        })
    });
    match checked {
        Ok(webhook) => {
            state.db.insert_webhook(&webhook).await?;
            render_page(&state, &session, &headers, fresh_form(), None, Some(webhook.secret), None).await
        }
        Err(error) => {
            let mut page = render_page(&state, &session, &headers, values, Some(error.message), None, None).await?;
            *page.status_mut() = error.status;
            Ok(page)
        }
    }
}

/// `POST /admin/webhooks/{id}/ping`: "Send test".
pub async fn ping_webhook_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let webhook = webhook_or_404(&state, &id).await?;
    webhooks::ping(&state, &webhook).await?;
    Ok(Redirect::to("/admin/webhooks").into_response())
}

/// The pause/resume form.
#[derive(Deserialize)]
pub struct EnabledForm {
    csrf: String,
    enabled: bool,
}

/// `POST /admin/webhooks/{id}/enabled`: pause or resume.
pub async fn enable_webhook_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<EnabledForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    if !state.db.set_webhook_enabled(&id, form.enabled).await? {
        return Err(ApiError::not_found("The webhook").into());
    }
    Ok(Redirect::to("/admin/webhooks").into_response())
}

/// `POST /admin/webhooks/{id}/delete`.
pub async fn delete_webhook_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    if !state.db.delete_webhook(&id).await? {
        return Err(ApiError::not_found("The webhook").into());
    }
    Ok(Redirect::to("/admin/webhooks").into_response())
}

/// `POST /admin/webhooks/check-expiry`: look for expiring profiles now.
pub async fn check_expiry_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let enqueued = webhooks::check_expiry(&state).await?;
    Ok(Redirect::to(&format!("/admin/webhooks?checked={enqueued}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(url: &str) -> Requested<'_> {
        Requested { url, kind: None, events: None, bundle_id: None, expiry_days: None }
    }

    #[test]
    fn new_webhooks_get_defaults_and_a_fresh_secret() {
        let webhook = new_webhook(requested(" https://hooks.example.com/x ")).expect("valid");
        assert_eq!(webhook.url, "https://hooks.example.com/x");
        assert_eq!(webhook.kind, "json");
        assert_eq!(webhook.events, ["build.uploaded", "profile.expiring"]);
        assert_eq!(webhook.expiry_days, 7);
        assert!(webhook.secret.starts_with("whsec_") && webhook.secret.len() == 70, "{}", webhook.secret);
        assert_ne!(webhook.secret, new_webhook(requested("https://hooks.example.com/x")).expect("valid").secret);
    }

    #[test]
    fn bad_webhooks_say_what_to_fix() {
        for url in ["ftp://example.com/", "hooks.example.com", "https://", "javascript:alert(1)"] {
            assert_eq!(new_webhook(requested(url)).expect_err(url).code, "bad-webhook-url", "{url}");
        }
        let kind = Requested { kind: Some("xml"), ..requested("https://h.example/") };
        assert_eq!(new_webhook(kind).expect_err("kind").code, "bad-webhook-kind");
        let events = Requested { events: Some(vec!["build.deleted".into()]), ..requested("https://h.example/") };
        assert_eq!(new_webhook(events).expect_err("events").code, "bad-webhook-events");
        let none = Requested { events: Some(Vec::new()), ..requested("https://h.example/") };
        assert_eq!(new_webhook(none).expect_err("events").code, "bad-webhook-events");
        let app = Requested { bundle_id: Some("com.example/../x"), ..requested("https://h.example/") };
        assert_eq!(new_webhook(app).expect_err("bundle").code, "bad-bundle-id");
        let days = Requested { expiry_days: Some(0), ..requested("https://h.example/") };
        assert_eq!(new_webhook(days).expect_err("days").code, "bad-expiry-days");
    }
}
