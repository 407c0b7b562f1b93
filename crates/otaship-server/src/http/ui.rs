//! The uploaders' web UI: sign in with an account's password or an admin API token, upload
//! builds, browse apps and their builds, delete. Pages are rendered on the server and every form
//! works without JavaScript; drag-and-drop and the progress bar are an enhancement on top of the
//! plain upload form.
//!
//! Roles: a session opened with an admin token, or by an account with the `admin` role, may do
//! everything; an `uploader` account may upload and browse, and every handler that deletes,
//! changes devices or serves an `/admin` page starts with [`Session::require_admin`]. Failed
//! sign-ins are limited per client address and per username (`crate::ratelimit`).
//!
//! Security model: the session cookie is HttpOnly, SameSite=Strict, and Secure whenever the
//! page was served over HTTPS. Every state-changing request must carry the session's
//! synchronizer token (a form field, the `X-CSRF-Token` header, or the upload form's `csrf`
//! query parameter) and, when the browser names one, an `Origin` of this server. None of this
//! touches the tester's side: install pages, manifests and downloads never read a cookie.

use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::api::{BuildJson, receive_build, remove_build};
use super::pages::{BuildView, qr_svg};
use super::{ClientIp, base_url};
use crate::AppState;
use crate::accounts::{self, Role};
use crate::db::{SessionOwner, SessionRow};
use crate::error::ApiError;
use crate::ratelimit::{self, Limit};
use crate::tokens::{self, Scope};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "otaship_session";
/// How long a sign-in lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Builds per page on an app's page.
const BUILDS_PER_PAGE: u64 = 50;

/// A signed-in browser.
pub struct Session {
    id_hash: String,
    row: SessionRow,
}

impl Session {
    /// The live session named by the request's cookie, if any.
    pub(crate) async fn from_headers(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
        let Some(value) = cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let id_hash = tokens::hash(value);
        Ok(state.db.session(&id_hash).await?.map(|row| Session { id_hash, row }))
    }
}

/// Handlers that take a `Session` run only for a signed-in browser; anyone else is sent to the
/// sign-in page (or, asking for JSON, told that the sign-in has ended).
impl axum::extract::FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Response> {
        let headers = &parts.headers;
        match Session::from_headers(state, headers).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) if wants_json(headers) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "signed-out",
                "Your sign-in has ended; reload the page and sign in again.",
            )
            .into_response()),
            Ok(None) => Err(Redirect::to("/signin").into_response()),
            Err(error) => Err(PageError(error).into_response()),
        }
    }
}

impl Session {
    /// Who is signed in: the account's username, or the name of the token the session was
    /// opened with.
    pub(crate) fn signed_in_as(&self) -> &str {
        match &self.row.owner {
            SessionOwner::Token { name, .. } => name,
            SessionOwner::Account { username, .. } => username,
        }
    }

    /// What the session may do. Only admin tokens open sessions, so a token's session is an
    /// admin's.
    pub(crate) fn role(&self) -> Role {
        match &self.row.owner {
            SessionOwner::Token { .. } => Role::Admin,
            SessionOwner::Account { role, .. } => *role,
        }
    }

    /// Whether the session may do everything (for templates: `is_admin`).
    pub(crate) fn is_admin(&self) -> bool {
        self.role() == Role::Admin
    }

    /// Refuses, with a 403 page, a session that is not an admin's. The first line of every
    /// handler that deletes, changes devices or accounts, or serves an `/admin` page.
    pub(crate) fn require_admin(&self) -> Result<(), PageError> {
        if self.is_admin() {
            return Ok(());
        }
        Err(PageError(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin-only",
            format!(
                "Only administrators may do this; {} is an uploader. Ask an administrator to do it, or to make \
                 your account an admin.",
                self.signed_in_as()
            ),
        )))
    }

    /// The account signed in, when the session was opened with a password.
    pub(crate) fn account_id(&self) -> Option<&str> {
        match &self.row.owner {
            SessionOwner::Account { id, .. } => Some(id),
            SessionOwner::Token { .. } => None,
        }
    }

    /// The hash of the session's cookie value (its id in the database).
    pub(crate) fn id_hash(&self) -> &str {
        &self.id_hash
    }

    /// The session's synchronizer token, for forms.
    pub(crate) fn csrf_token(&self) -> &str {
        &self.row.csrf_token
    }

    /// Refuses a state-changing request that does not prove it comes from this server's pages.
    pub(crate) fn check_request(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Result<(), ApiError> {
        check_origin(state, headers)?;
        let given = csrf.or_else(|| headers.get("x-csrf-token").and_then(|value| value.to_str().ok()));
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), self.row.csrf_token.as_bytes()) => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf-check-failed",
                "This form is out of date or did not come from this server; reload the page and try again.",
            )),
        }
    }
}

