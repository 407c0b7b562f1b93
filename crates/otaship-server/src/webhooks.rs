//! Webhooks: telling other systems (a chat room, a CI dashboard) that a build was uploaded or
//! that the profile of a build testers install is about to expire.
//!
//! It owns the events (what is enqueued, when, and the JSON document each carries), the bodies
//! sent (that document, or a Slack-compatible `{"text": ...}` message), their signature
//! (`X-Otaship-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`), and the
//! delivery worker: every instance claims due deliveries from the database with a lease, POSTs
//! them, and retries failures with exponential backoff (`--webhook-retry-base` × 4^(attempt-1),
//! at most an hour) until [`MAX_ATTEMPTS`]. Deliveries are rows from the moment their event
//! happens, so a restart or a dead instance delays them but loses none.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lc_rs::hmac;
use otaship_ipa::profile::ProfileKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::db::{AttemptOutcome, BuildRow, ClaimedDelivery, DbError, DeliveryRow, NewDelivery, WebhookRow, timestamp};
use crate::tokens;

/// A new build was uploaded.
pub const BUILD_UPLOADED: &str = "build.uploaded";
/// The profile of the newest build of an app's channel expires soon (or has expired).
pub const PROFILE_EXPIRING: &str = "profile.expiring";
/// A test delivery asked for by an uploader.
pub const PING: &str = "ping";
/// The events a webhook can subscribe to.
pub const EVENTS: [&str; 2] = [BUILD_UPLOADED, PROFILE_EXPIRING];

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long an endpoint has to answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed delivery is reserved for the instance sending it: longer than an attempt
/// can take, so that only a dead instance's claims lapse.
const LEASE: Duration = Duration::from_secs(60);
/// How often the worker looks for due deliveries when nothing woke it (deliveries another
/// instance enqueued, retries that came due).
const POLL: Duration = Duration::from_secs(5);
/// Deliveries claimed (and sent concurrently) at once.
const BATCH: u32 = 16;
/// How often expiring profiles are looked for.
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How much of an endpoint's error answer is kept, for the delivery log.
const ERROR_EXCERPT_CHARS: usize = 300;

/// What a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// otaship's event document.
    Json,
    /// `{"text": ...}` in Slack's markup, for Slack and the chats that accept its incoming
    /// webhooks (Mattermost, Rocket.Chat, Discord's `/slack` URLs).
    Slack,
}

impl Kind {
    /// `json` or `slack`.
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "json" => Some(Kind::Json),
            "slack" => Some(Kind::Slack),
            _ => None,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Slack => "slack",
        }
    }
}

/// The delivery worker's wake-up call and HTTP client.
pub struct Webhooks {
    wake: Notify,
    http: reqwest::Client,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The client that sends deliveries: no redirects (a webhook URL that moved must be changed,
    /// not followed with the signature), a 10 s limit, the public CAs.
    pub fn new() -> anyhow::Result<Webhooks> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("otaship-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Webhooks { wake: Notify::new(), http })
    }

    /// Tells this instance's worker that a delivery is due now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The app an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPayload {
    /// `CFBundleIdentifier`.
    pub bundle_id: String,
    /// Display name.
    pub name: Option<String>,
}

/// The build an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildPayload {
    /// Its id in the API.
    pub id: String,
    /// `CFBundleShortVersionString`.
    pub version: Option<String>,
    /// `CFBundleVersion`.
    pub build: Option<String>,
    /// The channel it was pushed to.
    pub channel: String,
    /// Release notes.
    pub notes: Option<String>,
    /// Key/value pairs given at upload.
    pub metadata: BTreeMap<String, String>,
    /// The install page to hand to testers.
    pub install_url: String,
    /// Upload time, RFC 3339.
    pub created_at: String,
}

