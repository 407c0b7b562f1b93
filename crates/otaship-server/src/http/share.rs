//! Share links and channel pages, the tester's side: `/s/{token}` (a password page first when
//! the link has one, then the install page), the manifest, icon and `.ipa` behind capability
//! URLs that need no cookie, `410 Gone` pages that say why a link stopped, and `/c/{token}`,
//! the stable page of an app's channel that always installs its newest build.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::pages::{BuildView, manifest_response, not_found_page, render_install_page};
use super::ui::PageError;
use super::{BuildUrls, base_url};
use crate::db::{BuildRow, DbError, EventKind, LinkRow};
use crate::error::ApiError;
use crate::sharing::{CapabilityRefused, LinkState, PASSED_LIFETIME, Purpose};
use crate::{AppState, analytics};

/// The cookie a browser gets for a link whose password it passed (scoped to the link's path).
const PASSED_COOKIE: &str = "otaship_link";

/// Why a link no longer installs anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// The link itself stopped.
    Link(LinkState),
    /// Its build was deleted.
    BuildDeleted,
    /// Its channel holds no build any more.
    ChannelEmpty,
}

impl Gone {
    /// A title and a sentence for the tester.
    fn words(&self) -> (&'static str, String) {
        let day = |at: &OffsetDateTime| crate::db::timestamp(*at).get(..16).unwrap_or("").replace('T', " ");
        match self {
            Gone::Link(LinkState::Revoked(at)) => (
                "This link was revoked",
                format!("The person who shared it turned it off on {} UTC. Ask them for a new link.", day(at)),
            ),
            Gone::Link(LinkState::Expired(at)) => (
                "This link has expired",
                format!("It worked until {} UTC. Ask the person who shared it for a new link.", day(at)),
            ),
            Gone::Link(LinkState::Exhausted(max)) => (
                "This link has been used up",
                format!(
                    "It allowed {max} install{}, and all have been used. Ask the person who shared it for a new link.",
                    if *max == 1 { "" } else { "s" }
                ),
            ),
            Gone::Link(LinkState::Active) => ("This link works", String::new()),
            Gone::BuildDeleted => (
                "This build was deleted",
                "The build this link shared is no longer on the server. Ask the person who shared it for a new link."
                    .to_owned(),
            ),
            Gone::ChannelEmpty => (
                "Nothing to install yet",
                "This channel has no build at the moment. Try again after the next build is uploaded.".to_owned(),
            ),
        }
    }

    /// The stable code of the API error for the same reason.
    fn code(&self) -> &'static str {
        match self {
            Gone::Link(LinkState::Revoked(_)) => "link-revoked",
            Gone::Link(LinkState::Expired(_)) => "link-expired",
            Gone::Link(LinkState::Exhausted(_)) => "link-exhausted",
            Gone::Link(LinkState::Active) => "link-active",
            Gone::BuildDeleted => "build-deleted",
            Gone::ChannelEmpty => "channel-empty",
        }
    }

    /// `410` as a page (for people).
    fn page(&self) -> Result<Response, ApiError> {
        let (title, message) = self.words();
        let html = GonePage { title, message: &message, reason: self.code() }.render().map_err(ApiError::internal)?;
        Ok((StatusCode::GONE, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
    }

    /// `410` as an error (for the installer, which shows no page).
    fn error(&self) -> ApiError {
        let (_, message) = self.words();
        ApiError::new(StatusCode::GONE, self.code(), message)
    }
}

#[derive(Template)]
#[template(path = "gone.html")]
struct GonePage<'a> {
    title: &'static str,
    message: &'a str,
    reason: &'static str,
}

#[derive(Template)]
#[template(path = "share_password.html")]
struct PasswordPage<'a> {
    app_name: &'a str,
    error: Option<&'a str>,
    insecure: bool,
}

/// The link a share token names, if any. Tokens are 32 hex digits; anything else is not looked
/// up at all.
async fn link_by_token(state: &AppState, token: &str) -> Result<Option<LinkRow>, ApiError> {
    if token.len() != 32 || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Ok(None);
    }
    Ok(state.db.link_by_token(token).await?)
}