/// The value of one cookie (browsers may split cookies over several headers).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name && !value.is_empty()).then_some(value))
}

/// A browser that names an origin must name this server; one that names none (an old browser, a
/// plain form post without Origin) is judged by the CSRF token alone.
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) else {
        return Ok(());
    };
    if origin == base_url(state, headers) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin-request",
            "This request came from another site and was refused; use otaship's own pages.",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether absolute URLs for this request are plain HTTP (from which iOS never installs).
fn is_insecure(state: &AppState, headers: &HeaderMap) -> bool {
    base_url(state, headers).starts_with("http://")
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}

/// The `Set-Cookie` value for a session (or, with `None`, the one that removes it).
fn session_cookie(value: Option<&str>, secure: bool) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    let text = match value {
        Some(value) => format!(
            "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_LIFETIME.as_secs()
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).map_err(ApiError::internal)
}

/// An error shown as a page rather than as JSON.
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        PageError(error)
    }
}

impl From<crate::db::DbError> for PageError {
    fn from(error: crate::db::DbError) -> Self {
        PageError(error.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    message: &'a str,
    insecure: bool,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let html = ErrorPage { message: &self.0.message, insecure: false }
            .render()
            .unwrap_or_else(|_| "The server failed to show this page.".to_owned());
        let retry_after = self.0.retry_after_header();
        let mut response = (self.0.status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response();
        if let Some((name, value)) = retry_after {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// A signed-in page: never cached, never framed.
pub(crate) fn private_page(template: &impl Template) -> Result<Response, PageError> {
    let html = template.render().map_err(ApiError::internal)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    error: Option<&'a str>,
    username: &'a str,
    insecure: bool,
}

/// `GET /signin`.
pub async fn signin_page(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, PageError> {
    if Session::from_headers(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    private_page(&SignInPage { error: None, username: "", insecure: is_insecure(&state, &headers) })
}

/// The sign-in form: a username and password, or an API token.
#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

/// Failed sign-ins allowed from one client address (an IPv6 client's /64) per window.
pub(crate) const SIGNIN_PER_ADDRESS: Limit = Limit { failures: 10, window: Duration::from_secs(15 * 60) };
/// Failed sign-ins allowed for one username per window, from anywhere: guessing one account's
/// password from many addresses stops here too, at the price of the account's owner waiting.
pub(crate) const SIGNIN_PER_USERNAME: Limit = Limit { failures: 20, window: Duration::from_secs(15 * 60) };

/// The rate limiter's key for sign-ins from `ip`. An IPv6 client usually holds a whole /64, so
/// the /64 is what is counted.
fn address_key(ip: std::net::IpAddr) -> String {
    ratelimit::client_key("signin-ip", ip)
}

/// The rate limiter's key for sign-ins as `username` (any case).
pub(crate) fn username_key(username: &str) -> String {
    format!("signin-user:{}", username.trim().to_ascii_lowercase())
}

/// `POST /signin`: an account's password, or an admin API token, opens a session.
pub async fn signin(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, PageError> {
    check_origin(&state, &headers)?;
    let insecure = is_insecure(&state, &headers);
    let username = form.username.trim();
    // Failures are answered with the sign-in page again, saying what went wrong.
    let answer = |error: ApiError| -> Result<Response, PageError> {
        let mut page = private_page(&SignInPage { error: Some(&error.message), username, insecure })?;
        *page.status_mut() = error.status;
        if let Some((name, value)) = error.retry_after_header() {
            page.headers_mut().insert(name, value);
        }
        Ok(page)
    };
    let by_address = address_key(ip);
    let _turn = ratelimit::one_at_a_time().await;
    if let Err(limited) = ratelimit::check(&state.db, &by_address, SIGNIN_PER_ADDRESS).await {
        return answer(limited);
    }
    if !username.is_empty() {
        let by_username = username_key(username);
        if let Err(limited) = ratelimit::check(&state.db, &by_username, SIGNIN_PER_USERNAME).await {
            return answer(limited);
        }
        // A password longer than any that can be set is wrong without being looked up (and only
        // an empty one is hashed in its place, so that megabytes are not).
        let too_long = form.password.len() > accounts::MAX_PASSWORD_BYTES;
        let found = match accounts::check_username(username) {
            Ok(name) if !too_long => state.db.account_by_username(&name).await?,
            _ => None,
        };
        let stored = found.as_ref().map(|(_, hash)| hash.clone());
        let typed = if too_long { String::new() } else { form.password };
        let matches = accounts::verify_password(typed, stored).await.map_err(ApiError::internal)?;
        let account = match found {
            Some((account, _)) if matches => account,
            _ => {
                ratelimit::record_failure(&state.db, &by_address).await?;
                ratelimit::record_failure(&state.db, &by_username).await?;
                return answer(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "wrong-password",
                    "That username and password do not match. Check them and try again; an administrator can \
                     reset a forgotten password.",
                ));
            }
        };
        ratelimit::clear(&state.db, &by_username).await?;
        let value = tokens::random_hex(32);
        let expires_at = OffsetDateTime::now_utc() + SESSION_LIFETIME;
        state
            .db
            .insert_account_session(&tokens::hash(&value), &account.id, &tokens::random_hex(32), expires_at)
            .await?;
        return signed_in(&state, &headers, &value);
    }
    let token = form.token.trim();
    if token.is_empty() {
        return answer(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing-credentials",
            "Give a username and password, or an API token.",
        ));
    }
    let Some(live) = state.db.live_token(&tokens::hash(token)).await? else {
        ratelimit::record_failure(&state.db, &by_address).await?;
        return answer(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "That token is not valid or was revoked. Create one with `otaship token create --scope admin`.",
        ));
    };
    if live.scope != Scope::Admin {
        return answer(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient-scope",
            "This token may only upload builds, so it cannot sign in to the web UI. Sign in with an account, or \
             with an admin token (otaship token create --scope admin).",
        ));
    }
    let value = tokens::random_hex(32);
    let expires_at = OffsetDateTime::now_utc() + SESSION_LIFETIME;
    state.db.insert_session(&tokens::hash(&value), &live.id, &tokens::random_hex(32), expires_at).await?;
    signed_in(&state, &headers, &value)
}

/// The answer to a successful sign-in: the session cookie, and on to the apps.
fn signed_in(state: &AppState, headers: &HeaderMap, value: &str) -> Result<Response, PageError> {
    let secure = base_url(state, headers).starts_with("https://");
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(Some(value), secure)?);
    Ok(response)
}

/// A form that carries only the CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    pub(crate) csrf: String,
}

/// `POST /signout`.
pub async fn signout(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_request(&state, &headers, Some(&form.csrf))?;
    state.db.delete_session(&session.id_hash).await?;
    let secure = base_url(&state, &headers).starts_with("https://");
    let mut response = Redirect::to("/signin").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(None, secure)?);
    Ok(response)
}

/// One app on the home page.
struct AppCard {
    bundle_id: String,
    build_count: u64,
    latest: BuildView,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    apps: Vec<AppCard>,
    max_upload: String,
    base: String,
    insecure: bool,
}

/// `GET /`: the apps with their latest build, and the upload form.
pub async fn home(State(state): State<AppState>, session: Session, headers: HeaderMap) -> Result<Response, PageError> {
    let base = base_url(&state, &headers);
    let apps = state
        .db
        .list_apps()
        .await?
        .into_iter()
        .map(|app| {
            Ok(AppCard {
                latest: BuildView::new(&app.latest, &base)?,
                bundle_id: app.bundle_id,
                build_count: app.build_count,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    private_page(&AppsPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.row.csrf_token,
        apps,
        max_upload: super::pages::human_size(state.config.max_upload_size),
        insecure: base.starts_with("http://"),
        base,
    })
}

/// Paging of an app's builds.
#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<u64>,
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    name: String,
    bundle_id: String,
    builds: Vec<BuildView>,
    latest_qr: Option<std::sync::Arc<str>>,
    page: u64,
    pages: u64,
    total: u64,
    insecure: bool,
}

/// `GET /apps/{bundle_id}`: every build of an app, newest first.
pub async fn app_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(bundle_id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let page = query.page.unwrap_or(1).max(1);
    let (rows, total) =
        state.db.list_builds(&bundle_id, (page - 1).saturating_mul(BUILDS_PER_PAGE), BUILDS_PER_PAGE).await?;
    if total == 0 {
        return Err(ApiError::not_found(&format!("The app {bundle_id}")).into());
    }
    let base = base_url(&state, &headers);
    let builds = rows.iter().map(|row| BuildView::new(row, &base)).collect::<Result<Vec<_>, _>>()?;
    let latest_qr = match (page, builds.first()) {
        (1, Some(latest)) => Some(qr_svg(&latest.urls.install)?),
        _ => None,
    };
    private_page(&AppPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.row.csrf_token,
        name: builds.first().map(|build| build.name.clone()).unwrap_or_else(|| bundle_id.clone()),
        bundle_id,
        builds,
        latest_qr,
        page,
        pages: total.div_ceil(BUILDS_PER_PAGE),
        total,
        insecure: base.starts_with("http://"),
    })
}

/// `POST /builds/{id}/delete`.
pub async fn delete_build(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let build = remove_build(&state, &id).await?;
    let (_, remaining) = state.db.list_builds(&build.bundle_id, 0, 1).await?;
    let target = if remaining == 0 { "/".to_owned() } else { format!("/apps/{}", build.bundle_id) };
    Ok(Redirect::to(&target).into_response())
}

/// The CSRF token of the upload form, in its action URL: a multipart body is streamed to disk
/// field by field, so the check must not wait for a form field that may follow a 4 GiB file.
#[derive(Deserialize)]
pub struct UploadQuery {
    csrf: Option<String>,
}

/// `POST /upload`: the web UI's upload (multipart `file` and `notes`). Scripts get the build as
/// JSON; a plain form post is sent on to the app's page.
pub async fn upload(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> Result<Response, Response> {
    let json = wants_json(&headers);
    let answer_error = |error: ApiError| if json { error.into_response() } else { PageError(error).into_response() };
    session.check_request(&state, &headers, query.csrf.as_deref()).map_err(answer_error)?;
    let ingested = receive_build(&state, &headers, None, body).await.map_err(answer_error)?;
    let build = ingested.build;
    if json {
        let body = BuildJson::new(&build, &base_url(&state, &headers));
        let status = if ingested.created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, axum::Json(body)).into_response())
    } else {
        Ok(Redirect::to(&format!("/apps/{}", build.bundle_id)).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ins_are_counted_per_ipv4_address_and_ipv6_network() {
        let key = |text: &str| address_key(text.parse().expect("address"));
        assert_eq!(key("203.0.113.9"), "signin-ip:203.0.113.9");
        assert_eq!(key("2001:db8:1:2::5"), "signin-ip:2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), key("2001:db8:1:2::5"));
        assert_ne!(key("2001:db8:1:3::5"), key("2001:db8:1:2::5"));
        assert_eq!(username_key(" Alice "), username_key("alice"));
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("theme=dark; otaship_sessionx=no"));
        headers.append(header::COOKIE, HeaderValue::from_static("a=b; otaship_session=abc123"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc123"));
        assert_eq!(cookie(&HeaderMap::new(), SESSION_COOKIE), None);
    }

    #[test]
    fn session_cookies_are_http_only_strict_and_secure_over_https() {
        let cookie = session_cookie(Some("v"), true).expect("header");
        let text = cookie.to_str().expect("ascii");
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict") && text.ends_with("; Secure"));
        let plain = session_cookie(Some("v"), false).expect("header");
        assert!(!plain.to_str().expect("ascii").contains("Secure"));
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }
}

/// One finding as the health page shows it.
struct FindingView {
    severity: &'static str,
    code: &'static str,
    message: String,
    fix: String,
}

/// Findings worst first, as the pages show them.
fn finding_views(findings: &[otaship_doctor::Finding]) -> Vec<FindingView> {
    let mut sorted: Vec<&otaship_doctor::Finding> = findings.iter().collect();
    sorted.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    sorted
        .into_iter()
        .map(|finding| FindingView {
            severity: match finding.severity {
                otaship_doctor::Severity::Error => "error",
                otaship_doctor::Severity::Warning => "warning",
                otaship_doctor::Severity::Info => "info",
            },
            code: finding.code,
            message: finding.message.clone(),
            fix: finding.fix.clone(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    insecure: bool,
    url: Option<String>,
    checked_at: Option<String>,
    findings: Vec<FindingView>,
    errors: usize,
    warnings: usize,
}

/// `GET /admin/health`: the latest self-check, as a device sees this server.
pub async fn health_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    session.require_admin()?;
    let latest = crate::self_check::latest(&state);
    let findings = latest.as_ref().map(|check| finding_views(&check.findings)).unwrap_or_default();
    private_page(&HealthPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.row.csrf_token,
        insecure: is_insecure(&state, &headers),
        url: latest.as_ref().map(|check| check.url.clone()),
        checked_at: latest.as_ref().map(|check| crate::db::timestamp(check.checked_at).replace('T', " ")),
        errors: findings.iter().filter(|finding| finding.severity == "error").count(),
        warnings: findings.iter().filter(|finding| finding.severity == "warning").count(),
        findings,
    })
}

/// `POST /admin/health`: check again now.
pub async fn health_recheck(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    if let Some(base) = state.device_base_url() {
        crate::self_check::run(&state, &base).await;
    }
    Ok(Redirect::to("/admin/health").into_response())
}

#[derive(Template)]
#[template(path = "diagnose.html")]
struct DiagnosePage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    insecure: bool,
    target: String,
    udid: String,
    ios: String,
    ran: bool,
    error: Option<String>,
    findings: Vec<FindingView>,
    errors: usize,
    manifest_url: Option<String>,
    package_url: Option<String>,
    bytes: u64,
}

/// The Diagnose form.
#[derive(Deserialize, Default)]
pub struct DiagnoseForm {
    csrf: String,
    target: String,
    #[serde(default)]
    udid: String,
    #[serde(default)]
    ios: String,
}

/// `GET /admin/diagnose`: the doctor for any install link, from the server's point of view.
pub async fn diagnose_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    session.require_admin()?;
    private_page(&DiagnosePage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.row.csrf_token,
        insecure: is_insecure(&state, &headers),
        target: String::new(),
        udid: String::new(),
        ios: String::new(),
        ran: false,
        error: None,
        findings: Vec::new(),
        errors: 0,
        manifest_url: None,
        package_url: None,
        bytes: 0,
    })
}

/// `POST /admin/diagnose`: runs the doctor on a URL or link (never on a local path).
pub async fn diagnose_run(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<DiagnoseForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let target = form.target.trim().to_owned();
    let lower = target.to_ascii_lowercase();
    let mut page = DiagnosePage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.row.csrf_token,
        insecure: is_insecure(&state, &headers),
        target: target.clone(),
        udid: form.udid.trim().to_owned(),
        ios: form.ios.trim().to_owned(),
        ran: true,
        error: None,
        findings: Vec::new(),
        errors: 0,
        manifest_url: None,
        package_url: None,
        bytes: 0,
    };
    // Files on the server are not the uploader's business: only URLs and links.
    if !(lower.starts_with("https://") || lower.starts_with("http://") || lower.contains("itms-services:")) {
        page.error = Some("Give an install page URL, an itms-services:// link or a manifest URL.".to_owned());
        return private_page(&page);
    }
    let mut options = otaship_doctor::Options::default();
    if let Some(ca) = state.tls.as_ref().and_then(|tls| tls.local_ca.as_ref()) {
        options.extra_roots.push(rustls_pki_types::CertificateDer::from(ca.ca_der().to_vec()));
    }
    let request = otaship_doctor::Request {
        target,
        options,
        device: otaship_doctor::package::DeviceFacts {
            udid: Some(page.udid.clone()).filter(|udid| !udid.is_empty()),
            ios: Some(page.ios.clone()).filter(|ios| !ios.is_empty()),
        },
        full: false,
    };
    match otaship_doctor::diagnose(&request).await {
        Ok(report) => {
            page.findings = finding_views(&report.findings);
            page.errors = page.findings.iter().filter(|finding| finding.severity == "error").count();
            page.manifest_url = report.manifest_url;
            page.package_url = report.package_url;
            page.bytes = report.bytes_transferred;
        }
        Err(error) => page.error = Some(error.to_string()),
    }
    private_page(&page)
}