/// The profile a `profile.expiring` event is about: the one of the build's bundles (the app or
/// an extension) that expires first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfilePayload {
    /// The bundle it provisions (the app's or an extension's bundle id).
    pub bundle_id: String,
    /// `development`, `ad-hoc`, `enterprise`, ...
    pub kind: ProfileKind,
    /// `ExpirationDate`, RFC 3339.
    pub expires_at: String,
    /// Whole days until it expires when the event was recorded; negative once it has expired.
    pub days_left: i64,
}

/// The document a `json` webhook receives (and the one a `slack` message is written from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPayload {
    /// `build.uploaded`, `profile.expiring` or `ping`.
    pub event: String,
    /// The delivery's id, also in `X-Otaship-Delivery`: the same in every retry.
    pub delivery_id: String,
    /// When this attempt was sent, RFC 3339 (set at each attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// The app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppPayload>,
    /// The build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildPayload>,
    /// The expiring profile (`profile.expiring` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfilePayload>,
}

impl EventPayload {
    fn about(event: &str, delivery_id: &str, build: &BuildRow, base: &str) -> EventPayload {
        EventPayload {
            event: event.to_owned(),
            delivery_id: delivery_id.to_owned(),
            sent_at: None,
            app: Some(AppPayload { bundle_id: build.bundle_id.clone(), name: build.name.clone() }),
            build: Some(BuildPayload {
                id: build.id.clone(),
                version: build.version.clone(),
                build: build.build.clone(),
                channel: build.channel.clone(),
                notes: build.notes.clone(),
                metadata: build.metadata.clone(),
                install_url: format!("{base}/i/{}", build.install_token),
                created_at: timestamp(build.created_at),
            }),
            profile: None,
        }
    }
}

/// The base of install URLs in events: `--public-url`, else the address this instance announces.
fn install_base(state: &AppState) -> String {
    state.device_base_url().unwrap_or_else(|| {
        let scheme = if state.config.serves_https() { "https" } else { "http" };
        format!("{scheme}://localhost:{}", state.main_port())
    })
}

/// Records `payload` for `webhook` once per `dedupe_key`; true when it was new.
async fn enqueue(
    state: &AppState,
    webhook: &WebhookRow,
    dedupe_key: &str,
    payload: &EventPayload,
) -> Result<bool, DbError> {
    let text = serde_json::to_string(payload).map_err(|error| DbError::Sqlx(sqlx::Error::Encode(Box::new(error))))?;
    let recorded = state
        .db
        .enqueue_delivery(&NewDelivery {
            id: &payload.delivery_id,
            webhook_id: &webhook.id,
            event: &payload.event,
            dedupe_key,
            payload: &text,
        })
        .await?;
    if recorded {
        state.webhooks.wake();
    }
    Ok(recorded)
}