/// The build a link serves now: its own, or its channel's newest.
pub(crate) async fn current_build(state: &AppState, link: &LinkRow) -> Result<Result<BuildRow, Gone>, ApiError> {
    match (&link.build_id, &link.channel) {
        (Some(build_id), _) => match state.db.build_by_id(build_id).await {
            Ok(build) => Ok(Ok(build)),
            Err(DbError::NotFound) => Ok(Err(Gone::BuildDeleted)),
            Err(other) => Err(other.into()),
        },
        (None, Some(channel)) => {
            Ok(state.db.latest_in_channel(&link.bundle_id, channel).await?.ok_or(Gone::ChannelEmpty))
        }
        (None, None) => Ok(Err(Gone::BuildDeleted)),
    }
}

/// Whether `build` is one that `link` shares (its build, or any build of its channel).
fn link_covers(link: &LinkRow, build: &BuildRow) -> bool {
    match (&link.build_id, &link.channel) {
        (Some(build_id), _) => *build_id == build.id,
        (None, Some(channel)) => build.bundle_id == link.bundle_id && build.channel == *channel,
        (None, None) => false,
    }
}

/// The page URL of a share link.
pub(crate) fn link_url(base: &str, link: &LinkRow) -> String {
    format!("{base}/s/{}", link.token)
}

/// The live link a page request names and the build it serves now; else the page that says
/// why not (404 for an unknown link, 410 for a stopped one).
async fn open_link(
    state: &AppState,
    token: &str,
    now: OffsetDateTime,
) -> Result<Result<(LinkRow, BuildRow), Response>, ApiError> {
    let Some(link) = link_by_token(state, token).await? else {
        return Ok(Err(not_found_page()?));
    };
    let link_state = LinkState::of(&link, now);
    if link_state != LinkState::Active {
        return Ok(Err(Gone::Link(link_state).page()?));
    }
    match current_build(state, &link).await? {
        Ok(build) => Ok(Ok((link, build))),
        Err(gone) => Ok(Err(gone.page()?)),
    }
}

/// The URLs on a share link: the link's page, the manifest and icon behind a page
/// capability, and the `.ipa` behind a package capability.
fn capability_urls(base: &str, link: &LinkRow, build: &BuildRow, page: &str, package: &str) -> BuildUrls {
    let root = link_url(base, link);
    BuildUrls {
        manifest: format!("{root}/{page}/manifest.plist"),
        download: format!("{root}/{package}/app.ipa"),
        icon: build.has_icon.then(|| format!("{root}/{page}/icon.png")),
        install: root,
    }
}

/// `GET /s/{token}`: the password page, or the install page with capability URLs (errors are
/// pages too).
pub async fn share_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let now = OffsetDateTime::now_utc();
    let (link, build) = match open_link(&state, &token, now).await? {
        Ok(opened) => opened,
        Err(page) => return Ok(page),
    };
    let passed =
        super::ui::cookie(&headers, PASSED_COOKIE).is_some_and(|value| state.sharing.passed(&link, value, now));
    if link.password_hash.is_some() && !passed {
        return Ok(password_page(&state, &headers, &build, None, StatusCode::OK)?);
    }
    analytics::record(&state, &headers, &build.id, Some(&link.id), EventKind::PageView).await;
    let base = base_url(&state, &headers);
    let page = state.sharing.capability(&link, &build.id, Purpose::Page, now);
    // The page names no working `.ipa` URL (it shows none either): only the manifest, which
    // counts the install, hands one out.
    let mut view = BuildView::with_urls(&build, capability_urls(&base, &link, &build, &page, &page))?;
    // The way back from device registration would reveal the build's own install URL.
    view.token.clear();
    Ok(render_install_page(&state, &headers, &build, view).await?)
}

