//! The HTTP surface: one router listing every route, and the request helpers they share.

mod accounts;
mod api;
mod build_page;
mod devices;
mod download;
mod links;
pub mod openapi;
mod pages;
mod retention;
mod share;
mod trust;
mod ui;
mod uploads;
mod webhooks;

pub use trust::helper_router;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::routing::{get, post, put};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;
use crate::db::{BuildRow, DbError};
use crate::error::ApiError;

/// Largest body read into memory whole: release notes may be 1 MiB of JSON-escaped text.
const MAX_BUFFERED_BODY: usize = 4 << 20;

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/builds", post(api::upload_build).layer(DefaultBodyLimit::disable()))
        .route("/api/v1/builds/{id}", get(api::get_build).delete(api::delete_build))
        .route("/api/v1/apps", get(api::list_apps))
        .route("/api/v1/apps/{app}/builds", get(api::list_builds))
        .route("/api/v1/uploads", post(uploads::create_upload))
        .route("/api/v1/uploads/{id}", get(uploads::get_upload).delete(uploads::delete_upload))
        .route("/api/v1/uploads/{id}/parts/{number}", put(uploads::put_part).layer(DefaultBodyLimit::disable()))
        .route("/api/v1/uploads/{id}/complete", post(uploads::complete_upload))
        .route("/api/v1/builds/{id}/devices", get(devices::build_devices))
        .route("/api/v1/devices", get(devices::list_devices))
        .route("/api/v1/devices/export", get(devices::export_api))
        .route("/api/v1/devices/{id}", axum::routing::patch(devices::patch_device).delete(devices::delete_device))
        .route("/api/v1/builds/{id}/links", post(links::create_build_link))
        .route("/api/v1/builds/{id}/analytics", get(links::build_analytics))
        .route("/api/v1/apps/{app}/channels", get(links::list_channels))
        .route("/api/v1/apps/{app}/channels/{channel}/links", post(links::create_channel_link))
        .route("/api/v1/links", get(links::list_links))
        .route("/api/v1/links/{id}", get(links::get_link).delete(links::revoke_link))
        .route("/api/v1/retention", get(retention::list_rules))
        .route("/api/v1/retention/run", post(retention::run_api))
        .route("/api/v1/apps/{app}/retention", put(retention::put_rule).delete(retention::delete_rule))
        .route("/api/v1/webhooks", get(webhooks::list_webhooks).post(webhooks::create_webhook))
        .route("/api/v1/webhooks/check-expiry", post(webhooks::check_expiry))
        .route("/api/v1/webhooks/{id}", axum::routing::patch(webhooks::patch_webhook).delete(webhooks::delete_webhook))
        .route("/api/v1/webhooks/{id}/deliveries", get(webhooks::list_deliveries))
        .route("/api/v1/webhooks/{id}/ping", post(webhooks::ping_webhook))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api", get(openapi::api_page))
        .route("/i/{token}", get(pages::install_page))
        .route("/i/{token}/manifest.plist", get(pages::manifest))
        .route("/i/{token}/icon.png", get(download::icon))
        .route("/i/{token}/app.ipa", get(download::ipa).head(download::ipa))
        .route("/s/{token}", get(share::share_page).post(share::share_password))
        .route("/s/{token}/{capability}/manifest.plist", get(share::share_manifest))
        .route("/s/{token}/{capability}/icon.png", get(share::share_icon))
        .route("/s/{token}/{capability}/app.ipa", get(share::share_ipa).head(share::share_ipa))
        .route("/c/{token}", get(share::channel_page))
        .route("/", get(ui::home))
        .route("/signin", get(ui::signin_page).post(ui::signin))
        .route("/signout", post(ui::signout))
        .route("/upload", post(ui::upload).layer(DefaultBodyLimit::disable()))
        .route("/apps/{bundle_id}", get(ui::app_page))
        .route("/apps/{bundle_id}/channels", get(build_page::channels_page))
        .route("/apps/{bundle_id}/channels/{channel}/links", post(build_page::create_channel_link_form))
        .route("/builds/{id}", get(build_page::build_page))
        .route("/builds/{id}/links", post(build_page::create_build_link_form))
        .route("/links/{id}/revoke", post(build_page::revoke_link_form))
        .route("/builds/{id}/delete", post(ui::delete_build))
        .route("/builds/{id}/devices", get(devices::build_devices_page))
        .route("/devices", get(devices::devices_page))
        .route("/devices/export", get(devices::export_form))
        .route("/devices/{id}/rename", post(devices::rename_device_form))
        .route("/devices/{id}/delete", post(devices::delete_device_form))
        .route("/devices/enroll", get(devices::enroll_page))
        .route("/devices/enroll.mobileconfig", get(devices::enrollment_profile))
        .route(
            "/devices/enroll/callback",
            post(devices::enrollment_callback).layer(DefaultBodyLimit::max(otaship_ipa::device::MAX_REPLY_BYTES)),
        )
        .route("/devices/enrolled/{token}", get(devices::enrolled_page))
        .route("/admin/health", get(ui::health_page).post(ui::health_recheck))
        .route("/admin/diagnose", get(ui::diagnose_page).post(ui::diagnose_run))
        .route("/admin/accounts", get(accounts::accounts_list).post(accounts::create_account))
        .route("/admin/accounts/{id}/role", post(accounts::set_role))
        .route("/admin/accounts/{id}/password", post(accounts::reset_password))
        .route("/admin/accounts/{id}/delete", post(accounts::delete_account))
        .route("/account", get(accounts::own_account))
        .route("/account/password", post(accounts::change_password))
        .route("/admin/storage", get(retention::page))
        .route("/admin/storage/rules", post(retention::set_rule_form))
        .route("/admin/storage/rules/delete", post(retention::remove_rule_form))
        .route("/admin/storage/run", post(retention::run_form))
        .route("/admin/webhooks", get(webhooks::webhooks_page).post(webhooks::create_webhook_form))
        .route("/admin/webhooks/check-expiry", post(webhooks::check_expiry_form))
        .route("/admin/webhooks/{id}/ping", post(webhooks::ping_webhook_form))
        .route("/admin/webhooks/{id}/enabled", post(webhooks::enable_webhook_form))
        .route("/admin/webhooks/{id}/delete", post(webhooks::delete_webhook_form))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(trust::https_routes())
        .layer(axum::middleware::map_request(refuse_control_characters))
        .layer(axum::middleware::map_request(host_from_authority))
        // Bodies read whole (JSON, forms) stay small; the three upload routes above stream to
        // disk under their own limit (--max-upload-size) instead.
        .layer(DefaultBodyLimit::max(MAX_BUFFERED_BODY))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Install URLs are capabilities: no other site may learn them from a Referer. Within the
        // site the origin must still be sent, or browsers post forms with `Origin: null`, which
        // the web UI's cross-site check refuses.
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        // No page of otaship may be framed (clickjacking of the delete and upload forms).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        ))
        .with_state(state)
}