/// Enqueues `build.uploaded` for every enabled webhook that wants it; returns how many.
pub async fn build_uploaded(state: &AppState, build: &BuildRow) -> Result<usize, DbError> {
    let base = install_base(state);
    let mut enqueued = 0;
    for webhook in state.db.webhooks().await? {
        if !webhook.wants(BUILD_UPLOADED, &build.bundle_id) {
            continue;
        }
        let payload = EventPayload::about(BUILD_UPLOADED, &tokens::random_hex(16), build, &base);
        if enqueue(state, &webhook, &format!("{BUILD_UPLOADED}:{}", build.id), &payload).await? {
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// Enqueues a test delivery to `webhook` (whether or not it is paused) and returns it.
pub async fn ping(state: &AppState, webhook: &WebhookRow) -> Result<DeliveryRow, DbError> {
    let id = tokens::random_hex(16);
    let payload = EventPayload {
        event: PING.to_owned(),
        delivery_id: id.clone(),
        sent_at: None,
        app: None,
        build: None,
        profile: None,
    };
    enqueue(state, webhook, &format!("{PING}:{id}"), &payload).await?;
    state.db.delivery(&id).await?.ok_or(DbError::NotFound)
}

/// The parts of a stored inspection report that say when its profiles expire.
#[derive(Deserialize)]
struct StoredReport {
    profile: Option<StoredProfile>,
    #[serde(default)]
    extensions: Vec<StoredExtension>,
}

#[derive(Deserialize)]
struct StoredExtension {
    bundle_id: String,
    profile: Option<StoredProfile>,
}

#[derive(Deserialize)]
struct StoredProfile {
    kind: ProfileKind,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

/// The profile of `build` (the app's or an extension's) that expires first, when any says.
fn first_to_expire(build: &BuildRow) -> Option<(String, ProfileKind, OffsetDateTime)> {
    let report: StoredReport = match serde_json::from_str(&build.report) {
        Ok(report) => report,
        Err(error) => {
            tracing::warn!(build.id = %build.id, %error, "the stored report of a build cannot be read");
            return None;
        }
    };
    let app = report.profile.map(|profile| (build.bundle_id.clone(), profile));
    let extensions = report
        .extensions
        .into_iter()
        .filter_map(|extension| extension.profile.map(|profile| (extension.bundle_id, profile)));
    app.into_iter()
        .chain(extensions)
        .filter_map(|(bundle_id, profile)| Some((bundle_id, profile.kind, profile.expires_at?)))
        .min_by_key(|(_, _, expires_at)| *expires_at)
}

/// Whole days from `now` until `expires_at`, rounded down: negative once it has passed.
pub fn days_left(expires_at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (expires_at - now).whole_seconds().div_euclid(86_400)
}

/// Looks at the newest build of every app's channel (what testers install) and enqueues
/// `profile.expiring` for each webhook that wants it when the build's first profile to expire
/// does so within the webhook's `expiry_days` (or already has): once per webhook and build.
/// Returns how many deliveries it enqueued.
pub async fn check_expiry(state: &AppState) -> Result<usize, DbError> {
    let webhooks: Vec<WebhookRow> = state
        .db
        .webhooks()
        .await?
        .into_iter()
        .filter(|webhook| webhook.enabled && webhook.events.iter().any(|event| event == PROFILE_EXPIRING))
        .collect();
    if webhooks.is_empty() {
        return Ok(0);
    }
    let base = install_base(state);
    let now = OffsetDateTime::now_utc();
    let mut enqueued = 0;
    for build in state.db.newest_build_per_channel().await? {
        let Some((bundle_id, kind, expires_at)) = first_to_expire(&build) else { continue };
        for webhook in webhooks.iter().filter(|webhook| webhook.wants(PROFILE_EXPIRING, &build.bundle_id)) {
            if expires_at > now + time::Duration::days(i64::from(webhook.expiry_days)) {
                continue;
            }
            let mut payload = EventPayload::about(PROFILE_EXPIRING, &tokens::random_hex(16), &build, &base);
            payload.profile = Some(ProfilePayload {
                bundle_id: bundle_id.clone(),
                kind,
                expires_at: timestamp(expires_at),
                days_left: days_left(expires_at, now),
            });
            if enqueue(state, webhook, &format!("{PROFILE_EXPIRING}:{}", build.id), &payload).await? {
                enqueued += 1;
            }
        }
    }
    if enqueued > 0 {
        tracing::info!(enqueued, "announced expiring provisioning profiles");
    }
    Ok(enqueued)
}

/// Runs the first expiry check, then starts the delivery worker and the daily expiry check.
/// Called once the server listens (install URLs need its address) and before it accepts
/// requests.
pub async fn start(state: &AppState, stop: &CancellationToken) {
    if let Err(error) = check_expiry(state).await {
        tracing::warn!(%error, "could not look for expiring profiles");
    }
    tokio::spawn(deliver(state.clone(), stop.clone()));
    let state = state.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(EXPIRY_CHECK_INTERVAL) => {}
                () = stop.cancelled() => return,
            }
            if let Err(error) = check_expiry(&state).await {
                tracing::warn!(%error, "could not look for expiring profiles");
            }
        }
    });
}

