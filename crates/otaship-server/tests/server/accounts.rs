//! Token scopes, named accounts and roles, and limits on failed sign-ins: what an upload-only
//! token may do in the API, signing in with a password, what an uploader may do in the web UI,
//! the account pages, and the rate limiter (per address, per username, shared through the
//! database).

use std::time::Duration;

use otaship_ipa::builder::IpaBuilder;
use otaship_server::ServeArgs;
use otaship_server::accounts::Role;
use otaship_server::ratelimit::{self, Limit};
use otaship_server::tokens::Scope;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, UiClient};
use crate::uploads::{MIB, content_digest, part, random_ipa, sha256_hex, status_and_json, str_of};

fn location(response: &reqwest::Response) -> &str {
    response.headers().get("location").and_then(|value| value.to_str().ok()).unwrap_or("")
}

/// An API call with an optional bearer token and JSON body: status and JSON (null when empty;
/// a string when the answer is not JSON, as an export).
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server.client().request(method, format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let json = response.headers().get("content-type").is_some_and(|value| value == "application/json");
    if json {
        return status_and_json(response).await;
    }
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { Value::String(text) })
}

/// A raw `.ipa` upload in one request.
async fn upload_with(server: &Server, token: &str, ipa: Vec<u8>) -> (StatusCode, Value) {
    let response = server
        .client()
        .post(format!("{}/api/v1/builds", server.base))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(ipa)
        .send()
        .await
        .expect("upload");
    status_and_json(response).await
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

#[tokio::test]
async fn upload_tokens_upload_and_nothing_else() {
    let mut server = Server::start().await;
    let upload = server.create_token("ci", Scope::Upload).await;
    let admin = server.token.clone();

    // One request.
    let (status, build) = upload_with(&server, &upload, IpaBuilder::new("com.example.scoped").to_bytes()).await;
    assert_eq!(status, StatusCode::CREATED, "{build}");
    assert!(str_of(&build, "install_url").starts_with(&server.base));
    let build_id = str_of(&build, "id").to_owned();

    // Resumable: create, read, parts, complete; and cancel another.
    let bytes = random_ipa("com.example.resumable", 7, 3 * MIB / 2);
    let body = json!({"size": bytes.len(), "sha256": sha256_hex(&bytes), "part_size": MIB});
    let (status, created) = call(&server, Method::POST, "/api/v1/uploads", Some(&upload), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = str_of(&created["upload"], "id").to_owned();
    let (status, read) = call(&server, Method::GET, &format!("/api/v1/uploads/{id}"), Some(&upload), None).await;
    assert_eq!((status, read["part_count"].as_u64()), (StatusCode::OK, Some(2)), "{read}");
    for number in 1..=2 {
        let bytes = part(&bytes, MIB, number);
        let response = server
            .client()
            .put(format!("{}/api/v1/uploads/{id}/parts/{number}", server.base))
            .bearer_auth(&upload)
            .header("content-digest", content_digest(&bytes))
            .body(bytes)
            .send()
            .await
            .expect("part");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let (status, completed) =
        call(&server, Method::POST, &format!("/api/v1/uploads/{id}/complete"), Some(&upload), None).await;
    assert_eq!(status, StatusCode::CREATED, "{completed}");
    assert_eq!(completed["bundle_id"], "com.example.resumable");
    let other = json!({"size": 10, "sha256": "ab".repeat(32)});
    let (_, cancelled) = call(&server, Method::POST, "/api/v1/uploads", Some(&upload), Some(other)).await;
    let cancelled = str_of(&cancelled["upload"], "id").to_owned();
    let (status, _) = call(&server, Method::DELETE, &format!("/api/v1/uploads/{cancelled}"), Some(&upload), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Everything else needs an admin token.
    let admin_only = [
        (Method::GET, "/api/v1/apps".to_owned(), None),
        (Method::GET, "/api/v1/apps/com.example.scoped/builds".to_owned(), None),
        (Method::GET, format!("/api/v1/builds/{build_id}"), None),
        (Method::GET, format!("/api/v1/builds/{build_id}/devices"), None),
        (Method::DELETE, format!("/api/v1/builds/{build_id}"), None),
        (Method::GET, "/api/v1/devices".to_owned(), None),
        (Method::GET, "/api/v1/devices/export?format=csv".to_owned(), None),
        (Method::PATCH, "/api/v1/devices/nosuchdevice".to_owned(), Some(json!({"name": "x"}))),
        (Method::DELETE, "/api/v1/devices/nosuchdevice".to_owned(), None),
    ];
    for (method, path, body) in &admin_only {
        let (status, answer) = call(&server, method.clone(), path, Some(&upload), body.clone()).await;
        assert_error(status, &answer, StatusCode::FORBIDDEN, "insufficient-scope");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(
            message.starts_with(
                "This token may only upload builds; use an admin token (otaship token create --scope admin) for "
            ) && message.contains(path.split('?').next().expect("path")),
            "{method} {path}: {message}"
        );
    }
    let expected = [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::NO_CONTENT,
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::NOT_FOUND,
        StatusCode::NOT_FOUND,
    ];
    for ((method, path, body), expected) in admin_only.iter().zip(expected) {
        let (status, answer) = call(&server, method.clone(), path, Some(&admin), body.clone()).await;
        assert_eq!(status, expected, "{method} {path} with an admin token: {answer}");
    }

    // No token, a wrong one, a revoked one: 401 on both kinds of route.
    let revoked = server.revoked_token("old ci", Scope::Upload).await;
    for token in [None, Some("ots_wrong"), Some(revoked.as_str())] {
        let (status, answer) = call(&server, Method::GET, "/api/v1/apps", token, None).await;
        assert_error(status, &answer, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, answer) =
            call(&server, Method::POST, "/api/v1/uploads", token, Some(json!({"size": 10, "sha256": "cd".repeat(32)})))
                .await;
        assert_error(status, &answer, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (status, answer) = upload_with(&server, &revoked, IpaBuilder::new("com.example.late").to_bytes()).await;
    assert_error(status, &answer, StatusCode::UNAUTHORIZED, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn the_api_document_explains_scopes() {
    let mut server = Server::start().await;
    let (_, document) = call(&server, Method::GET, "/api/openapi.json", None, None).await;
    let description = document["info"]["description"].as_str().expect("description");
    assert!(description.contains("--scope upload") && description.contains("insufficient-scope"), "{description}");
    for (path, method) in [("/api/v1/apps", "get"), ("/api/v1/builds/{id}", "delete"), ("/api/v1/devices", "get")] {
        assert!(document["paths"][path][method]["responses"]["403"].is_object(), "{method} {path}");
    }
    assert!(document["paths"]["/api/v1/uploads"]["post"]["responses"]["403"].is_null(), "upload tokens may create");
    server.stop().await;
}

#[tokio::test]
async fn only_admin_tokens_sign_in_to_the_web_ui() {
    let mut server = Server::start().await;
    let upload = server.create_token("ci", Scope::Upload).await;
    let mut browser = UiClient::new(&server);
    let refused = browser.sign_in(&upload).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.headers().get("set-cookie").is_none());
    let html = refused.text().await.expect("html");
    assert!(html.contains("This token may only upload builds, so it cannot sign in to the web UI"), "{html}");
    assert_eq!(location(&browser.get("/").await), "/signin");
    let admin = server.create_token("laptop", Scope::Admin).await;
    assert_eq!(browser.sign_in(&admin).await.status(), StatusCode::SEE_OTHER);
    let home = browser.get("/").await.text().await.expect("html");
    assert!(home.contains("Signed in as laptop ·"), "{home}");
    assert!(home.contains("href=\"/admin/accounts\""), "an admin token's session is an admin's");
    server.stop().await;
}

#[tokio::test]
async fn accounts_sign_in_with_their_password_stored_as_argon2id() {
    let mut server = Server::start().await;
    let password = server.create_account("Alice", Role::Uploader).await;
    let (account, hash) =
        server.state.db.account_by_username("alice").await.expect("read").expect("found whatever the case");
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains(&password), "the hash does not hold the password");
    assert_eq!(account.last_sign_in_at, None);

    let mut browser = UiClient::new(&server);
    let page = browser.get("/signin").await.text().await.expect("html");
    assert!(
        page.contains("name=\"username\"") && page.contains("name=\"password\"") && page.contains("name=\"token\"")
    );
    for (username, typed) in [("alice", "wrong password!"), ("nobody", password.as_str()), ("", password.as_str())] {
        let wrong = browser.sign_in_with_password(username, typed).await;
        assert!(wrong.headers().get("set-cookie").is_none());
        let status = wrong.status();
        let html = wrong.text().await.expect("html");
        if username.is_empty() {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(html.contains("Give a username and password, or an API token."), "{html}");
        } else {
            // The same sentence whether the account exists or not.
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(html.contains("That username and password do not match."), "{html}");
            assert!(html.contains(&format!("value=\"{username}\"")), "the username is kept: {html}");
        }
    }
    let signed_in = browser.sign_in_with_password("ALICE", &password).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), "/");
    let cookie = signed_in.headers()["set-cookie"].to_str().expect("ascii").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let home = browser.get("/").await.text().await.expect("html");
    assert!(home.contains("Signed in as Alice ·"), "signed in as the account's username: {home}");
    let (account, _) = server.state.db.account_by_username("alice").await.expect("read").expect("found");
    assert!(account.last_sign_in_at.is_some());

    // Deleting the account ends the session at once.
    server.state.db.delete_account(&account.id).await.expect("delete");
    assert_eq!(location(&browser.get("/").await), "/signin");
    server.stop().await;
}

/// Signs in from `forwarded_for` (the server trusts its proxy) and returns the answer.
async fn sign_in_from(server: &Server, forwarded_for: &str, username: &str, password: &str) -> reqwest::Response {
    UiClient::new(server)
        .client
        .post(format!("{}/signin", server.base))
        .header("x-forwarded-for", forwarded_for)
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .expect("sign in")
}

async fn assert_limited(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("set-cookie").is_none());
    let wait: u64 = response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=15 * 60).contains(&wait), "{wait}");
    let html = response.text().await.expect("html");
    assert!(html.contains("Too many failed attempts; wait ") && html.contains("UTC) and try again."), "{html}");
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_address_and_per_username() {
    let mut server = Server::start_with(ServeArgs { trust_proxy: Some(true), ..Default::default() }).await;
    let alice = server.create_account("alice", Role::Uploader).await;
    let bob = server.create_account("bob", Role::Admin).await;
    let carol = server.create_account("carol", Role::Uploader).await;

    // Ten failures from one address; the eleventh attempt is refused, right or wrong. What the
    // client put before the proxy's entry in X-Forwarded-For does not matter.
    let attacker = "203.0.113.7, 198.51.100.1";
    for _ in 0..10 {
        assert_eq!(
            sign_in_from(&server, attacker, "bob", "not bob's password").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_limited(sign_in_from(&server, attacker, "alice", &alice).await).await;
    assert_limited(sign_in_from(&server, "198.51.100.99, 198.51.100.1", "alice", &alice).await).await;
    // Other addresses are not affected, and bob (10 failures, fewer than 20) still signs in.
    assert_eq!(sign_in_from(&server, "198.51.100.2", "alice", &alice).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(sign_in_from(&server, "198.51.100.2", "bob", &bob).await.status(), StatusCode::SEE_OTHER);

    // Twenty failures for one username from several addresses (none reaching its own limit):
    // that username is refused from anywhere, even with its password; others are not.
    for (address, count) in [("192.0.2.1", 9), ("192.0.2.2", 9), ("2001:db8:1:2::5", 2)] {
        for _ in 0..count {
            let answer = sign_in_from(&server, address, "Carol", "guess guess guess").await;
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        }
    }
    assert_limited(sign_in_from(&server, "192.0.2.3", "carol", &carol).await).await;
    assert_eq!(sign_in_from(&server, "192.0.2.3", "alice", &alice).await.status(), StatusCode::SEE_OTHER);

    // IPv6 clients are counted by their /64: eight more failures from 2001:db8:1:2::/64 (two
    // were counted above) reach the limit for another address of that network.
    for host in 0..8 {
        let answer = sign_in_from(&server, &format!("2001:db8:1:2::{:x}", 0x100 + host), "dave", "guess guess").await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    assert_limited(sign_in_from(&server, "2001:db8:1:2:ffff::1", "alice", &alice).await).await;
    assert_eq!(sign_in_from(&server, "2001:db8:1:3::1", "alice", &alice).await.status(), StatusCode::SEE_OTHER);
    server.stop().await;
}

#[tokio::test]
async fn a_successful_sign_in_forgets_the_usernames_failures() {
    let mut server = Server::start_with(ServeArgs { trust_proxy: Some(true), ..Default::default() }).await;
    let erin = server.create_account("erin", Role::Uploader).await;
    // 19 failures (each address below its own limit), a success, then 19 more: without the
    // success forgetting the first ones, the username would be refused after the 20th.
    for round in 0..2 {
        for failure in 0..19 {
            let address = format!("198.51.100.{}", 10 + round * 10 + failure / 5);
            let answer = sign_in_from(&server, &address, "erin", "wrong wrong").await;
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        }
        let address = format!("198.51.100.{}", 200 + round);
        assert_eq!(sign_in_from(&server, &address, "erin", &erin).await.status(), StatusCode::SEE_OTHER);
    }
    server.stop().await;
}

#[tokio::test]
async fn without_trust_proxy_forwarded_addresses_are_ignored_and_tokens_count_too() {
    let mut server = Server::start().await;
    let alice = server.create_account("alice", Role::Uploader).await;
    let mut browser = UiClient::new(&server);
    // Wrong tokens and wrong passwords count together against the peer's address (loopback),
    // whatever X-Forwarded-For claims.
    for attempt in 0..10 {
        let response = browser
            .client
            .post(format!("{}/signin", server.base))
            .header("x-forwarded-for", format!("198.51.100.{attempt}"))
            .form(&[("token", "ots_wrong")])
            .send()
            .await
            .expect("sign in");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_limited(sign_in_from(&server, "198.51.100.250", "alice", &alice).await).await;
    let token = browser.sign_in(&server.token.clone()).await;
    assert_eq!(token.status(), StatusCode::TOO_MANY_REQUESTS, "an admin token waits too");
    server.stop().await;
}

/// Whether a sign-in from `address` failed within the last 15 minutes.
async fn failed_from(server: &Server, address: &str) -> bool {
    let once = Limit { failures: 1, window: Duration::from_secs(15 * 60) };
    ratelimit::check(&server.state.db, &format!("signin-ip:{address}"), once).await.is_err()
}

#[tokio::test]
async fn failures_count_against_the_connections_peer_over_http_and_https() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca_pem) = crate::support::write_test_certificate(certs.path());
    let mut https =
        Server::start_with(ServeArgs { tls_cert: Some(cert), tls_key: Some(key), ..Default::default() }).await;
    https.trusted_ca = Some(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"));
    let mut http = Server::start().await;
    for server in [&https, &http] {
        assert!(!failed_from(server, "127.0.0.1").await);
        let wrong = UiClient::new(server).sign_in_with_password("nobody", "not a password").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(failed_from(server, "127.0.0.1").await, "{}: counted for the peer's address", server.base);
        assert!(!failed_from(server, "0.0.0.0").await, "{}: the peer's address was known", server.base);
    }
    https.stop().await;
    http.stop().await;
}

#[tokio::test]
async fn the_rate_limiter_counts_failures_per_key_within_the_window() {
    let mut server = Server::start().await;
    let db = &server.state.db;
    let limit = Limit { failures: 3, window: Duration::from_secs(600) };
    ratelimit::check(db, "share:abc", limit).await.expect("no failures yet");
    for _ in 0..3 {
        ratelimit::record_failure(db, "share:abc").await.expect("record");
    }
    let refused = ratelimit::check(db, "share:abc", limit).await.expect_err("three failures");
    assert_eq!((refused.status, refused.code), (StatusCode::TOO_MANY_REQUESTS, "too-many-attempts"));
    let wait = refused.retry_after.expect("Retry-After");
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(600), "{wait:?}");
    assert!(refused.message.contains("10 minutes") || refused.message.contains("9 minutes"), "{}", refused.message);
    ratelimit::check(db, "share:abc", Limit { failures: 4, ..limit }).await.expect("a looser limit");
    ratelimit::check(db, "share:other", limit).await.expect("another key");
    ratelimit::clear(db, "share:abc").await.expect("clear");
    ratelimit::check(db, "share:abc", limit).await.expect("forgotten");
    server.stop().await;
}

/// A signed-in browser for a new account with this role.
async fn signed_in_account(server: &Server, username: &str, role: Role) -> (UiClient, String) {
    let password = server.create_account(username, role).await;
    let mut browser = UiClient::new(server);
    assert_eq!(browser.sign_in_with_password(username, &password).await.status(), StatusCode::SEE_OTHER);
    (browser, password)
}

#[tokio::test]
async fn uploaders_upload_and_browse_but_do_not_delete_or_administer() {
    let mut server = Server::start().await;
    let udid = "00008030-001544522E60802E";
    crate::devices::enroll(&server, crate::devices::test_device(), udid, "22A3354", None).await;
    let device = server.state.db.devices().await.expect("devices").remove(0).id;
    let (uploader, _) = signed_in_account(&server, "upton", Role::Uploader).await;
    let csrf = uploader.csrf().await;
    let response =
        uploader.upload(IpaBuilder::new("com.example.uploaded").to_bytes(), "from the UI", &csrf, true).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let build: Value = response.json().await.expect("JSON");
    let id = str_of(&build, "id").to_owned();

    let home = uploader.get("/").await.text().await.expect("html");
    assert!(home.contains("com.example.uploaded"));
    for admin_link in ["/admin/health", "/admin/diagnose", "/admin/accounts"] {
        assert!(!home.contains(admin_link), "{admin_link} is hidden from uploaders");
    }
    let app = uploader.get("/apps/com.example.uploaded").await;
    assert_eq!(app.status(), StatusCode::OK);
    assert!(!app.text().await.expect("html").contains("/delete"), "no delete button");
    for page in ["/devices", &format!("/builds/{id}/devices"), "/devices/export?format=csv", "/account"] {
        assert_eq!(uploader.get(page).await.status(), StatusCode::OK, "{page}");
    }
    let devices = uploader.get("/devices").await.text().await.expect("html");
    assert!(devices.contains(udid) && !devices.contains("/rename"), "listed, not editable: {devices}");

    let origin = Some(server.base.as_str());
    let refusals = [
        (format!("/builds/{id}/delete"), vec![("csrf", csrf.as_str())]),
        (format!("/devices/{device}/rename"), vec![("csrf", csrf.as_str()), ("name", "x")]),
        (format!("/devices/{device}/delete"), vec![("csrf", csrf.as_str())]),
        ("/admin/health".to_owned(), vec![("csrf", csrf.as_str())]),
        ("/admin/diagnose".to_owned(), vec![("csrf", csrf.as_str()), ("target", "https://example.com/i/x")]),
        ("/admin/accounts".to_owned(), vec![("csrf", csrf.as_str()), ("username", "mallory"), ("role", "admin")]),
    ];
    for (path, form) in &refusals {
        let refused = uploader.post_form(path, form, origin).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        let html = refused.text().await.expect("html");
        assert!(html.contains("Only administrators may do this; upton is an uploader."), "{path}: {html}");
    }
    for page in ["/admin/health", "/admin/diagnose", "/admin/accounts"] {
        assert_eq!(uploader.get(page).await.status(), StatusCode::FORBIDDEN, "{page}");
    }
    assert!(server.state.db.build_by_id(&id).await.is_ok(), "the build is still there");
    assert_eq!(server.state.db.device(&device).await.expect("read").expect("still there").name, None);
    assert!(server.state.db.account_by_username("mallory").await.expect("read").is_none());

    // An admin account may do all of it.
    let (admin, _) = signed_in_account(&server, "ada", Role::Admin).await;
    let admin_csrf = admin.csrf().await;
    let home = admin.get("/").await.text().await.expect("html");
    assert!(home.contains("/admin/health") && home.contains("/admin/accounts"));
    for page in ["/admin/health", "/admin/diagnose", "/admin/accounts"] {
        assert_eq!(admin.get(page).await.status(), StatusCode::OK, "{page}");
    }
    assert!(admin.get("/devices").await.text().await.expect("html").contains("/rename"));
    let rename =
        admin.post_form(&format!("/devices/{device}/rename"), &[("csrf", &admin_csrf), ("name", "Lab")], origin).await;
    assert_eq!(rename.status(), StatusCode::SEE_OTHER);
    assert_eq!(server.state.db.device(&device).await.expect("read").expect("found").name.as_deref(), Some("Lab"));
    assert!(admin.get("/apps/com.example.uploaded").await.text().await.expect("html").contains("/delete"));
    let deleted = admin.post_form(&format!("/builds/{id}/delete"), &[("csrf", &admin_csrf)], origin).await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert!(server.state.db.build_by_id(&id).await.is_err(), "deleted");

    // A new role applies to open sessions at once.
    let (account, _) = server.state.db.account_by_username("upton").await.expect("read").expect("found");
    server.state.db.set_account_role(&account.id, Role::Admin).await.expect("role");
    assert_eq!(uploader.get("/admin/health").await.status(), StatusCode::OK);
    server.stop().await;
}

/// The password the accounts page shows once.
fn shown_password(html: &str) -> String {
    let start = html.find("id=\"new-password-value\">").expect("a new password is shown") + 24;
    let end = html[start..].find('<').expect("end") + start;
    html[start..end].to_owned()
}

#[tokio::test]
async fn admins_manage_accounts_on_the_web() {
    let mut server = Server::start().await;
    let (admin, _) = signed_in_account(&server, "root", Role::Admin).await;
    let csrf = admin.csrf().await;
    let origin = Some(server.base.as_str());
    let page = admin.get("/admin/accounts").await.text().await.expect("html");
    assert!(page.contains("root") && page.contains("(you)"));

    // Create, with a generated password shown once.
    let form = [("csrf", csrf.as_str()), ("username", "Uma"), ("role", "uploader"), ("password", "")];
    let created = admin.post_form("/admin/accounts", &form, origin).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let first = shown_password(&created.text().await.expect("html"));
    assert_eq!(first.len(), 23, "{first}");
    assert!(!admin.get("/admin/accounts").await.text().await.expect("html").contains(&first), "shown once");
    let mut uma = UiClient::new(&server);
    assert_eq!(uma.sign_in_with_password("uma", &first).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(uma.get("/admin/health").await.status(), StatusCode::FORBIDDEN);

    // Refusals: taken (any case), bad names and roles, short passwords, and forms without the
    // session's CSRF token.
    type Case<'a> = (&'a [(&'a str, &'a str)], StatusCode, &'a str);
    let cases: [Case<'_>; 4] = [
        (&[("username", "UMA"), ("role", "admin")], StatusCode::CONFLICT, "There is already an account named UMA"),
        (&[("username", "a b"), ("role", "admin")], StatusCode::BAD_REQUEST, "A username may hold only"),
        (&[("username", "vic"), ("role", "owner")], StatusCode::BAD_REQUEST, "Choose the role admin or uploader."),
        (&[("username", "vic"), ("role", "admin"), ("password", "short")], StatusCode::BAD_REQUEST, "at least 10"),
    ];
    for (fields, status, sentence) in cases {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let refused = admin.post_form("/admin/accounts", &form, origin).await;
        assert_eq!(refused.status(), status, "{fields:?}");
        assert!(refused.text().await.expect("html").contains(sentence), "{fields:?}");
    }
    let (uma_row, _) = server.state.db.account_by_username("uma").await.expect("read").expect("found");
    let uma_id = uma_row.id.clone();
    let forged_forms: [(String, Vec<(&str, &str)>); 4] = [
        ("/admin/accounts".to_owned(), vec![("username", "eve"), ("role", "admin")]),
        (format!("/admin/accounts/{uma_id}/role"), vec![("role", "admin")]),
        (format!("/admin/accounts/{uma_id}/password"), vec![]),
        (format!("/admin/accounts/{uma_id}/delete"), vec![]),
    ];
    for (path, fields) in &forged_forms {
        let mut form = vec![("csrf", "forged")];
        form.extend_from_slice(fields);
        assert_eq!(admin.post_form(path, &form, origin).await.status(), StatusCode::FORBIDDEN, "{path}");
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let cross_site = admin.post_form(path, &form, Some("https://evil.example")).await;
        assert_eq!(cross_site.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert!(server.state.db.account_by_username("eve").await.expect("read").is_none());

    // Role.
    let promoted =
        admin.post_form(&format!("/admin/accounts/{uma_id}/role"), &[("csrf", &csrf), ("role", "admin")], origin).await;
    assert_eq!(promoted.status(), StatusCode::SEE_OTHER);
    assert_eq!(uma.get("/admin/health").await.status(), StatusCode::OK, "the new role applies at once");

    // Reset: a new password shown once; uma's sessions end; only the new password works.
    let reset = admin.post_form(&format!("/admin/accounts/{uma_id}/password"), &[("csrf", &csrf)], origin).await;
    assert_eq!(reset.status(), StatusCode::OK);
    let second = shown_password(&reset.text().await.expect("html"));
    assert_ne!(first, second);
    assert_eq!(location(&uma.get("/").await), "/signin");
    assert_eq!(uma.sign_in_with_password("uma", &first).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(uma.sign_in_with_password("uma", &second).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(admin.get("/").await.status(), StatusCode::OK, "the admin's own session goes on");

    // An admin does not lock themselves out from here.
    let (root_row, _) = server.state.db.account_by_username("root").await.expect("read").expect("found");
    let own = admin.post_form(&format!("/admin/accounts/{}/delete", root_row.id), &[("csrf", &csrf)], origin).await;
    assert_eq!(own.status(), StatusCode::BAD_REQUEST);
    let own = admin
        .post_form(&format!("/admin/accounts/{}/role", root_row.id), &[("csrf", &csrf), ("role", "uploader")], origin)
        .await;
    assert_eq!(own.status(), StatusCode::BAD_REQUEST);

    // Delete: the account and its session.
    let deleted = admin.post_form(&format!("/admin/accounts/{uma_id}/delete"), &[("csrf", &csrf)], origin).await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&uma.get("/").await), "/signin", "deleting an account ends its session");
    assert!(server.state.db.account_by_username("uma").await.expect("read").is_none());
    let gone = admin.post_form(&format!("/admin/accounts/{uma_id}/delete"), &[("csrf", &csrf)], origin).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn people_change_their_own_password() {
    let mut server = Server::start().await;
    let (browser, password) = signed_in_account(&server, "pat", Role::Uploader).await;
    let mut elsewhere = UiClient::new(&server);
    assert_eq!(elsewhere.sign_in_with_password("pat", &password).await.status(), StatusCode::SEE_OTHER);
    let csrf = browser.csrf().await;
    let origin = Some(server.base.as_str());
    let page = browser.get("/account").await.text().await.expect("html");
    assert!(page.contains("id=\"change-password\""), "{page}");
    let new = "a much better passphrase";
    let cases = [
        ("not my password", new, new, StatusCode::FORBIDDEN, "Your current password is not the one you typed"),
        (password.as_str(), "short", "short", StatusCode::BAD_REQUEST, "at least 10 characters"),
        (password.as_str(), new, "a much better passphrasf", StatusCode::BAD_REQUEST, "differ"),
    ];
    for (current, typed, repeat, status, sentence) in cases {
        let form = [("csrf", csrf.as_str()), ("current", current), ("new", typed), ("repeat", repeat)];
        let refused = browser.post_form("/account/password", &form, origin).await;
        assert_eq!(refused.status(), status, "{sentence}");
        assert!(refused.text().await.expect("html").contains(sentence), "{sentence}");
    }
    let form = [("csrf", "forged"), ("current", password.as_str()), ("new", new), ("repeat", new)];
    assert_eq!(browser.post_form("/account/password", &form, origin).await.status(), StatusCode::FORBIDDEN);

    let form = [("csrf", csrf.as_str()), ("current", password.as_str()), ("new", new), ("repeat", new)];
    let changed = browser.post_form("/account/password", &form, origin).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert!(changed.text().await.expect("html").contains("id=\"password-changed\""));
    assert_eq!(browser.get("/").await.status(), StatusCode::OK, "this session goes on");
    assert_eq!(location(&elsewhere.get("/").await), "/signin", "the other session ended");
    assert_eq!(elsewhere.sign_in_with_password("pat", &password).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(elsewhere.sign_in_with_password("pat", new).await.status(), StatusCode::SEE_OTHER);

    // A token's session has no password to change.
    let mut token = UiClient::new(&server);
    token.sign_in(&server.token.clone()).await;
    assert!(token.get("/account").await.text().await.expect("html").contains("id=\"token-session\""));
    let csrf = token.csrf().await;
    let form = [("csrf", csrf.as_str()), ("current", "x"), ("new", new), ("repeat", new)];
    assert_eq!(token.post_form("/account/password", &form, origin).await.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}