/// HTTP/2 carries the host in the `:authority` pseudo-header, which lands in the request URI, not
/// in a `Host` header; every URL the server writes is built from `Host`, so it is filled in here.
/// (Safari speaks HTTP/2 to any HTTPS server that offers it.)
pub async fn host_from_authority(mut request: axum::extract::Request) -> axum::extract::Request {
    if !request.headers().contains_key(header::HOST)
        && let Some(value) =
            request.uri().authority().and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, value);
    }
    request
}

/// Refuses, before any route sees it, a path that holds a control character once decoded (or a
/// query that holds a NUL): no id, token or name has one, and PostgreSQL refuses text with a NUL
/// in it, which would turn a lookup of such an id into a server error.
async fn refuse_control_characters(request: axum::extract::Request) -> Result<axum::extract::Request, ApiError> {
    let decoded = |text: &str| percent_encoding::percent_decode_str(text).collect::<Vec<u8>>();
    let path_ok = !decoded(request.uri().path()).iter().any(|byte| byte.is_ascii_control());
    let query_ok = !request.uri().query().is_some_and(|query| decoded(query).contains(&0));
    if path_ok && query_ok {
        return Ok(request);
    }
    Err(ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "bad-address",
        "The address holds a control character (such as %00), which no otaship address has; check the link.",
    ))
}

/// The base of absolute URLs for this request: `--public-url`, else the request's Host (and,
/// with `--trust-proxy`, the `X-Forwarded-*` headers).
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let header_text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    let forwarded = |name: &str| if state.config.trust_proxy { header_text(name) } else { None };
    let scheme = forwarded("x-forwarded-proto")
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .filter(|value| *value == "https" || *value == "http")
        .unwrap_or(if state.config.serves_https() { "https" } else { "http" });
    let host = forwarded("x-forwarded-host")
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .or_else(|| header_text("host"))
        .filter(|host| is_plausible_host(host))
        .unwrap_or("localhost");
    let port =
        forwarded("x-forwarded-port").filter(|port| port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty());
    let default_port = |port: &str| (scheme == "https" && port == "443") || (scheme == "http" && port == "80");
    match port {
        Some(port) if !host.contains(':') && !default_port(port) => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    }
}

/// The host name (or address) the request addressed, without a port: from `--public-url`, else
/// the `Host` header (or, with `--trust-proxy`, `X-Forwarded-Host`).
pub fn request_host(state: &AppState, headers: &HeaderMap) -> String {
    let base = base_url(state, headers);
    crate::config::url_host_part(&base).unwrap_or("localhost").to_owned()
}