fn password_page(
    state: &AppState,
    headers: &HeaderMap,
    build: &BuildRow,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let app_name = build.name.clone().unwrap_or_else(|| build.bundle_id.clone());
    let insecure = base_url(state, headers).starts_with("http://");
    let html = PasswordPage { app_name: &app_name, error, insecure }.render().map_err(ApiError::internal)?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

/// The password form.
#[derive(Deserialize)]
pub struct PasswordForm {
    password: String,
}

/// Wrong passwords allowed per client address and link before it must wait.
const PASSWORD_LIMIT_PER_CLIENT: crate::ratelimit::Limit =
    crate::ratelimit::Limit { failures: 5, window: std::time::Duration::from_secs(15 * 60) };
/// Wrong passwords allowed per link from all addresses together: a slow, distributed guesser
/// is stopped too (the link's owner can share a new link if someone locks this one).
const PASSWORD_LIMIT_PER_LINK: crate::ratelimit::Limit =
    crate::ratelimit::Limit { failures: 50, window: std::time::Duration::from_secs(60 * 60) };

/// `POST /s/{token}`: checks the password; on success the browser gets a cookie for this
/// link's page (the installer never needs it) and is sent back to the page.
pub async fn share_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    client_ip: super::ClientIp,
    Path(token): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    let now = OffsetDateTime::now_utc();
    let (link, build) = match open_link(&state, &token, now).await? {
        Ok(opened) => opened,
        Err(page) => return Ok(page),
    };
    let Some(hash) = link.password_hash.clone() else {
        return Ok(Redirect::to(&format!("/s/{}", link.token)).into_response());
    };
    // Parallel guesses each see the failures recorded before them (see `ratelimit`).
    let _turn = crate::ratelimit::one_at_a_time().await;
    let per_client = format!("share:{}:{}", link.id, client_ip.0);
    let per_link = format!("share:{}", link.id);
    for (key, limit) in [(&per_client, PASSWORD_LIMIT_PER_CLIENT), (&per_link, PASSWORD_LIMIT_PER_LINK)] {
        if let Err(error) = crate::ratelimit::check(&state.db, key, limit).await {
            let mut page = password_page(&state, &headers, &build, Some(&error.message), error.status)?;
            if let Some((name, value)) = error.retry_after_header() {
                page.headers_mut().insert(name, value);
            }
            return Ok(page);
        }
    }
    let password = form.password;
    let matches = password.len() <= crate::sharing::MAX_PASSWORD_BYTES
        && crate::accounts::verify_password(password, Some(hash)).await.map_err(ApiError::internal)?;
    if !matches {
        crate::ratelimit::record_failure(&state.db, &per_client).await?;
        crate::ratelimit::record_failure(&state.db, &per_link).await?;
        return Ok(password_page(
            &state,
            &headers,
            &build,
            Some("That password is not right. Check it with the person who shared the link."),
            StatusCode::UNAUTHORIZED,
        )?);
    }
    crate::ratelimit::clear(&state.db, &per_client).await?;
    let until = now + PASSED_LIFETIME;
    let secure = if base_url(&state, &headers).starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!(
        "{PASSED_COOKIE}={}; Path=/s/{}; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        state.sharing.passed_cookie(&link, until),
        link.token,
        PASSED_LIFETIME.as_secs()
    );
    let mut response = Redirect::to(&format!("/s/{}", link.token)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(ApiError::internal)?);
    Ok(response)
}