/// The delivery worker: sends what is due, then sleeps until the next delivery is due, a new
/// one is enqueued here, or [`POLL`] passes (another instance may have enqueued one).
async fn deliver(state: AppState, stop: CancellationToken) {
    loop {
        if let Err(error) = deliver_due(&state).await {
            tracing::warn!(%error, "could not send webhook deliveries");
        }
        let wait = match state.db.next_delivery_due().await {
            Ok(Some(due)) => {
                let until = due - OffsetDateTime::now_utc();
                Duration::try_from(until).unwrap_or(Duration::ZERO).min(POLL)
            }
            Ok(None) | Err(_) => POLL,
        };
        tokio::select! {
            () = state.webhooks.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Claims the deliveries that are due and sends them concurrently; returns how many.
async fn deliver_due(state: &AppState) -> Result<usize, DbError> {
    let lease_until = OffsetDateTime::now_utc() + LEASE;
    let claimed = state.db.claim_due_deliveries(lease_until, BATCH).await?;
    let count = claimed.len();
    let sends = claimed.into_iter().map(|delivery| async move {
        let outcome = attempt(state, &delivery).await;
        match &outcome {
            AttemptOutcome::Delivered { status } => {
                tracing::info!(delivery = %delivery.id, event = %delivery.event, status, "webhook delivered");
            }
            AttemptOutcome::Retry { error, .. } => {
                tracing::warn!(delivery = %delivery.id, attempt = delivery.attempt, %error, "webhook delivery failed; will retry");
            }
            AttemptOutcome::GaveUp { error, .. } => {
                tracing::warn!(delivery = %delivery.id, attempt = delivery.attempt, %error, "webhook delivery failed; gave up");
            }
        }
        if let Err(error) = state.db.record_attempt(&delivery.id, delivery.attempt, &outcome).await {
            // The lease lapses and the attempt is made again.
            tracing::warn!(delivery = %delivery.id, %error, "could not record a webhook attempt");
        }
    });
    futures_util::future::join_all(sends).await;
    Ok(count)
}

/// The wait after failed attempt number `attempt` (from 1): `base` × 4^(attempt-1), at most
/// [`MAX_BACKOFF`].
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 4u32.checked_pow(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(MAX_BACKOFF).min(MAX_BACKOFF)
}

/// The `X-Otaship-Signature` value for `body` sent at `unix_seconds`: `t=<seconds>,v1=<hex
/// HMAC-SHA256 of "<seconds>.<body>" keyed with the secret's UTF-8 bytes>`.
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(unix_seconds.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("t={unix_seconds},v1={}", tokens::hex(context.sign().as_ref()))
}

/// The body of one attempt: the event document with `sent_at`, or a Slack message.
fn body(delivery: &ClaimedDelivery, now: OffsetDateTime) -> Result<Vec<u8>, String> {
    let mut payload: EventPayload = serde_json::from_str(&delivery.payload)
        .map_err(|error| format!("the stored event cannot be read ({error})"))?;
    payload.sent_at = Some(timestamp(now));
    let encoded = match Kind::parse(&delivery.kind) {
        Some(Kind::Slack) => serde_json::to_vec(&serde_json::json!({ "text": slack_text(&payload) })),
        Some(Kind::Json) => serde_json::to_vec(&payload),
        None => return Err(format!("the webhook's kind {:?} is unknown", delivery.kind)),
    };
    encoded.map_err(|error| format!("the body cannot be written ({error})"))
}

/// Sends one attempt and says how it went.
async fn attempt(state: &AppState, delivery: &ClaimedDelivery) -> AttemptOutcome {
    let now = OffsetDateTime::now_utc();
    let failed = |status: Option<u16>, error: String| {
        if delivery.attempt >= MAX_ATTEMPTS {
            AttemptOutcome::GaveUp { status, error }
        } else {
            let next_attempt_at =
                OffsetDateTime::now_utc() + backoff(state.config.webhook_retry_base, delivery.attempt);
            AttemptOutcome::Retry { status, error, next_attempt_at }
        }
    };
    let body = match body(delivery, now) {
        Ok(body) => body,
        // Nothing a retry could change.
        Err(error) => return AttemptOutcome::GaveUp { status: None, error },
    };
    let sent = state
        .webhooks
        .http
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Otaship-Event", &delivery.event)
        .header("X-Otaship-Delivery", &delivery.id)
        .header("X-Otaship-Signature", signature(&delivery.secret, now.unix_timestamp(), &body))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            AttemptOutcome::Delivered { status: response.status().as_u16() }
        }
        Ok(response) => {
            let status = response.status();
            let excerpt = error_excerpt(response).await;
            let mut error = format!("the endpoint answered {status}");
            if !excerpt.is_empty() {
                error.push_str(": ");
                error.push_str(&excerpt);
            }
            failed(Some(status.as_u16()), error)
        }
        Err(error) => failed(None, describe(&error)),
    }
}

/// The beginning of an error answer's body, on one line.
async fn error_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_EXCERPT_CHARS * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(ERROR_EXCERPT_CHARS).collect();
    line.trim().to_owned()
}

