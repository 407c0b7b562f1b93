//! Security checks over the whole HTTP surface. The route table below gives every route of the
//! server a security decision, and is compared with the router's source, so that a route added
//! without one fails the suite. From it: every API route refuses a missing, wrong, malformed or
//! too weak token; every signed-in page and form refuses a missing or forged session and an
//! uploader where an admin is needed; every form refuses a missing, wrong or foreign CSRF token
//! and a cross-site `Origin`, and changes nothing then; every route with a path parameter
//! refuses path traversal (raw requests, so that no client normalises them) without serving
//! or writing a byte outside the data directory; app names, versions, notes, metadata, labels
//! and device names full of script never run in headless Chromium (desktop and iPhone); the
//! enrollment endpoints are bounded per address; secrets are stored only as hashes; and files
//! that hold keys or hashes are created mode 0600 in private directories.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use otaship_ipa::builder::{IpaBuilder, profile_plist};
use otaship_server::accounts::Role;
use otaship_server::tokens::{self, Scope};
use otaship_server::{ServeArgs, ratelimit};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backends::{self, Backend};
use crate::support::{Server, UiClient, install_href, manifest_url_of, upload_to};

// ---------------------------------------------------------------------------------------------
// The route table
// ---------------------------------------------------------------------------------------------

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone: testers' pages and downloads (capability URLs), health, sign-in, enrollment,
    /// the API's description, the trust onboarding.
    Public,
    /// Any live API token, upload or admin (uploading builds).
    ApiAnyToken,
    /// An admin API token only.
    ApiAdmin,
    /// A signed-in browser of any role (a page).
    Page,
    /// A signed-in administrator (a page).
    AdminPage,
    /// A signed-in browser of any role, with the session's CSRF token (a form).
    Form,
    /// A signed-in administrator, with the session's CSRF token (a form).
    AdminForm,
}

use Access::{AdminForm, AdminPage, ApiAdmin, ApiAnyToken, Form, Page, Public};

/// Which listener serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Listener {
    /// The main one (HTTPS, or HTTP with `--tls off`).
    Main,
    /// The plain-HTTP helper that runs beside the local CA.
    Helper,
}