/// The link and build a capability URL opens, or why not. The link's revocation and expiry
/// end its capabilities at once; its install limit is counted at the manifest.
async fn open_capability(
    state: &AppState,
    token: &str,
    capability: &str,
    purpose: Purpose,
) -> Result<Result<(LinkRow, BuildRow), ApiError>, ApiError> {
    let Some(link) = link_by_token(state, token).await? else {
        return Ok(Err(ApiError::not_found("The link")));
    };
    let now = OffsetDateTime::now_utc();
    match LinkState::of(&link, now) {
        LinkState::Revoked(at) => return Ok(Err(Gone::Link(LinkState::Revoked(at)).error())),
        LinkState::Expired(at) => return Ok(Err(Gone::Link(LinkState::Expired(at)).error())),
        LinkState::Active | LinkState::Exhausted(_) => {}
    }
    let opened = match state.sharing.verify_capability(&link.id, capability, purpose, now) {
        Ok(opened) => opened,
        Err(CapabilityRefused::Invalid) => {
            return Ok(Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "capability-invalid",
                "This download address is not valid. Open the install page again and tap Install.",
            )));
        }
        Err(CapabilityRefused::OutsideWindow) => {
            return Ok(Err(ApiError::new(
                StatusCode::GONE,
                "capability-expired",
                "This download address has expired. Open the install page again and tap Install.",
            )));
        }
    };
    let build = match state.db.build_by_id(&opened.build_id).await {
        Ok(build) => build,
        Err(DbError::NotFound) => return Ok(Err(Gone::BuildDeleted.error())),
        Err(other) => return Err(other.into()),
    };
    if !link_covers(&link, &build) {
        return Ok(Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "capability-invalid",
            "This download address is not valid for this link. Open the install page again and tap Install.",
        )));
    }
    Ok(Ok((link, build)))
}

/// `GET /s/{token}/{capability}/manifest.plist`: counts an install against the link's limit
/// and names the `.ipa` with a package capability. A `HEAD` (a link checker) counts nothing
/// and is answered without a body.
pub async fn share_manifest(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((token, capability)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (link, build) = open_capability(&state, &token, &capability, Purpose::Page).await??;
    if method == Method::HEAD {
        return Ok(([(header::CONTENT_TYPE, "text/xml; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], "")
            .into_response());
    }
    if !state.db.count_link_install(&link.id).await? {
        return Err(Gone::Link(LinkState::Exhausted(link.max_installs.unwrap_or(0))).error());
    }
    analytics::record(&state, &headers, &build.id, Some(&link.id), EventKind::Manifest).await;
    let package = state.sharing.capability(&link, &build.id, Purpose::Package, OffsetDateTime::now_utc());
    manifest_response(&build, &capability_urls(&base_url(&state, &headers), &link, &build, &capability, &package))
}

/// `GET|HEAD /s/{token}/{capability}/app.ipa`.
pub async fn share_ipa(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((token, capability)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (link, build) = open_capability(&state, &token, &capability, Purpose::Package).await??;
    super::download::serve_ipa(&state, &build, Some(&link.id), &method, &headers).await
}

/// `GET /s/{token}/{capability}/icon.png`.
pub async fn share_icon(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((token, capability)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, build) = open_capability(&state, &token, &capability, Purpose::Page).await??;
    super::download::serve_icon(&state, &build, &headers).await
}

/// `GET /c/{token}`: the install page of the newest build of an app's channel. The URL never
/// changes; the build behind it does, with each upload to the channel. Errors are pages too.
pub async fn channel_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    if token.len() != 32 || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Ok(not_found_page()?);
    }
    let Some((bundle_id, channel)) = state.db.channel_of_page(&token).await? else {
        return Ok(not_found_page()?);
    };
    let Some(build) = state.db.latest_in_channel(&bundle_id, &channel).await? else {
        return Ok(Gone::ChannelEmpty.page()?);
    };
    let mut view = BuildView::new(&build, &base_url(&state, &headers))?;
    // The QR code and "Copy link" give the channel's page, which outlives this build.
    view.urls.install = channel_page_url(&base_url(&state, &headers), &token);
    analytics::record(&state, &headers, &build.id, None, EventKind::PageView).await;
    Ok(render_install_page(&state, &headers, &build, view).await?)
}

/// The stable page URL of an (app, channel), made the first time it is asked for.
pub(crate) async fn channel_page_token(state: &AppState, bundle_id: &str, channel: &str) -> Result<String, ApiError> {
    Ok(state.db.channel_page_token(bundle_id, channel, &crate::tokens::random_hex(16)).await?)
}

/// `{base}/c/{token}`.
pub(crate) fn channel_page_url(base: &str, token: &str) -> String {
    format!("{base}/c/{token}")
}
