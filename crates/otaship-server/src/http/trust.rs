//! Trust onboarding for the local CA: the page that walks a tester through trusting otaship's
//! root on an iPhone or iPad, the root as a configuration profile and as a certificate, and the
//! plain-HTTP helper that serves them to a device that does not trust the server yet (and
//! redirects everything else to HTTPS).

use askama::Template;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use super::pages::qr_svg;
use super::{base_url, request_host};
use crate::AppState;
use crate::error::ApiError;

/// Where the onboarding page lives, on HTTPS and on the HTTP helper.
pub const TRUST_PATH: &str = "/trust";
const PROFILE_PATH: &str = "/trust/otaship-ca.mobileconfig";
const CERTIFICATE_PATH: &str = "/trust/otaship-ca.crt";

/// The routes of the plain-HTTP helper.
pub fn helper_router(state: AppState) -> Router {
    Router::new()
        .route("/", get(onboarding))
        .route(TRUST_PATH, get(onboarding))
        .route(PROFILE_PATH, get(profile))
        .route(CERTIFICATE_PATH, get(certificate))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(to_https)
        .layer(axum::middleware::map_request(super::host_from_authority))
        .layer(axum::Extension(ViaHelper))
        .with_state(state)
}

/// Marks requests that reached the plain-HTTP helper, whose Host names the helper's port.
#[derive(Debug, Clone, Copy)]
struct ViaHelper;

/// The routes the HTTPS side adds.
pub fn https_routes() -> Router<AppState> {
    Router::new()
        .route(TRUST_PATH, get(onboarding))
        .route(PROFILE_PATH, get(profile))
        .route(CERTIFICATE_PATH, get(certificate))
}

/// The HTTPS base URL for a request; one that reached the HTTP helper names the helper's port
/// in its Host, so the HTTPS port is put in its place.
fn https_base(state: &AppState, headers: &HeaderMap, via_helper: bool) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let base = base_url(state, headers);
    if !via_helper && base.starts_with("https://") {
        return base;
    }
    let host = request_host(state, headers);
    match state.main_port() {
        443 => format!("https://{host}"),
        port => format!("https://{host}:{port}"),
    }
}

/// The onboarding page's URL for a device that may not trust the server yet: on the HTTP
/// helper when it runs (a page an untrusting phone can open), else on HTTPS. `None` unless the
/// server uses its local CA.
pub fn onboarding_url(state: &AppState, headers: &HeaderMap) -> Option<String> {
    state.tls.as_ref()?.local_ca.as_ref()?;
    Some(match state.helper_port() {
        Some(port) => {
            let host = request_host(state, headers);
            match port {
                80 => format!("http://{host}{TRUST_PATH}"),
                _ => format!("http://{host}:{port}{TRUST_PATH}"),
            }
        }
        None => format!("{}{TRUST_PATH}", https_base(state, headers, false)),
    })
}

#[derive(Template)]
#[template(path = "trust.html")]
struct OnboardingPage {
    ca_name: String,
    fingerprint: String,
    profile_url: String,
    certificate_url: String,
    https_url: String,
    qr_svg: std::sync::Arc<str>,
    insecure: bool,
}

async fn onboarding(
    State(state): State<AppState>,
    via_helper: Option<axum::Extension<ViaHelper>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(ca) = state.tls.as_ref().and_then(|tls| tls.local_ca.as_ref()) else {
        return Err(ApiError::not_found("The trust page (this server does not use its local CA)"));
    };
    let page_url = onboarding_url(&state, &headers).unwrap_or_default();
    let page = OnboardingPage {
        ca_name: ca.common_name(),
        fingerprint: ca.fingerprint(),
        profile_url: PROFILE_PATH.to_owned(),
        certificate_url: CERTIFICATE_PATH.to_owned(),
        https_url: format!("{}/", https_base(&state, &headers, via_helper.is_some())),
        qr_svg: qr_svg(&page_url)?,
        // Served over HTTP on purpose: the device cannot trust HTTPS yet.
        insecure: false,
    };
    let html = page.render().map_err(ApiError::internal)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

async fn profile(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(ca) = state.tls.as_ref().and_then(|tls| tls.local_ca.as_ref()) else {
        return Err(ApiError::not_found("The CA profile (this server does not use its local CA)"));
    };
    let body = ca.mobileconfig().map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-apple-aspen-config"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"otaship-ca.mobileconfig\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

async fn certificate(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(ca) = state.tls.as_ref().and_then(|tls| tls.local_ca.as_ref()) else {
        return Err(ApiError::not_found("The CA certificate (this server does not use its local CA)"));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-x509-ca-cert"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"otaship-ca.crt\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        ca.ca_der().to_vec(),
    )
        .into_response())
}

/// Everything else on plain HTTP goes to the same path over HTTPS.
async fn to_https(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path_and_query().map_or("/", |path| path.as_str()).to_owned();
    let target = format!("{}{path}", https_base(&state, request.headers(), true));
    match request.method().as_str() {
        "GET" | "HEAD" => Redirect::permanent(&target).into_response(),
        // A redirected upload would be sent twice over the network; refuse it plainly.
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "https-required",
            format!("This server speaks HTTPS; send the request to {target}."),
        )
        .into_response(),
    }
}