/// A transport error with its causes ("error sending request: connection refused").
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        format!("no answer within {} s", SEND_TIMEOUT.as_secs())
    } else if error.is_builder() {
        "the URL cannot be requested".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Escapes text for Slack's markup, which reads `&`, `<` and `>` as control characters.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Slack link: `<url|label>`.
fn slack_link(url: &str, label: &str) -> String {
    format!("<{}|{}>", slack_escape(url), slack_escape(label).replace('|', "¦"))
}

/// The Slack message of an event.
pub fn slack_text(payload: &EventPayload) -> String {
    let name = payload.app.as_ref().map_or_else(String::new, |app| {
        slack_escape(app.name.as_deref().filter(|name| !name.trim().is_empty()).unwrap_or(&app.bundle_id))
    });
    let Some(build) = &payload.build else {
        return "Test message from otaship: this webhook works.".to_owned();
    };
    let version = match (&build.version, &build.build) {
        (Some(version), Some(number)) => format!("{} ({})", slack_escape(version), slack_escape(number)),
        (Some(version), None) => slack_escape(version),
        (None, Some(number)) => format!("build {}", slack_escape(number)),
        (None, None) => "a build".to_owned(),
    };
    let channel = slack_escape(&build.channel);
    match &payload.profile {
        Some(profile) => {
            let bundle = match &payload.app {
                Some(app) if app.bundle_id != profile.bundle_id => {
                    format!(" (extension {})", slack_escape(&profile.bundle_id))
                }
                _ => String::new(),
            };
            let date = profile.expires_at.get(..10).unwrap_or(&profile.expires_at);
            let when = match profile.days_left {
                days if days < 0 => format!("expired on {date}: it no longer installs"),
                0 => format!("expires today ({date})"),
                1 => format!("expires tomorrow ({date})"),
                days => format!("expires in {days} days ({date})"),
            };
            format!(
                ":warning: The provisioning profile{bundle} of *{name}* {version} on channel {channel} {when}. \
                 Upload a build signed with a renewed profile. {}",
                slack_link(&build.install_url, "Install page")
            )
        }
        None => {
            let mut text = format!(
                "New build of *{name}*: {version} on channel {channel}. {}",
                slack_link(&build.install_url, "Install")
            );
            if let Some(notes) = build.notes.as_deref().map(str::trim).filter(|notes| !notes.is_empty()) {
                let mut excerpt: String = notes.chars().take(500).collect();
                if excerpt.len() < notes.len() {
                    excerpt.push('…');
                }
                text.push('\n');
                text.push_str(&slack_escape(&excerpt));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_timestamp_and_body() {
        // Computed independently: printf '1700000000.{"event":"ping"}' |
        //   openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, br#"{"event":"ping"}"#),
            "t=1700000000,v1=aa8efe37b751e71157c508c5ac4acb1e9fe5225db98355dfc00f4b680afbc447"
        );
        let header = signature("whsec_test", 1_700_000_000, b"body");
        assert_ne!(header, signature("whsec_test", 1_700_000_001, b"body"), "the timestamp is signed");
        assert_ne!(header, signature("whsec_other", 1_700_000_000, b"body"), "the secret is the key");
        assert_ne!(header, signature("whsec_test", 1_700_000_000, b"bodY"), "the body is signed");
    }

    #[test]
    fn retries_back_off_four_times_longer_up_to_an_hour() {
        let base = Duration::from_secs(10);
        let schedule: Vec<u64> = (1..=MAX_ATTEMPTS).map(|attempt| backoff(base, attempt).as_secs()).collect();
        assert_eq!(schedule, [10, 40, 160, 640, 2560, 3600, 3600, 3600]);
        assert_eq!(backoff(Duration::from_millis(100), 2), Duration::from_millis(400));
        assert_eq!(backoff(base, 40), MAX_BACKOFF, "no overflow");
        assert_eq!(backoff(Duration::from_secs(3600), 1), MAX_BACKOFF);
    }

    #[test]
    fn days_left_round_down_and_go_negative_once_expired() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        assert_eq!(days_left(now + time::Duration::hours(84), now), 3);
        assert_eq!(days_left(now + time::Duration::hours(1), now), 0);
        assert_eq!(days_left(now - time::Duration::hours(1), now), -1);
        assert_eq!(days_left(now - time::Duration::hours(49), now), -3);
    }

    fn build_payload(name: &str, notes: Option<&str>) -> EventPayload {
        EventPayload {
            event: BUILD_UPLOADED.to_owned(),
            delivery_id: "d".to_owned(),
            sent_at: None,
            app: Some(AppPayload { bundle_id: "com.example.tom".to_owned(), name: Some(name.to_owned()) }),
            build: Some(BuildPayload {
                id: "b".to_owned(),
                version: Some("1.2".to_owned()),
                build: Some("34".to_owned()),
                channel: "beta".to_owned(),
                notes: notes.map(str::to_owned),
                metadata: BTreeMap::new(),
                install_url: "https://ota.example.com/i/0123".to_owned(),
                created_at: "2025-01-01T00:00:00.000Z".to_owned(),
            }),
            profile: None,
        }
    }

    #[test]
    fn slack_messages_escape_markup() {
        let text = slack_text(&build_payload("Tom & Jerry <beta>", Some("Fixes <@everyone> & more")));
        assert_eq!(
            text,
            "New build of *Tom &amp; Jerry &lt;beta&gt;*: 1.2 (34) on channel beta. \
             <https://ota.example.com/i/0123|Install>\nFixes &lt;@everyone&gt; &amp; more"
        );
        let mut expiring = build_payload("App", None);
        expiring.event = PROFILE_EXPIRING.to_owned();
        expiring.profile = Some(ProfilePayload {
            bundle_id: "com.example.tom.widget".to_owned(),
            kind: ProfileKind::AdHoc,
            expires_at: "2025-01-04T00:00:00.000Z".to_owned(),
            days_left: 3,
        });
        let text = slack_text(&expiring);
        assert!(text.contains("(extension com.example.tom.widget) of *App* 1.2 (34)"), "{text}");
        assert!(text.contains("expires in 3 days (2025-01-04)"), "{text}");
        assert!(text.ends_with("<https://ota.example.com/i/0123|Install page>"), "{text}");
    }

    #[test]
    fn event_documents_keep_their_fields_in_order() {
        let mut payload = build_payload("App", None);
        payload.sent_at = Some("2025-01-01T00:00:01.000Z".to_owned());
        let text = serde_json::to_string(&payload).expect("JSON");
        let order: Vec<usize> = ["\"event\"", "\"delivery_id\"", "\"sent_at\"", "\"app\"", "\"build\""]
            .iter()
            .map(|key| text.find(key).expect("key"))
            .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
        assert!(!text.contains("\"profile\""), "{text}");
        let back: EventPayload = serde_json::from_str(&text).expect("read back");
        assert_eq!(back, payload);
    }
}