/// The address of the client that sent a request: the peer of the connection, or, with
/// `--trust-proxy`, the address the proxy in front appended to `X-Forwarded-For` (the last
/// entry: the ones before it came from the client and prove nothing). A request without either
/// (a test calling the router directly) counts as coming from `0.0.0.0`.
pub(crate) fn client_ip(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    if state.config.trust_proxy
        && let Some(forwarded) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .rfind(|entry| !entry.is_empty())
            .and_then(parse_forwarded_address)
    {
        return canonical_ip(forwarded);
    }
    peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| canonical_ip(peer.ip()))
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`203.0.113.9:4711`,
/// `[2001:db8::1]:4711`).
fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|address| address.ip()))
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:203.0.113.9`) is that IPv4 client.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address ([`client_ip`]) as an extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientIp(pub IpAddr);

impl axum::extract::FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|info| info.0);
        Ok(ClientIp(client_ip(state, &parts.headers, peer)))
    }
}

/// A Host value that cannot smuggle a path, query or credentials into generated URLs.
fn is_plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b':' | b'[' | b']'))
}

/// The build an install token names, if any. Tokens are 32 hex digits; anything else is not
/// looked up at all.
pub(crate) async fn build_by_token(state: &AppState, token: &str) -> Result<Option<BuildRow>, ApiError> {
    if token.len() != 32 || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Ok(None);
    }
    match state.db.build_by_token(token).await {
        Ok(build) => Ok(Some(build)),
        Err(DbError::NotFound) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// The public URLs of a build.
pub struct BuildUrls {
    /// The install page.
    pub install: String,
    /// The manifest.
    pub manifest: String,
    /// The `.ipa`.
    pub download: String,
    /// The icon, when there is one.
    pub icon: Option<String>,
}

impl BuildUrls {
    /// URLs under `base` for a build's install token.
    pub fn new(base: &str, token: &str, has_icon: bool) -> Self {
        let root = format!("{base}/i/{token}");
        BuildUrls {
            manifest: format!("{root}/manifest.plist"),
            download: format!("{root}/app.ipa"),
            icon: has_icon.then(|| format!("{root}/icon.png")),
            install: root,
        }
    }
}

/// Everything outside RFC 3986's unreserved set is encoded.
const COMPONENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The `itms-services` link for a manifest URL (not HTML-escaped; templates escape it).
pub fn itms_link(manifest_url: &str) -> String {
    format!(
        "itms-services://?action=download-manifest&url={}",
        percent_encoding::utf8_percent_encode(manifest_url, COMPONENT)
    )
}

/// `GET /readyz`: whether this instance can serve builds now: the database answers and the
/// storage lists. For load balancers' health checks (`/healthz` only says the process runs).
async fn ready(axum::extract::State(state): axum::extract::State<AppState>) -> (axum::http::StatusCode, String) {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(5);
    let database = match tokio::time::timeout(WITHIN, state.db.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 5 s".to_owned()),
    };
    let storage = match tokio::time::timeout(WITHIN, state.storage.check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 5 s".to_owned()),
    };
    let line = |name: &str, outcome: &Result<(), String>| match outcome {
        Ok(()) => format!("{name}: ok\n"),
        Err(error) => format!("{name}: {error}\n"),
    };
    let status = if database.is_ok() && storage.is_ok() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{}{}", line("database", &database), line("storage", &storage)))
}

#[cfg(test)]
mod tests {
    use super::{canonical_ip, itms_link, parse_forwarded_address};

    #[test]
    fn forwarded_addresses_are_read_with_or_without_a_port() {
        let ip = |text: &str| text.parse::<std::net::IpAddr>().ok();
        assert_eq!(parse_forwarded_address("203.0.113.9"), ip("203.0.113.9"));
        assert_eq!(parse_forwarded_address("203.0.113.9:4711"), ip("203.0.113.9"));
        assert_eq!(parse_forwarded_address("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(parse_forwarded_address("[2001:db8::1]:4711"), ip("2001:db8::1"));
        assert_eq!(parse_forwarded_address("unknown"), None);
        assert_eq!(parse_forwarded_address("_hidden"), None);
        let mapped = ip("::ffff:203.0.113.9").expect("address");
        assert_eq!(Some(canonical_ip(mapped)), ip("203.0.113.9"));
        assert_eq!(Some(canonical_ip(ip("2001:db8::1").expect("address"))), ip("2001:db8::1"));
    }

    #[test]
    fn the_manifest_url_is_encoded_as_one_component() {
        assert_eq!(
            itms_link("https://ota.example.com/i/abc/manifest.plist?t=a&b=c#x"),
            "itms-services://?action=download-manifest&url=https%3A%2F%2Fota.example.com%2Fi%2Fabc%2Fmanifest.plist%3Ft%3Da%26b%3Dc%23x"
        );
    }
}