/// Every route and method of the server, with its security decision.
const ROUTES: &[(Listener, &str, &str, Access)] = &[
    (Listener::Main, "POST", "/api/v1/builds", ApiAnyToken),
    (Listener::Main, "GET", "/api/v1/builds/{id}", ApiAdmin),
    (Listener::Main, "DELETE", "/api/v1/builds/{id}", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/apps", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/apps/{app}/builds", ApiAdmin),
    (Listener::Main, "POST", "/api/v1/uploads", ApiAnyToken),
    (Listener::Main, "GET", "/api/v1/uploads/{id}", ApiAnyToken),
    (Listener::Main, "DELETE", "/api/v1/uploads/{id}", ApiAnyToken),
    (Listener::Main, "PUT", "/api/v1/uploads/{id}/parts/{number}", ApiAnyToken),
    (Listener::Main, "POST", "/api/v1/uploads/{id}/complete", ApiAnyToken),
    (Listener::Main, "GET", "/api/v1/builds/{id}/devices", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/devices", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/devices/export", ApiAdmin),
    (Listener::Main, "PATCH", "/api/v1/devices/{id}", ApiAdmin),
    (Listener::Main, "DELETE", "/api/v1/devices/{id}", ApiAdmin),
    (Listener::Main, "POST", "/api/v1/builds/{id}/links", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/builds/{id}/analytics", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/apps/{app}/channels", ApiAdmin),
    (Listener::Main, "POST", "/api/v1/apps/{app}/channels/{channel}/links", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/links", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/links/{id}", ApiAdmin),
    (Listener::Main, "DELETE", "/api/v1/links/{id}", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/retention", ApiAdmin),
    (Listener::Main, "POST", "/api/v1/retention/run", ApiAdmin),
    (Listener::Main, "PUT", "/api/v1/apps/{app}/retention", ApiAdmin),
    (Listener::Main, "DELETE", "/api/v1/apps/{app}/retention", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/webhooks", ApiAdmin),
    (Listener::Main, "POST", "/api/v1/webhooks", ApiAdmin),
    (Listener::Main, "POST", "/api/v1/webhooks/check-expiry", ApiAdmin),
    (Listener::Main, "PATCH", "/api/v1/webhooks/{id}", ApiAdmin),
    (Listener::Main, "DELETE", "/api/v1/webhooks/{id}", ApiAdmin),
    (Listener::Main, "GET", "/api/v1/webhooks/{id}/deliveries", ApiAdmin),
    (Listener::Main, "POST", "/api/v1/webhooks/{id}/ping", ApiAdmin),
    (Listener::Main, "GET", "/api/openapi.json", Public),
    (Listener::Main, "GET", "/api", Public),
    (Listener::Main, "GET", "/i/{token}", Public),
    (Listener::Main, "GET", "/i/{token}/manifest.plist", Public),
    (Listener::Main, "GET", "/i/{token}/icon.png", Public),
    (Listener::Main, "GET", "/i/{token}/app.ipa", Public),
    (Listener::Main, "HEAD", "/i/{token}/app.ipa", Public),
    (Listener::Main, "GET", "/s/{token}", Public),
    // A share link's password: no session; limited per address and per link (`sharing.rs`).
    (Listener::Main, "POST", "/s/{token}", Public),
    (Listener::Main, "GET", "/s/{token}/{capability}/manifest.plist", Public),
    (Listener::Main, "GET", "/s/{token}/{capability}/icon.png", Public),
    (Listener::Main, "GET", "/s/{token}/{capability}/app.ipa", Public),
    (Listener::Main, "HEAD", "/s/{token}/{capability}/app.ipa", Public),
    (Listener::Main, "GET", "/c/{token}", Public),
    (Listener::Main, "GET", "/", Page),
    (Listener::Main, "GET", "/signin", Public),
    // Signing in: refuses a cross-site Origin (checked below) and is rate-limited.
    (Listener::Main, "POST", "/signin", Public),
    (Listener::Main, "POST", "/signout", Form),
    (Listener::Main, "POST", "/upload", Form),
    (Listener::Main, "GET", "/apps/{bundle_id}", Page),
    (Listener::Main, "GET", "/apps/{bundle_id}/channels", Page),
    // Sharing is part of distributing builds, which uploaders do (README: Share links).
    (Listener::Main, "POST", "/apps/{bundle_id}/channels/{channel}/links", Form),
    (Listener::Main, "GET", "/builds/{id}", Page),
    (Listener::Main, "POST", "/builds/{id}/links", Form),
    (Listener::Main, "POST", "/links/{id}/revoke", Form),
    (Listener::Main, "POST", "/builds/{id}/delete", AdminForm),
    (Listener::Main, "GET", "/builds/{id}/devices", Page),
    (Listener::Main, "GET", "/devices", Page),
    (Listener::Main, "GET", "/devices/export", Page),
    (Listener::Main, "POST", "/devices/{id}/rename", AdminForm),
    (Listener::Main, "POST", "/devices/{id}/delete", AdminForm),
    (Listener::Main, "GET", "/devices/enroll", Public),
    (Listener::Main, "GET", "/devices/enroll.mobileconfig", Public),
    (Listener::Main, "POST", "/devices/enroll/callback", Public),
    (Listener::Main, "GET", "/devices/enrolled/{token}", Public),
    (Listener::Main, "GET", "/admin/health", AdminPage),
    (Listener::Main, "POST", "/admin/health", AdminForm),
    (Listener::Main, "GET", "/admin/diagnose", AdminPage),
    (Listener::Main, "POST", "/admin/diagnose", AdminForm),
    (Listener::Main, "GET", "/admin/accounts", AdminPage),
    (Listener::Main, "POST", "/admin/accounts", AdminForm),
    (Listener::Main, "POST", "/admin/accounts/{id}/role", AdminForm),
    (Listener::Main, "POST", "/admin/accounts/{id}/password", AdminForm),
    (Listener::Main, "POST", "/admin/accounts/{id}/delete", AdminForm),
    (Listener::Main, "GET", "/account", Page),
    (Listener::Main, "POST", "/account/password", Form),
    (Listener::Main, "GET", "/admin/storage", AdminPage),
    (Listener::Main, "POST", "/admin/storage/rules", AdminForm),
    (Listener::Main, "POST", "/admin/storage/rules/delete", AdminForm),
    (Listener::Main, "POST", "/admin/storage/run", AdminForm),
    (Listener::Main, "GET", "/admin/webhooks", AdminPage),
    (Listener::Main, "POST", "/admin/webhooks", AdminForm),
    (Listener::Main, "POST", "/admin/webhooks/check-expiry", AdminForm),
    (Listener::Main, "POST", "/admin/webhooks/{id}/ping", AdminForm),
    (Listener::Main, "POST", "/admin/webhooks/{id}/enabled", AdminForm),
    (Listener::Main, "POST", "/admin/webhooks/{id}/delete", AdminForm),
    (Listener::Main, "GET", "/healthz", Public),
    (Listener::Main, "GET", "/readyz", Public),
    (Listener::Main, "GET", "/trust", Public),
    (Listener::Main, "GET", "/trust/otaship-ca.mobileconfig", Public),
    (Listener::Main, "GET", "/trust/otaship-ca.crt", Public),
    (Listener::Helper, "GET", "/", Public),
    (Listener::Helper, "GET", "/trust", Public),
    (Listener::Helper, "GET", "/trust/otaship-ca.mobileconfig", Public),
    (Listener::Helper, "GET", "/trust/otaship-ca.crt", Public),
    (Listener::Helper, "GET", "/healthz", Public),
];

const ROUTER_SOURCE: &str = include_str!("../../src/http/mod.rs");
const TRUST_SOURCE: &str = include_str!("../../src/http/trust.rs");

/// Where the code in `text` that starts at `open` (an opening bracket) ends: the index of the
/// matching closing bracket, skipping string literals and comments.
fn matching(text: &str, open: usize) -> usize {
    let bytes = text.as_bytes();
    let (opening, closing) = match bytes[open] {
        b'(' => (b'(', b')'),
        b'{' => (b'{', b'}'),
        other => panic!("not a bracket: {}", char::from(other)),
    };
    let (mut depth, mut at, mut in_string) = (0usize, open, false);
    while at < bytes.len() {
        let byte = bytes[at];
        if in_string {
            match byte {
                b'\\' => at += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else if bytes[at..].starts_with(b"//") {
            // A comment, to the end of its line.
            at += bytes[at..].iter().position(|&b| b == b'\n').unwrap_or(bytes.len() - at);
            continue;
        } else if byte == opening {
            depth += 1;
        } else if byte == closing {
            depth -= 1;
            if depth == 0 {
                return at;
            }
        }
        at += 1;
    }
    panic!("unbalanced source")
}

/// The body of `fn name(` in `source`.
fn function_body<'a>(source: &'a str, name: &str) -> &'a str {
    let start = source.find(&format!("fn {name}(")).unwrap_or_else(|| panic!("fn {name} in the router's source"));
    let open = start + source[start..].find('{').expect("a body");
    &source[open..=matching(source, open)]
}

/// The value of `const NAME: &str = "...";` in `source`.
fn string_const(source: &str, name: &str) -> String {
    let start = source.find(&format!("const {name}: &str = \"")).unwrap_or_else(|| panic!("const {name}"));
    let rest = &source[start..];
    let value = &rest[rest.find('"').expect("quote") + 1..];
    value[..value.find('"').expect("closing quote")].to_owned()
}

/// Every `.route(PATH, METHOD(...).METHOD(...))` in `body`, as (METHOD, PATH).
fn routes_in(body: &str, source: &str) -> Vec<(String, String)> {
    const METHODS: [&str; 8] = ["get", "post", "put", "patch", "delete", "head", "options", "any"];
    let mut found = Vec::new();
    for (at, _) in body.match_indices(".route(") {
        let open = at + ".route".len();
        let call = &body[open + 1..matching(body, open)];
        let (path, handlers) = call.split_once(',').expect("a path and handlers");
        let path = path.trim();
        let path = match path.strip_prefix('"') {
            Some(literal) => literal.trim_end_matches('"').to_owned(),
            None => string_const(source, path),
        };
        let bytes = handlers.as_bytes();
        for method in METHODS {
            for (index, _) in handlers.match_indices(&format!("{method}(")) {
                let before = index.checked_sub(1).map(|i| bytes[i]);
                if before.is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_') {
                    continue;
                }
                assert_ne!(method, "any", "{path}: a route for any method needs a decision per method");
                found.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    for unseen in [".nest(", ".nest_service(", ".route_service(", ".fallback_service("] {
        assert!(!body.contains(unseen), "the router uses {unseen}, which this test does not read");
    }
    found
}

/// Every route the source declares, by listener.
fn routes_in_source() -> BTreeSet<(Listener, String, String)> {
    let main = function_body(ROUTER_SOURCE, "router");
    assert!(main.contains(".merge(trust::https_routes())"), "the main router merges the trust routes");
    assert!(!main.contains(".fallback("), "the main router has no fallback");
    let mut routes: BTreeSet<(Listener, String, String)> = BTreeSet::new();
    let mut add = |listener: Listener, found: Vec<(String, String)>| {
        for (method, path) in found {
            assert!(routes.insert((listener, method.clone(), path.clone())), "{method} {path} twice");
        }
    };
    add(Listener::Main, routes_in(main, ROUTER_SOURCE));
    add(Listener::Main, routes_in(function_body(TRUST_SOURCE, "https_routes"), TRUST_SOURCE));
    let helper = function_body(TRUST_SOURCE, "helper_router");
    // Everything else on the helper is redirected to HTTPS (GET, HEAD) or refused.
    assert!(helper.contains(".fallback(to_https)"), "the helper's fallback is the redirect to HTTPS");
    add(Listener::Helper, routes_in(helper, TRUST_SOURCE));
    routes
}

#[test]
fn the_route_table_holds_every_route_of_the_router_and_no_other() {
    let source = routes_in_source();
    let table: BTreeSet<(Listener, String, String)> = ROUTES
        .iter()
        .map(|(listener, method, path, _)| (*listener, (*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(table.len(), ROUTES.len(), "the table lists a route twice");
    let missing: Vec<_> = source.difference(&table).collect();
    let extra: Vec<_> = table.difference(&source).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without a security decision in ROUTES: {missing:?}; routes in ROUTES the router lacks: {extra:?}"
    );
    assert!(source.len() >= 90, "the walk found the routes ({})", source.len());
}

// ---------------------------------------------------------------------------------------------
// A server with one of everything
// ---------------------------------------------------------------------------------------------

/// The ids that fill the routes' path parameters, all real.
struct Ids {
    build: String,
    install_token: String,
    bundle_id: String,
    channel: String,
    channel_page: String,
    upload: String,
    device: String,
    enrolled: String,
    link: String,
    share_token: String,
    capability: String,
    webhook: String,
    account: String,
}

const BUNDLE_ID: &str = "com.example.guarded";
const CHANNEL: &str = "beta";

/// An ad-hoc build that installs (its profile valid until 2100).
fn installable(bundle_id: &str, name: &str, version: &str) -> Vec<u8> {
    let far = std::time::UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let devices: &[&str] = &["00008030-001544522E60802E"];
    IpaBuilder::new(bundle_id)
        .info("CFBundleDisplayName", name)
        .info("CFBundleShortVersionString", version)
        .info("CFBundleVersion", "7")
        .profile(profile_plist(&format!("ABCDE12345.{bundle_id}"), Some(devices), false, false, far))
        .to_bytes()
}

/// An API call with the server's admin token; the status and the JSON (or `null`).
async fn admin_api(server: &Server, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = server.client().request(method, format!("{}{path}", server.base)).bearer_auth(&server.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_else(|| panic!("{field} in {value}"))
}

/// The last path segment of a URL.
fn last_segment(url: &str) -> String {
    url.rsplit('/').next().expect("a segment").to_owned()
}

/// Makes a build, a resumable upload, a device, a share link, a webhook, an account and a
/// retention rule.
async fn populate(server: &Server) -> Ids {
    let build = upload_to(server, installable(BUNDLE_ID, "Guarded", "1.0"), CHANNEL, "").await;
    let (status, upload) = admin_api(
        server,
        Method::POST,
        "/api/v1/uploads",
        Some(json!({"size": 3 << 20, "sha256": "ab".repeat(32), "file_name": "Guarded.ipa"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    let location =
        crate::devices::enroll(server, crate::devices::test_device(), "00008030-001544522E60802E", "22B83", None).await;
    let device = server.state.db.devices().await.expect("devices").remove(0).id;
    let (status, link) =
        admin_api(server, Method::POST, &format!("/api/v1/builds/{}/links", text(&build, "id")), Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let page = server.client().get(text(&link, "url")).send().await.expect("share page").text().await.expect("html");
    let manifest = manifest_url_of(&install_href(&page).expect("the share page's Install button"));
    let capability = manifest.trim_end_matches("/manifest.plist").rsplit('/').next().expect("capability").to_owned();
    let (status, channels) = admin_api(server, Method::GET, &format!("/api/v1/apps/{BUNDLE_ID}/channels"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, webhook) =
        admin_api(server, Method::POST, "/api/v1/webhooks", Some(json!({"url": "http://127.0.0.1:9/hook"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    let (status, rule) =
        admin_api(server, Method::PUT, &format!("/api/v1/apps/{BUNDLE_ID}/retention"), Some(json!({"keep_last": 10})))
            .await;
    assert!(status.is_success(), "{rule}");
    server.create_account("uma", Role::Uploader).await;
    let (account, _) = server.state.db.account_by_username("uma").await.expect("read").expect("uma");
    Ids {
        build: text(&build, "id").to_owned(),
        install_token: last_segment(text(&build, "install_url")),
        bundle_id: BUNDLE_ID.to_owned(),
        channel: CHANNEL.to_owned(),
        channel_page: last_segment(text(&channels["channels"][0], "page_url")),
        upload: text(&upload["upload"], "id").to_owned(),
        device,
        enrolled: last_segment(&location),
        link: text(&link, "id").to_owned(),
        share_token: last_segment(text(&link, "url")),
        capability,
        webhook: text(&webhook, "id").to_owned(),
        account: account.id,
    }
}

/// `path` with its parameters filled from `ids`, except the `replaced`-th (counting from 0),
/// which becomes `value` as it is (already encoded, or deliberately not).
fn concrete(path: &str, ids: &Ids, replaced: Option<(usize, &str)>) -> String {
    let mut out = String::new();
    let mut previous = "";
    let mut index = 0;
    for segment in path.split('/').skip(1) {
        out.push('/');
        if segment.starts_with('{') {
            let value = match (previous, segment) {
                (_, "{capability}") => ids.capability.as_str(),
                (_, "{number}") => "1",
                (_, "{channel}") => ids.channel.as_str(),
                ("builds", _) => ids.build.as_str(),
                ("uploads", _) => ids.upload.as_str(),
                ("devices", _) => ids.device.as_str(),
                ("links", _) => ids.link.as_str(),
                ("webhooks", _) => ids.webhook.as_str(),
                ("apps", _) => ids.bundle_id.as_str(),
                ("accounts", _) => ids.account.as_str(),
                ("i", _) => ids.install_token.as_str(),
                ("s", _) => ids.share_token.as_str(),
                ("c", _) => ids.channel_page.as_str(),
                ("enrolled", _) => ids.enrolled.as_str(),
                other => panic!("no id for {other:?} in {path}: add one to `concrete`"),
            };
            match replaced {
                Some((wanted, replacement)) if wanted == index => out.push_str(replacement),
                _ => out.push_str(value),
            }
            index += 1;
        } else {
            out.push_str(segment);
        }
        previous = segment;
    }
    out
}

fn parameters_of(path: &str) -> usize {
    path.matches('{').count()
}

/// A session of an account made for it, with its cookie and CSRF token.
async fn account_session(server: &Server, username: &str, role: Role) -> (UiClient, String, String) {
    let password = server.create_account(username, role).await;
    let mut client = UiClient::new(server);
    let answer = client.sign_in_with_password(username, &password).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let csrf = client.csrf().await;
    (client, csrf, password)
}

/// A session opened with the admin token.
async fn token_session(server: &Server) -> (UiClient, String) {
    let mut client = UiClient::new(server);
    assert_eq!(client.sign_in(&server.token.clone()).await.status(), StatusCode::SEE_OTHER);
    let csrf = client.csrf().await;
    (client, csrf)
}

fn location(response: &reqwest::Response) -> &str {
    response.headers().get("location").and_then(|value| value.to_str().ok()).unwrap_or("")
}

/// Checks an API error: its status, and a JSON body with a kebab-case code and a sentence.
async fn assert_api_error(response: reqwest::Response, status: StatusCode, code: Option<&str>, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    let body: Value = response.json().await.unwrap_or_else(|_| panic!("{what}: a JSON error"));
    let found = body["error"]["code"].as_str().unwrap_or_else(|| panic!("{what}: a code in {body}"));
    assert!(!found.is_empty() && found.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{what}: {found}");
    if let Some(code) = code {
        assert_eq!(found, code, "{what}");
    }
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: a message in {body}"));
    assert!(message.len() > 20 && message.ends_with('.'), "{what}: a sentence: {message}");
}

// ---------------------------------------------------------------------------------------------
// Authentication and roles on every route
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_api_route_refuses_missing_wrong_malformed_and_too_weak_tokens() {
    let mut server = Server::start().await;
    let ids = populate(&server).await;
    let upload_token = server.create_token("ci", Scope::Upload).await;
    let revoked = server.revoked_token("gone", Scope::Admin).await;
    let (browser, _) = token_session(&server).await;
    let session_cookie = browser.cookie.clone().expect("cookie");
    let wrong = tokens::generate();
    let unauthorized: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("a wrong token", Some(format!("Bearer {wrong}"))),
        ("a revoked token", Some(format!("Bearer {revoked}"))),
        ("a token that is the hash of the real one", Some(format!("Bearer {}", tokens::hash(&server.token)))),
        ("the token without its prefix", Some(format!("Bearer {}", &server.token[4..]))),
        ("an empty bearer", Some("Bearer ".to_owned())),
        ("a bare scheme", Some("Bearer".to_owned())),
        ("basic auth", Some(format!("Basic {}", server.token))),
        ("the token without a scheme", Some(server.token.clone())),
        ("a token with a NUL", Some(format!("Bearer {}%00", server.token))),
    ];
    let api_routes: Vec<_> =
        ROUTES.iter().filter(|(_, _, _, access)| matches!(access, ApiAdmin | ApiAnyToken)).collect();
    assert!(api_routes.len() >= 30);
    let client = server.client();
    for (_, method, path, access) in &api_routes {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let url = format!("{}{}", server.base, concrete(path, &ids, None));
        let what = |case: &str| format!("{method} {path} with {case}");
        for (case, authorization) in &unauthorized {
            let mut request = client.request(method.clone(), &url);
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let response = request.send().await.expect("request");
            assert_api_error(response, StatusCode::UNAUTHORIZED, Some("unauthorized"), &what(case)).await;
        }
        // A browser's session is no API credential (the API has no CSRF token to check).
        let response = client.request(method.clone(), &url).header("cookie", &session_cookie).send().await.expect("x");
        assert_api_error(response, StatusCode::UNAUTHORIZED, Some("unauthorized"), &what("a session cookie")).await;
        if method == Method::GET {
            let head = client.head(&url).send().await.expect("HEAD");
            assert_eq!(head.status(), StatusCode::UNAUTHORIZED, "{}", what("HEAD and no token"));
        }
        if *access == ApiAdmin {
            let response = client.request(method.clone(), &url).bearer_auth(&upload_token).send().await.expect("x");
            assert_api_error(response, StatusCode::FORBIDDEN, Some("insufficient-scope"), &what("an upload token"))
                .await;
        }
    }

    // The right token gets past: an upload token where it may go, an admin token everywhere.
    // Deleting comes last, so that every other route still finds what it names.
    let mut positive: Vec<_> = api_routes.iter().collect();
    positive.sort_by_key(|(_, method, _, _)| *method == "DELETE");
    for (_, method, path, access) in positive {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let url = format!("{}{}", server.base, concrete(path, &ids, None));
        let tokens: &[&str] = if *access == ApiAnyToken { &[&upload_token, &server.token] } else { &[&server.token] };
        for token in tokens {
            let response = client.request(method.clone(), &url).bearer_auth(token).send().await.expect("request");
            let status = response.status();
            assert!(
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) && !status.is_server_error(),
                "{method} {path} with a good token: {status} {}",
                response.text().await.unwrap_or_default()
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn every_page_and_form_needs_a_live_session_and_admin_ones_an_admin() {
    let mut server = Server::start().await;
    let ids = populate(&server).await;
    let (uploader, uploader_csrf, _) = account_session(&server, "upton", Role::Uploader).await;
    let (admin, _, _) = account_session(&server, "ada", Role::Admin).await;
    let client = server.client_without_redirects();
    let forged = [
        ("a random session", format!("otaship_session={}", tokens::random_hex(32))),
        ("the session's hash", format!("otaship_session={}", tokens::hash(admin.cookie.as_deref().expect("c")))),
        ("an admin token as the cookie", format!("otaship_session={}", server.token)),
        ("an empty session", "otaship_session=".to_owned()),
        (
            "a lookalike cookie name",
            admin.cookie.clone().expect("cookie").replace("otaship_session", "otaship_sessionx"),
        ),
    ];
    let signed_in: Vec<_> =
        ROUTES.iter().filter(|(_, _, _, access)| matches!(access, Page | AdminPage | Form | AdminForm)).collect();
    assert!(signed_in.len() >= 30, "{}", signed_in.len());
    let before = fingerprint(&server).await;
    for (_, method, path, access) in &signed_in {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let url = format!("{}{}", server.base, concrete(path, &ids, None));
        let mut cases: Vec<(&str, Option<String>)> = vec![("no cookie", None)];
        cases.extend(forged.iter().map(|(case, cookie)| (*case, Some(cookie.clone()))));
        for (case, cookie) in cases {
            let mut request = client.request(method.clone(), &url).form(&[("csrf", uploader_csrf.as_str())]);
            if let Some(cookie) = &cookie {
                request = request.header("cookie", cookie);
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{method} {path} with {case}");
            assert_eq!(location(&response), "/signin", "{method} {path} with {case}");
            // Scripts asking for JSON are told in JSON.
            let mut request = client.request(method.clone(), &url).header("accept", "application/json");
            if let Some(cookie) = &cookie {
                request = request.header("cookie", cookie);
            }
            let response = request.send().await.expect("request");
            assert_api_error(response, StatusCode::UNAUTHORIZED, Some("signed-out"), &format!("{method} {path}")).await;
        }
        if matches!(access, AdminPage | AdminForm) {
            // An uploader with a valid CSRF token and this server's Origin: refused for its role.
            let mut fields = form_fields(path, &ids, "");
            fields.push(("csrf".to_owned(), uploader_csrf.clone()));
            let response = uploader
                .client
                .request(method.clone(), &url)
                .headers(uploader.headers())
                .header("origin", &server.base)
                .form(&fields)
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path} as an uploader");
            let html = response.text().await.expect("html");
            assert!(html.contains("Only administrators may do this"), "{method} {path}: {html}");
        }
    }
    assert_eq!(fingerprint(&server).await, before, "no refused request changed anything");

    // The positive: pages open for the roles they are for (forms: `csrf_on_every_form`).
    for (_, method, path, access) in &signed_in {
        if *method != "GET" {
            continue;
        }
        let path = concrete(path, &ids, None);
        assert_eq!(admin.get(&path).await.status(), StatusCode::OK, "{path} for an admin");
        if *access == Page {
            assert_eq!(uploader.get(&path).await.status(), StatusCode::OK, "{path} for an uploader");
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// CSRF
// ---------------------------------------------------------------------------------------------

/// What the server holds, as the admin API and the accounts table show it: equal before and
/// after a refused request.
async fn fingerprint(server: &Server) -> String {
    let mut parts = Vec::new();
    let (_, apps) = admin_api(server, Method::GET, "/api/v1/apps", None).await;
    parts.push(apps.to_string());
    for app in apps["apps"].as_array().into_iter().flatten() {
        let bundle_id = text(app, "bundle_id");
        for path in [format!("/api/v1/apps/{bundle_id}/builds"), format!("/api/v1/apps/{bundle_id}/channels")] {
            parts.push(admin_api(server, Method::GET, &path, None).await.1.to_string());
        }
    }
    for path in ["/api/v1/links", "/api/v1/devices", "/api/v1/webhooks", "/api/v1/retention"] {
        parts.push(admin_api(server, Method::GET, path, None).await.1.to_string());
    }
    let (_, webhooks) = admin_api(server, Method::GET, "/api/v1/webhooks", None).await;
    let webhooks = webhooks.as_array().expect("a list of webhooks");
    for webhook in webhooks {
        let path = format!("/api/v1/webhooks/{}/deliveries", text(webhook, "id"));
        let deliveries = admin_api(server, Method::GET, &path, None).await.1;
        parts.push(format!("deliveries: {}", deliveries.as_array().expect("a list of deliveries").len()));
    }
    for account in server.state.db.accounts().await.expect("accounts") {
        let (_, hash) =
            server.state.db.account_by_username(&account.username).await.expect("read").expect("the account");
        parts.push(format!("{} {} {hash}", account.username, account.role));
    }
    parts.join("\n")
}

/// A form's fields that the handler accepts, besides `csrf`.
fn form_fields(path: &str, ids: &Ids, current_password: &str) -> Vec<(String, String)> {
    let pairs: Vec<(&str, String)> = match path {
        "/apps/{bundle_id}/channels/{channel}/links" | "/builds/{id}/links" => vec![("label", "CSRF probe".into())],
        "/devices/{id}/rename" => vec![("name", "Renamed".into())],
        "/admin/diagnose" => vec![("target", "http://127.0.0.1:9/i/00000000000000000000000000000000".into())],
        "/admin/accounts" => vec![("username", "newcomer".into()), ("role", "uploader".into())],
        "/admin/accounts/{id}/role" => vec![("role", "admin".into())],
        "/account/password" => vec![
            ("current", current_password.to_owned()),
            ("new", "a new password, long enough".into()),
            ("repeat", "a new password, long enough".into()),
        ],
        "/admin/storage/rules" => vec![("bundle_id", ids.bundle_id.clone()), ("keep_last", "3".into())],
        "/admin/storage/rules/delete" => vec![("bundle_id", ids.bundle_id.clone())],
        "/admin/storage/run" => vec![("dry_run", "0".into())],
        "/admin/webhooks" => vec![
            ("url", "http://127.0.0.1:9/other".into()),
            ("kind", "json".into()),
            ("event_build_uploaded", "on".into()),
        ],
        "/admin/webhooks/{id}/enabled" => vec![("enabled", "false".into())],
        _ => Vec::new(),
    };
    pairs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// Posts a form (or, for `/upload`, a build with the token in the query) as `client`.
async fn post_form(
    server: &Server,
    client: &UiClient,
    path: &str,
    csrf: Option<&str>,
    fields: &[(String, String)],
    origin: Option<&str>,
) -> reqwest::Response {
    let url = format!("{}{path}", server.base);
    let mut request = if path == "/upload" {
        let ipa = installable("com.example.csrfprobe", "CSRF probe", "9.9");
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(ipa).file_name("Probe.ipa"))
            .text("notes", "sent by the CSRF test");
        let url = match csrf {
            Some(csrf) => format!("{url}?csrf={csrf}"),
            None => url,
        };
        client.client.post(url).headers(client.headers()).multipart(form)
    } else {
        let mut body: Vec<(String, String)> = fields.to_vec();
        if let Some(csrf) = csrf {
            body.push(("csrf".to_owned(), csrf.to_owned()));
        }
        client.client.post(url).headers(client.headers()).form(&body)
    };
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("POST")
}

#[tokio::test]
async fn every_form_refuses_missing_wrong_and_foreign_csrf_tokens_and_other_origins() {
    let mut server = Server::start().await;
    let ids = populate(&server).await;
    // Forms run as an admin account (changing one's own password needs an account); another
    // session (a token's) lends its token; a third session is the one that signs out.
    let (admin, admin_csrf, mut admin_password) = account_session(&server, "root", Role::Admin).await;
    let (other, other_csrf) = token_session(&server).await;
    let (leaving, leaving_csrf, _) = account_session(&server, "leaver", Role::Admin).await;
    assert_ne!(admin_csrf, other_csrf);
    let forms: Vec<(&str, &str)> = ROUTES
        .iter()
        .filter(|(_, _, _, access)| matches!(access, Form | AdminForm))
        .map(|(_, method, path, _)| (*method, *path))
        .collect();
    assert_eq!(forms.iter().filter(|(method, _)| *method != "POST").count(), 0, "forms are POSTs");
    assert!(forms.len() >= 20, "{}", forms.len());
    let self_origin = server.base.clone();
    // Destructive forms last, so that the others still find what they name.
    let destructive = |path: &str| path.ends_with("/delete") || path == "/signout";
    let mut ordered = forms.clone();
    ordered.sort_by_key(|(_, path)| destructive(path));
    for (_, path) in ordered {
        let concrete_path = concrete(path, &ids, None);
        let (client, csrf) = if path == "/signout" { (&leaving, &leaving_csrf) } else { (&admin, &admin_csrf) };
        let fields = form_fields(path, &ids, &admin_password);
        let random = tokens::random_hex(32);
        let attempts: [(&str, Option<&str>, Option<&str>); 6] = [
            ("no CSRF token", None, Some(&self_origin)),
            ("a wrong CSRF token", Some(&random), Some(&self_origin)),
            ("another session's CSRF token", Some(&other_csrf), Some(&self_origin)),
            ("the token with a cross-site Origin", Some(csrf), Some("https://evil.example")),
            ("the token with Origin null", Some(csrf), Some("null")),
            ("the token with a lookalike Origin", Some(csrf), Some(&format!("{self_origin}.evil.example"))),
        ];
        let before = fingerprint(&server).await;
        for (case, token, origin) in attempts {
            let response = post_form(&server, client, &concrete_path, token, &fields, origin).await;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let refused = status == StatusCode::FORBIDDEN
                || (token.is_none() && status == StatusCode::UNPROCESSABLE_ENTITY && body.contains("csrf"));
            assert!(refused, "{path} with {case}: {status} {body}");
            if status == StatusCode::FORBIDDEN {
                assert!(
                    body.contains("This form is out of date or did not come from this server")
                        || body.contains("This request came from another site and was refused"),
                    "{path} with {case}: {body}"
                );
            }
            assert_eq!(fingerprint(&server).await, before, "{path} with {case} changed nothing");
        }
        // The session that would have signed out is still signed in.
        assert_eq!(client.get("/").await.status(), StatusCode::OK, "{path}: the session lives on");

        // The positive control: the session's own token from this server's page works.
        let response = post_form(&server, client, &concrete_path, Some(csrf), &fields, Some(&self_origin)).await;
        let status = response.status();
        assert!(
            status == StatusCode::SEE_OTHER || status.is_success(),
            "{path} with its CSRF token: {status} {}",
            response.text().await.unwrap_or_default()
        );
        let changes_state = !matches!(
            path,
            "/signout" | "/admin/health" | "/admin/diagnose" | "/admin/webhooks/check-expiry" | "/admin/storage/run"
        );
        if changes_state {
            assert_ne!(fingerprint(&server).await, before, "{path} with its CSRF token did what it does");
        }
        if path == "/signout" {
            assert_eq!(leaving.get("/").await.status(), StatusCode::SEE_OTHER, "signed out");
        }
        if path == "/account/password" {
            admin_password = "a new password, long enough".to_owned();
        }
    }
    let _ = admin_password;
    assert_eq!(other.get("/").await.status(), StatusCode::OK);

    // Signing in checks the Origin too: a login form on another site does not sign anyone in.
    let mut stranger = UiClient::new(&server);
    let response =
        stranger.post_form("/signin", &[("token", server.token.as_str())], Some("https://evil.example")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("set-cookie").is_none(), "no session for a cross-site sign-in");
    stranger.cookie = None;
    assert_eq!(stranger.get("/").await.status(), StatusCode::SEE_OTHER);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Path traversal
// ---------------------------------------------------------------------------------------------

/// An answer read off the wire.
struct RawAnswer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Sends one HTTP/1.1 request exactly as written (no client normalises its target) and reads
/// the whole answer.
async fn raw_request(base: &str, method: &str, target: &[u8], headers: &[(&str, &str)], body: &[u8]) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = base.strip_prefix("http://").expect("a plain-HTTP server");
    let mut stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
    let mut request = Vec::new();
    request.extend_from_slice(method.as_bytes());
    request.push(b' ');
    request.extend_from_slice(target);
    request.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len()).as_bytes(),
    );
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    // The server may answer and close before reading a body it refuses.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let split = answer.windows(4).position(|window| window == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("{method} {}: no answer: {:?}", String::from_utf8_lossy(target), String::from_utf8_lossy(&answer))
    });
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    let mut body = answer[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    RawAnswer { status, head, body }
}

fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = chunked.windows(2).position(|window| window == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&chunked[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&chunked[start..(start + size).min(chunked.len())]);
        chunked = chunked.get(start + size + 2..).unwrap_or_default();
    }
    out
}

/// Every file under `dir`, with its length: what a traversal could have written.
fn listing(dir: &Path) -> BTreeMap<String, u64> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            }
            found.insert(entry.path().display().to_string(), meta.len());
        }
    }
    found
}

/// Values to put in a path parameter, aimed at `target` (a file outside the data directory,
/// as a path relative to the data directory) and at files every machine has.
fn traversal_values(target: &str, absolute: &str) -> Vec<String> {
    let encoded = |text: &str, slash: &str| text.replace('/', slash);
    let mut values = vec![
        "..".to_owned(),
        ".".to_owned(),
        "%2e%2e".to_owned(),
        "%2E%2E".to_owned(),
        ".%2e".to_owned(),
        "%252e%252e".to_owned(),
        "..%00".to_owned(),
        "%00".to_owned(),
        "x%00.ipa".to_owned(),
        "%c0%ae%c0%ae".to_owned(),
        "%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afetc%c0%afpasswd".to_owned(),
        "%e0%80%ae%e0%80%ae%e0%80%af".to_owned(),
        "%u002e%u002e%u2215etc%u2215passwd".to_owned(),
        "....%2f%2f....%2f%2fetc%2fpasswd".to_owned(),
        "..;%2f..;%2fetc%2fpasswd".to_owned(),
        "otaship.db".to_owned(),
        "..%2fotaship.db".to_owned(),
        "..%2f..%2fotaship.db".to_owned(),
        "tls%2fca.key".to_owned(),
        "%2fetc%2fpasswd".to_owned(),
        "%5cetc%5cpasswd".to_owned(),
        "..%5c..%5c..%5cetc%5cpasswd".to_owned(),
        "C:%5cWindows%5cwin.ini".to_owned(),
        "file:%2f%2f%2fetc%2fpasswd".to_owned(),
        "a".repeat(300),
        "a".repeat(8000),
        ".".repeat(4000),
        "%2e%2e%2f".repeat(40),
        format!("..%2f{}", encoded(target, "%2f")),
        format!("..%2f..%2f{}", encoded(target, "%2f")),
        format!("%2e%2e%2f{}", encoded(target, "%2f")),
        format!("%2e%2e%2f%2e%2e%2f{}", encoded(target, "%2f")),
        format!("%252e%252e%252f{}", encoded(target, "%252f")),
        format!("..%5c{}", encoded(target, "%5c")),
        format!("..%255c{}", encoded(target, "%255c")),
        format!("%c0%ae%c0%ae%c0%af{}", encoded(target, "%c0%af")),
        format!("..%2f{}%00.ipa", encoded(target, "%2f")),
        encoded(absolute, "%2f"),
        // Raw, for the router and the HTTP parser to deal with.
        format!("../{target}"),
        format!("../../{target}"),
        "../../../../../../etc/passwd".to_owned(),
        format!("..\\{}", target.replace('/', "\\")),
        absolute.to_owned(),
    ];
    values.sort();
    values.dedup();
    values
}

/// What no answer may contain: the canary outside the data directory, the SQLite database's
/// header, the system's password file, a private key.
fn foreign_bytes(canary: &[u8]) -> Vec<(String, Vec<u8>)> {
    vec![
        ("the canary".to_owned(), canary.to_vec()),
        ("the SQLite database".to_owned(), b"SQLite format 3".to_vec()),
        ("/etc/passwd".to_owned(), b"root:x:0:0".to_vec()),
        ("a private key".to_owned(), b"PRIVATE KEY-----".to_vec()),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[tokio::test]
async fn path_traversal_on_every_route_with_a_path_is_refused_and_reaches_nothing() {
    let mut server = Server::start().await;
    let ids = populate(&server).await;
    let (admin, admin_csrf) = token_session(&server).await;
    let cookie = admin.cookie.clone().expect("cookie");
    // A canary beside the data directory, named so that a traversal from it can reach it.
    let outside = tempfile::Builder::new()
        .prefix("otaship-canary-")
        .tempdir_in(server.data_dir.path().parent().expect("the data directory has a parent"))
        .expect("tempdir");
    let canary = format!("CANARY-{}", tokens::random_hex(16));
    std::fs::write(outside.path().join("canary.txt"), &canary).expect("canary");
    let outside_name = outside.path().file_name().expect("name").to_string_lossy().into_owned();
    let target = format!("{outside_name}/canary.txt");
    let absolute = outside.path().join("canary.txt").display().to_string();
    let values = traversal_values(&target, &absolute);
    let forbidden = foreign_bytes(canary.as_bytes());
    let outside_before = listing(outside.path());
    let token_header = format!("Bearer {}", server.token);
    let mut attempts = 0;
    let mut answered_2xx: BTreeSet<String> = BTreeSet::new();
    for (listener, method, path, access) in ROUTES {
        if *listener != Listener::Main || parameters_of(path) == 0 {
            continue;
        }
        let mut headers: Vec<(&str, &str)> = Vec::new();
        match access {
            ApiAdmin | ApiAnyToken => headers.push(("authorization", token_header.as_str())),
            Page | AdminPage | Form | AdminForm => headers.push(("cookie", cookie.as_str())),
            Public => {}
        }
        let form_body = format!("csrf={admin_csrf}&label=x&name=x&role=uploader&enabled=false");
        let body: &[u8] = match *method {
            "PUT" | "PATCH" if path.contains("/parts/") => b"written outside?",
            "PUT" | "PATCH" => b"{\"keep_last\": 1, \"name\": \"x\"}",
            "POST" if matches!(access, Form | AdminForm) => form_body.as_bytes(),
            "POST" => b"{}",
            _ => b"",
        };
        let content_type = if matches!(access, Form | AdminForm) || *path == "/s/{token}" {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        headers.push(("content-type", content_type));
        for parameter in 0..parameters_of(path) {
            for value in &values {
                let target = concrete(path, &ids, Some((parameter, value)));
                let answer = raw_request(&server.base, method, target.as_bytes(), &headers, body).await;
                attempts += 1;
                let what = format!("{method} {target:.200}");
                assert!(answer.status < 500, "{what}: {} {}", answer.head, String::from_utf8_lossy(&answer.body));
                for (name, bytes) in &forbidden {
                    assert!(!contains(&answer.body, bytes), "{what}: the answer holds {name}");
                }
                if (200..300).contains(&answer.status) {
                    answered_2xx.insert(format!("{method} {path}"));
                } else {
                    assert!(
                        (400..500).contains(&answer.status),
                        "{what}: {} {}",
                        answer.head,
                        String::from_utf8_lossy(&answer.body)
                    );
                }
            }
        }
    }
    // A NUL is refused before any lookup (PostgreSQL cannot even compare text holding one).
    let nul = server
        .client()
        .delete(format!("{}/api/v1/builds/%00", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("request");
    assert_api_error(nul, StatusCode::BAD_REQUEST, Some("bad-address"), "an id holding a NUL").await;
    // Lookups by an app's name answer an empty list or store a rule for an app of that name:
    // the name is a key in the database, never a path.
    let lookups_by_name: BTreeSet<String> =
        ["GET /api/v1/apps/{app}/builds", "GET /api/v1/apps/{app}/channels", "PUT /api/v1/apps/{app}/retention"]
            .into_iter()
            .map(str::to_owned)
            .collect();
    let unexpected: Vec<_> = answered_2xx.difference(&lookups_by_name).collect();
    assert!(unexpected.is_empty(), "traversals answered 2xx by {unexpected:?}");

    // Query parameters that choose a file or a format, and names that clients send.
    let enroll_values = values.iter().take(40);
    for value in enroll_values {
        for target in [
            format!("/devices/export?format={value}"),
            format!("/api/v1/devices/export?format={value}"),
            format!("/devices/enroll?return={value}"),
        ] {
            let headers = [("cookie", cookie.as_str()), ("authorization", token_header.as_str())];
            let answer = raw_request(&server.base, "GET", target.as_bytes(), &headers, b"").await;
            attempts += 1;
            assert!(answer.status < 500, "{target}: {}", answer.head);
            for (name, bytes) in &forbidden {
                assert!(!contains(&answer.body, bytes), "{target}: the answer holds {name}");
            }
        }
    }
    // A resumable upload whose file name climbs out: the name is only a label.
    let ipa = installable("com.example.climber", "Climber", "1.0");
    let sha256 = {
        use sha2::Digest;
        tokens::hex(&sha2::Sha256::digest(&ipa))
    };
    let (status, created) = admin_api(
        &server,
        Method::POST,
        "/api/v1/uploads",
        Some(json!({"size": ipa.len(), "sha256": sha256, "file_name": format!("../../{target}")})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let upload_id = text(&created["upload"], "id").to_owned();
    let part = server
        .client()
        .put(format!("{}/api/v1/uploads/{upload_id}/parts/1", server.base))
        .bearer_auth(&server.token)
        .header("content-digest", format!("sha-256=:{}:", base64_of(&sha2_of(&ipa))))
        .body(ipa.clone())
        .send()
        .await
        .expect("part");
    assert!(part.status().is_success(), "{}", part.text().await.unwrap_or_default());
    let (status, completed) =
        admin_api(&server, Method::POST, &format!("/api/v1/uploads/{upload_id}/complete"), None).await;
    assert!(status.is_success(), "{completed}");
    // A channel or metadata key that climbs out is refused before anything is stored.
    for query in [format!("channel=..%2f..%2f{outside_name}"), format!("meta=..%2f{outside_name}%3dx")] {
        let response = server
            .client()
            .post(format!("{}/api/v1/builds?{query}", server.base))
            .bearer_auth(&server.token)
            .header("content-type", "application/octet-stream")
            .body(installable("com.example.climber2", "Climber", "2.0"))
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    assert_eq!(listing(outside.path()), outside_before, "nothing was written outside the data directory");
    // Every stored file is a build's, under its id (on disk or in the bucket).
    let keys = server.blob_keys().await;
    assert!(!keys.is_empty() && keys.iter().all(|key| key.starts_with("builds/") && !key.contains("..")), "{keys:?}");
    assert!(attempts > 1500, "{attempts} attempts");
    eprintln!("path traversal: {attempts} attempts, none reached outside the data directory");
    server.stop().await;
}

/// A NUL in text that is stored (release notes, metadata, link labels) is refused with a sentence
/// on every engine: PostgreSQL cannot store one and answered 500 before, SQLite would have kept it.
#[tokio::test]
async fn text_holding_a_nul_is_refused_before_it_is_stored() {
    let mut server = Server::start().await;
    let ipa = installable("com.example.nul", "Nul", "1.0");
    // In the query the address itself is refused; in a multipart body the field is.
    let in_query = server
        .client()
        .post(format!("{}/api/v1/builds?notes=a%00b", server.base))
        .bearer_auth(&server.token)
        .header("content-type", "application/octet-stream")
        .body(ipa.clone())
        .send()
        .await
        .expect("upload");
    assert_api_error(in_query, StatusCode::BAD_REQUEST, Some("bad-address"), "notes in the query").await;
    for (field, value, code) in
        [("notes", "first line\n\0second", "bad-notes"), ("meta", "git_branch=main\0x", "bad-metadata")]
    {
        let form = reqwest::multipart::Form::new()
            .text(field, value)
            .part("file", reqwest::multipart::Part::bytes(ipa.clone()).file_name("App.ipa"));
        let response = server
            .client()
            .post(format!("{}/api/v1/builds", server.base))
            .bearer_auth(&server.token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_api_error(response, StatusCode::BAD_REQUEST, Some(code), field).await;
    }
    assert_eq!(server.blob_keys().await, Vec::<String>::new(), "nothing refused was stored");

    // The same file with clean text is a build; a link label with a NUL or a line break is not.
    let build = upload_to(&server, ipa, "default", "").await;
    let links = format!("/api/v1/builds/{}/links", text(&build, "id"));
    for label in ["qa\0team", "qa\nteam"] {
        let response = server
            .client()
            .post(format!("{}{links}", server.base))
            .bearer_auth(&server.token)
            .json(&serde_json::json!({ "label": label }))
            .send()
            .await
            .expect("link");
        assert_api_error(response, StatusCode::BAD_REQUEST, Some("bad-link"), label).await;
    }
    let (status, link) =
        admin_api(&server, Method::POST, &links, Some(serde_json::json!({ "label": "QA team" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let (_, listed) = admin_api(&server, Method::GET, "/api/v1/links", None).await;
    assert_eq!(listed["links"].as_array().map(Vec::len), Some(1), "only the clean link was made: {listed}");
    server.stop().await;
}

fn sha2_of(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Brute force and unbounded work
// ---------------------------------------------------------------------------------------------

async fn assert_too_many(response: reqwest::Response, code: &str, what: &str) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{what}");
    let wait: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{what}: Retry-After in seconds"));
    assert!(wait >= 1, "{what}: {wait}");
    let body = response.text().await.expect("body");
    assert!(body.contains(code) || body.contains("Too many"), "{what}: {body}");
}

#[tokio::test]
async fn enrollment_profiles_and_bad_device_replies_are_limited_per_address() {
    let mut server = Server::start_with(ServeArgs { trust_proxy: Some(true), ..Default::default() }).await;
    let client = server.client_without_redirects();
    let profile = |address: &'static str| {
        client.get(format!("{}/devices/enroll.mobileconfig", server.base)).header("x-forwarded-for", address).send()
    };
    let per_hour = 60;
    for _ in 0..per_hour {
        assert_eq!(profile("203.0.113.5").await.expect("profile").status(), StatusCode::OK);
    }
    let refused = profile("203.0.113.5").await.expect("profile");
    assert_eq!(refused.headers().get("content-type").map(|v| v.to_str().unwrap_or("")), Some("application/json"));
    assert_too_many(refused, "too-many-requests", "the 61st profile in an hour").await;
    assert_eq!(profile("203.0.113.6").await.expect("profile").status(), StatusCode::OK, "another address");

    // Replies that do not check out: 20 per address, then even a good one waits.
    let post = |address: &'static str, body: Vec<u8>| {
        client
            .post(format!("{}/devices/enroll/callback", server.base))
            .header("x-forwarded-for", address)
            .header("content-type", "application/pkcs7-signature")
            .body(body)
            .send()
    };
    for attempt in 0..20u8 {
        let answer = post("198.51.100.8", vec![0x30, attempt, 1, 2, 3]).await.expect("reply");
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    }
    assert_too_many(post("198.51.100.8", vec![0x30]).await.expect("reply"), "too-many-attempts", "21st bad reply")
        .await;
    // A device behind another address enrolls as usual.
    let location =
        crate::devices::enroll(&server, crate::devices::test_device(), "00008030-001544522E60802E", "22B83", None)
            .await;
    assert!(location.contains("/devices/enrolled/"), "{location}");
    server.stop().await;
}

#[tokio::test]
async fn sign_in_tokens_and_current_passwords_are_limited_too() {
    let mut server = Server::start_with(ServeArgs { trust_proxy: Some(true), ..Default::default() }).await;
    let client = UiClient::new(&server);
    // Wrong tokens from one address: ten, then 429 with Retry-After, even for the right one.
    for _ in 0..10 {
        let response = client
            .client
            .post(format!("{}/signin", server.base))
            .header("x-forwarded-for", "203.0.113.77")
            .form(&[("token", tokens::generate())])
            .send()
            .await
            .expect("sign in");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let right = client
        .client
        .post(format!("{}/signin", server.base))
        .header("x-forwarded-for", "203.0.113.77")
        .form(&[("token", server.token.as_str())])
        .send()
        .await
        .expect("sign in");
    assert!(right.headers().get("set-cookie").is_none());
    assert_too_many(right, "too-many-attempts", "the right token after ten wrong ones").await;

    // Guessing one's current password on the password form counts against the username.
    let (account, csrf, password) = account_session(&server, "gus", Role::Uploader).await;
    let origin = Some(server.base.as_str());
    for attempt in 0..20 {
        let guess = format!("guess number {attempt}");
        let form =
            [("csrf", csrf.as_str()), ("current", &guess), ("new", "long enough new"), ("repeat", "long enough new")];
        assert_eq!(account.post_form("/account/password", &form, origin).await.status(), StatusCode::FORBIDDEN);
    }
    let form =
        [("csrf", csrf.as_str()), ("current", &password), ("new", "long enough new"), ("repeat", "long enough new")];
    assert_too_many(account.post_form("/account/password", &form, origin).await, "too-many-attempts", "21st").await;
    let limit = ratelimit::Limit { failures: 20, window: Duration::from_secs(15 * 60) };
    assert!(ratelimit::check(&server.state.db, "signin-user:gus", limit).await.is_err(), "counted for gus");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Secrets at rest
// ---------------------------------------------------------------------------------------------

/// Every value stored in the database, as text: the SQLite file and its WAL as bytes, or every
/// row of every table of PostgreSQL cast to text.
async fn stored_bytes(server: &Server) -> Vec<u8> {
    match backends::selected() {
        Backend::SqliteLocal => {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal"] {
                let path = server.data_dir.path().join(format!("otaship.db{suffix}"));
                bytes.extend(std::fs::read(&path).unwrap_or_default());
            }
            assert!(bytes.len() > 4096, "the database was read");
            bytes
        }
        Backend::PostgresS3 => {
            use sqlx::{Connection, Row};
            let url = server.args.database.clone().expect("a PostgreSQL database");
            let mut connection = sqlx::PgConnection::connect(&url).await.expect("PostgreSQL");
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(&mut connection)
            .await
            .expect("tables");
            assert!(tables.len() >= 10, "{tables:?}");
            let mut bytes = Vec::new();
            for table in tables {
                let query = format!("SELECT CAST(t AS text) FROM \"{table}\" t");
                for row in sqlx::query(sqlx::AssertSqlSafe(query)).fetch_all(&mut connection).await.expect("rows") {
                    let text: String = row.get(0);
                    bytes.extend(text.into_bytes());
                    bytes.push(b'\n');
                }
            }
            connection.close().await.ok();
            bytes
        }
    }
}

#[tokio::test]
async fn tokens_passwords_and_sessions_are_stored_only_as_hashes() {
    let mut server = Server::start().await;
    let ids = populate(&server).await;
    let admin_token = server.create_token("deploy", Scope::Admin).await;
    let upload_token = server.create_token("ci", Scope::Upload).await;
    let (account, _, account_password) = account_session(&server, "stella", Role::Admin).await;
    let (_, token_session_csrf) = token_session(&server).await;
    let mut token_browser = UiClient::new(&server);
    token_browser.sign_in(&admin_token).await;
    // A password typed into the username box is counted as a failure under its hash.
    let mut mistaken = UiClient::new(&server);
    let typed_as_username = format!("Pw{}", tokens::random_hex(8));
    mistaken.sign_in_with_password(&typed_as_username, "whatever else").await;
    // A share link with a password, passed once: its pass cookie.
    let link_password = format!("link-{}", tokens::random_hex(8));
    let (status, link) = admin_api(
        &server,
        Method::POST,
        &format!("/api/v1/builds/{}/links", ids.build),
        Some(json!({"password": link_password})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let passed = server
        .client_without_redirects()
        .post(text(&link, "url"))
        .form(&[("password", link_password.as_str())])
        .send()
        .await
        .expect("password");
    assert_eq!(passed.status(), StatusCode::SEE_OTHER);
    let pass_cookie = passed.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("pair");
    let pass_value = pass_cookie.split_once('=').expect("name=value").1.to_owned();
    let (status, webhook) =
        admin_api(&server, Method::POST, "/api/v1/webhooks", Some(json!({"url": "http://127.0.0.1:9/signed"}))).await;
    assert_eq!(status, StatusCode::CREATED);

    let session_value =
        |client: &UiClient| client.cookie.clone().expect("cookie").split_once('=').expect("=").1.to_owned();
    let secrets = [
        ("the seeded admin token", server.token.clone()),
        ("an admin token", admin_token.clone()),
        ("an upload token", upload_token.clone()),
        ("an account's password", account_password.clone()),
        ("a password typed as a username", typed_as_username.clone()),
        ("a link's password", link_password.clone()),
        ("an account session's cookie", session_value(&account)),
        ("a token session's cookie", session_value(&token_browser)),
        ("a link's pass cookie", pass_value),
        ("an enrollment result token", ids.enrolled.clone()),
    ];
    let stored = stored_bytes(&server).await;
    for (what, secret) in &secrets {
        assert!(secret.len() >= 10, "{what}");
        assert!(!contains(&stored, secret.as_bytes()), "{what} is stored as it is");
    }
    // The hashes are there: the check above looked at the right bytes.
    for (what, secret) in &secrets[..3] {
        assert!(contains(&stored, tokens::hash(secret).as_bytes()), "{what} is stored as its hash");
    }
    assert!(contains(&stored, b"$argon2id$"), "passwords are Argon2id PHC strings");
    // What must stay usable is stored as it is, and says so: a webhook's signing secret (the
    // server signs each delivery with it), the CSRF token (useless without the session's
    // cookie), share-link tokens (capability URLs the server must find).
    let webhook_secret = text(&webhook, "secret");
    assert!(contains(&stored, webhook_secret.as_bytes()), "webhook secrets are stored to sign deliveries");
    assert!(contains(&stored, token_session_csrf.as_bytes()), "CSRF tokens are stored as they are");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// File modes
// ---------------------------------------------------------------------------------------------

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|error| panic!("{}: {error}", path.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn files_that_hold_keys_or_hashes_are_private() {
    // The default TLS mode: the local CA. Its keys, the database and its journal, the
    // directories they are in.
    let mut server = Server::start_with(ServeArgs { tls: Some("local-ca".into()), ..Default::default() }).await;
    token_session(&server).await;
    let data = server.data_dir.path().to_owned();
    let mut private_files = vec![data.join("tls/ca.key"), data.join("tls/server.key")];
    if backends::selected() == Backend::SqliteLocal {
        private_files.extend(["otaship.db", "otaship.db-wal", "otaship.db-shm"].map(|name| data.join(name)));
    }
    for file in &private_files {
        assert_eq!(mode_of(file), 0o600, "{}", file.display());
    }
    for public in ["tls/ca.crt", "tls/server.crt"] {
        let path = data.join(public);
        assert!(path.exists(), "{}", path.display());
    }
    let mut private_dirs = vec![data.join("tls"), data.join("tmp")];
    if backends::selected() == Backend::SqliteLocal {
        private_dirs.extend([data.join("blobs"), data.join("uploads")]);
    }
    for dir in private_dirs {
        assert_eq!(mode_of(&dir), 0o700, "{}", dir.display());
    }
    // Any other file with a key in it is private too.
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).is_ok_and(|bytes| contains(&bytes, b"PRIVATE KEY")) {
                assert_eq!(mode_of(&path), 0o600, "{} holds a key", path.display());
            }
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Script in names, notes, labels and device names
// ---------------------------------------------------------------------------------------------

/// Markup and script that must show as text wherever the server puts it: each would set
/// `window.__xss` (or open an alert) if it ran.
const XSS_PAYLOADS: &[&str] = &[
    "<script>window.__xss=1</script>",
    "<img src=x onerror=window.__xss=2>",
    "<svg onload=window.__xss=3>",
    "<svg><script>window.__xss=4</script></svg>",
    "\"><script>window.__xss=5</script>",
    "'><img src=x onerror=window.__xss=6>",
    "\" autofocus onfocus=\"window.__xss=7\" x=\"",
    "' autofocus onfocus='window.__xss=8' x='",
    "javascript:window.__xss=9",
    "</title><script>window.__xss=10</script>",
    "</textarea><script>window.__xss=11</script>",
    "</script><script>window.__xss=12</script>",
    "</style><img src=x onerror=window.__xss=13>",
    "<iframe srcdoc=\"<script>parent.__xss=14</script>\"></iframe>",
    "<template><img src=x onerror=window.__xss=15></template><img src=x onerror=window.__xss=15>",
    "<details open ontoggle=window.__xss=16><summary>x</summary></details>",
    "<input autofocus onfocus=alert(17)>",
    "<a href=\"javascript:alert(18)\" id=\"xss-link\">tap</a>",
    "[tap](javascript:window.__xss=19)",
    "<body onload=window.__xss=20>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=21>",
    "<noscript><p title=\"</noscript><img src=x onerror=window.__xss=22>\">",
    "]]><script>window.__xss=23</script><![CDATA[",
    "\u{202e}<script>window.__xss=24</script>\u{202c}",
    "\u{ff1c}script\u{ff1e}window.__xss=25\u{ff1c}/script\u{ff1e}",
    "${window.__xss=26}`;window.__xss=26;`",
    "\\u003cscript\\u003ewindow.__xss=27\\u003c/script\\u003e",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:window.__xss=28\">",
    "<base href=\"javascript:window.__xss=29//\">",
    "{{constructor.constructor('window.__xss=30')()}}",
];

/// What one payload was planted in.
struct Planted {
    payload: &'static str,
    bundle_id: String,
    build_id: String,
    install_url: String,
    manifest_url: String,
    share_url: String,
    channel_url: String,
}

/// Enrolls a device that calls itself `name`; the result page's URL.
async fn enroll_named(server: &Server, udid: &str, name: &str) -> String {
    let (profile, _) = crate::devices::download_profile(server, None).await;
    let content = profile["PayloadContent"].as_dictionary().expect("PayloadContent");
    let challenge = content["Challenge"].as_string().expect("Challenge").to_owned();
    let reply = crate::devices::test_device().reply(&[
        ("UDID", udid),
        ("PRODUCT", "iPhone15,2"),
        ("VERSION", "22B83"),
        ("DEVICE_NAME", name),
        ("CHALLENGE", &challenge),
    ]);
    let response = crate::devices::post_reply(server, reply).await;
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY, "{name}");
    location(&response).to_owned()
}

/// Uploads, shares and enrolls with every payload in every field that takes text.
async fn plant_payloads(server: &Server) -> (Vec<Planted>, Vec<String>) {
    let far = std::time::UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let mut planted = Vec::new();
    let mut enrolled_pages = Vec::new();
    for (index, payload) in XSS_PAYLOADS.iter().copied().enumerate() {
        let bundle_id = format!("com.example.xss{index:02}");
        let udid = format!("00008030-{:016X}", 0x1544_5220_0000_0000u64 + index as u64);
        let ipa = IpaBuilder::new(&bundle_id)
            .info("CFBundleDisplayName", payload)
            .info("CFBundleName", payload)
            .info("CFBundleShortVersionString", payload)
            .info("CFBundleVersion", payload)
            .profile(profile_plist(&format!("ABCDE12345.{bundle_id}"), Some(&[udid.as_str()]), false, false, far))
            .to_bytes();
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(ipa).file_name("App.ipa"))
            .text("notes", format!("Notes: {payload}\n\n{payload}"))
            .text("channel", "beta")
            .text("meta", format!("ci_note={payload}"))
            .text("meta", format!("ci_run_url={payload}"));
        let response = server
            .client()
            .post(format!("{}/api/v1/builds", server.base))
            .bearer_auth(&server.token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), StatusCode::CREATED, "{payload}");
        let build: Value = response.json().await.expect("JSON");
        assert_eq!(build["name"], json!(payload), "names are kept as they are");
        let (status, link) = admin_api(
            server,
            Method::POST,
            &format!("/api/v1/builds/{}/links", text(&build, "id")),
            Some(json!({"label": payload})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{link}");
        let (_, channels) = admin_api(server, Method::GET, &format!("/api/v1/apps/{bundle_id}/channels"), None).await;
        enrolled_pages.push(enroll_named(server, &udid, payload).await);
        planted.push(Planted {
            payload,
            bundle_id,
            build_id: text(&build, "id").to_owned(),
            install_url: text(&build, "install_url").to_owned(),
            manifest_url: text(&build, "manifest_url").to_owned(),
            share_url: text(&link, "url").to_owned(),
            channel_url: text(&channels["channels"][0], "page_url").to_owned(),
        });
    }
    // Half the devices get names from an uploader too (shown instead of the device's own).
    let devices = server.state.db.devices().await.expect("devices");
    for (device, payload) in devices.iter().zip(XSS_PAYLOADS.iter().rev()).step_by(2) {
        let (status, body) =
            admin_api(server, Method::PATCH, &format!("/api/v1/devices/{}", device.id), Some(json!({"name": payload})))
                .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = admin_api(
        server,
        Method::POST,
        "/api/v1/webhooks",
        Some(json!({"url": format!("http://127.0.0.1:9/hook?q={}", XSS_PAYLOADS[4])})),
    )
    .await;
    assert!(matches!(status, StatusCode::CREATED | StatusCode::BAD_REQUEST), "{body}");
    (planted, enrolled_pages)
}

/// Makes every page's dialogs (`alert`, `confirm`, `prompt`) set the marker instead of opening.
async fn watch_dialogs(browser: &crate::browser::Browser) {
    let source = "window.alert = window.confirm = window.prompt = function () { window.__xss = 'dialog'; };";
    browser.cdp("Page.addScriptToEvaluateOnNewDocument", json!({ "source": source })).await;
}

/// Loads `url` and proves that nothing planted ran: no alert, no marker, no script error.
async fn assert_nothing_ran(browser: &crate::browser::Browser, url: &str) {
    browser.client.goto(url).await.unwrap_or_else(|error| panic!("{url}: {error}"));
    // Handlers that fire late (autofocus, toggle, a failed image) get a moment to fire.
    let settled = browser.client.execute_async("setTimeout(arguments[0], 30);", vec![]).await;
    if let Ok(alert) = browser.client.get_alert_text().await {
        panic!("{url}: an alert opened: {alert}");
    }
    settled.unwrap_or_else(|error| panic!("{url}: {error}"));
    let seen = browser
        .script(
            "return [typeof window.__xss, typeof (window.parent && window.parent.__xss), window.__errors || [], \
             location.protocol];",
            vec![],
        )
        .await;
    assert_eq!(seen, json!(["undefined", "undefined", [], "http:"]), "{url}: a payload ran or broke a script");
}

#[tokio::test]
async fn script_in_names_versions_notes_labels_and_device_names_never_runs_in_chromium() {
    use crate::browser::{Browser, COMPUTER, IPHONE, PATIENCE};
    let mut server = Server::start().await;
    let (planted, enrolled_pages) = plant_payloads(&server).await;

    // The manifest stays well-formed XML, with each name as it is.
    for plant in &planted {
        let body = server.client().get(&plant.manifest_url).send().await.expect("manifest").bytes().await.expect("x");
        let manifest = plist::Value::from_reader_xml(body.as_ref()).expect("a well-formed XML plist");
        let item = &manifest.as_dictionary().expect("dict")["items"].as_array().expect("items")[0];
        let metadata = item.as_dictionary().expect("item")["metadata"].as_dictionary().expect("metadata");
        assert_eq!(metadata["title"].as_string(), Some(plant.payload));
    }

    // An admin on a computer: every page that shows what was planted.
    let browser = Browser::open(COMPUTER).await;
    watch_dialogs(&browser).await;
    // The control: put into a page as markup, these payloads do run, and the check sees it.
    browser.client.goto(&format!("{}/healthz", server.base)).await.expect("a page of the server");
    for payload in [XSS_PAYLOADS[1], XSS_PAYLOADS[14], XSS_PAYLOADS[15], "<a id=control onclick=alert(1)>x</a>"] {
        let ran = browser
            .client
            .execute_async(
                "var done = arguments[arguments.length - 1]; delete window.__xss;\
                 document.body.insertAdjacentHTML('beforeend', arguments[0]);\
                 var control = document.getElementById('control'); if (control) { control.click(); }\
                 setTimeout(function () { done(typeof window.__xss); }, 100);",
                vec![json!(payload)],
            )
            .await
            .expect("script");
        assert!(
            matches!(ran.as_str(), Some("number" | "string")),
            "{payload} runs as markup ({ran}): the check sees it"
        );
    }
    browser.client.goto(&format!("{}/signin", server.base)).await.expect("sign-in page");
    let field =
        browser.client.wait().at_most(PATIENCE).for_element(fantoccini::Locator::Css("#token")).await.expect("form");
    field.send_keys(&server.token).await.expect("type");
    let button = browser.client.find(fantoccini::Locator::Css("#token-form button")).await.expect("button");
    button.click().await.expect("sign in");
    browser.client.wait().at_most(PATIENCE).for_element(fantoccini::Locator::Css("#drop-zone")).await.expect("home");
    let base = &server.base;
    let mut pages: Vec<String> = [
        "/",
        "/devices",
        "/devices/enroll",
        "/admin/storage",
        "/admin/webhooks",
        "/admin/accounts",
        "/admin/health",
        "/admin/diagnose",
        "/account",
        "/api",
    ]
    .iter()
    .map(|path| format!("{base}{path}"))
    .collect();
    for plant in &planted {
        pages.extend([
            format!("{base}/apps/{}", plant.bundle_id),
            format!("{base}/apps/{}/channels", plant.bundle_id),
            format!("{base}/builds/{}", plant.build_id),
            format!("{base}/builds/{}/devices", plant.build_id),
            plant.install_url.clone(),
            plant.share_url.clone(),
            plant.channel_url.clone(),
        ]);
    }
    pages.extend(enrolled_pages.iter().cloned());
    for url in &pages {
        assert_nothing_ran(&browser, url).await;
    }
    // Shown as text, exactly: the app name on its install page and its build page.
    for plant in &planted {
        browser.client.goto(&plant.install_url).await.expect("page");
        let shown = browser.script("return document.getElementById('app-name').textContent;", vec![]).await;
        assert_eq!(shown, json!(plant.payload), "the name shows literally");
    }
    browser.client.goto(&format!("{base}/devices")).await.expect("devices");
    let listed = browser.script("return document.body.textContent;", vec![]).await;
    let listed = listed.as_str().expect("text");
    assert!(listed.contains(XSS_PAYLOADS[0]) && listed.contains(XSS_PAYLOADS[1]), "device names show as text");
    browser.screenshot("security-xss-devices").await;
    browser.close().await;

    // A tester's iPhone: the install, share, channel and registration pages.
    let iphone = Browser::open(IPHONE).await;
    watch_dialogs(&iphone).await;
    let mut tester_pages: Vec<String> = Vec::new();
    for plant in &planted {
        tester_pages.extend([plant.install_url.clone(), plant.share_url.clone(), plant.channel_url.clone()]);
    }
    tester_pages.extend(enrolled_pages.iter().cloned());
    for url in &tester_pages {
        assert_nothing_ran(&iphone, url).await;
    }
    iphone.client.goto(&planted[0].install_url).await.expect("page");
    iphone.screenshot("security-xss-install-iphone").await;
    iphone.close().await;
    eprintln!("XSS: {} payloads, {} page loads, none ran", XSS_PAYLOADS.len(), pages.len() + tester_pages.len());
    server.stop().await;
}
