//! The uploaders' web UI over HTTP: sign-in and its cookie, CSRF and Origin checks, upload by
//! form and by script, the app pages, delete, sign-out and revocation.

use otaship_ipa::builder::IpaBuilder;
use otaship_server::tokens;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Server, UiClient};

fn location(response: &reqwest::Response) -> &str {
    response.headers().get("location").and_then(|value| value.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_opens_the_pages() {
    let mut server = Server::start().await;
    let mut browser = UiClient::new(&server);
    let home = browser.get("/").await;
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&home), "/signin");
    let page = browser.get("/signin").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-security-policy"], "frame-ancestors 'none'");
    assert!(page.text().await.expect("html").contains("name=\"token\""));

    let wrong = browser.sign_in("ots_not_a_token").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.expect("html").contains("not valid or was revoked"));

    let signed_in = browser.sign_in(&server.token.clone()).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), "/");
    let cookie = signed_in.headers()["set-cookie"].to_str().expect("ascii").to_owned();
    assert!(cookie.starts_with("otaship_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP cannot carry a Secure cookie: {cookie}");
    assert!(!cookie.contains(&server.token), "the cookie is not the API token");

    let home = browser.get("/").await;
    assert_eq!(home.status(), StatusCode::OK);
    assert_eq!(home.headers()["cache-control"], "no-store");
    let html = home.text().await.expect("html");
    assert!(html.contains("id=\"upload-form\"") && html.contains("id=\"no-apps\""));
    assert!(html.contains("Signed in as OTASHIP_ADMIN_TOKEN"));
    server.stop().await;
}

#[tokio::test]
async fn uploads_need_the_session_and_its_csrf_token() {
    let mut server = Server::start().await;
    let mut browser = UiClient::new(&server);
    let build_of = |version: &str| {
        IpaBuilder::new("com.example.ui")
            .info("CFBundleDisplayName", "Tom & Jerry <beta>")
            .info("CFBundleVersion", version)
            .to_bytes()
    };
    let ipa = || build_of("1");

    // Without a session: JSON callers get 401, forms are sent to sign in.
    let anonymous = browser.upload(ipa(), "", "x", true).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.json::<Value>().await.expect("JSON")["error"]["code"], "signed-out");

    browser.sign_in(&server.token.clone()).await;
    let csrf = browser.csrf().await;
    let forged = browser.upload(ipa(), "", &"0".repeat(64), true).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(forged.json::<Value>().await.expect("JSON")["error"]["code"], "csrf-check-failed");
    let missing = browser.upload(ipa(), "", "", false).await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert!(missing.text().await.expect("html").contains("reload the page"));
    assert!(server.blob_keys().await.is_empty(), "refused uploads store nothing");

    let by_script = browser.upload(ipa(), "first <b>notes</b>", &csrf, true).await;
    assert_eq!(by_script.status(), StatusCode::CREATED);
    let build: Value = by_script.json().await.expect("JSON");
    assert_eq!(build["notes"], "first <b>notes</b>");
    // A different file: the same one again would be the same build.
    let by_form = browser.upload(build_of("2"), "", &csrf, false).await;
    assert_eq!(by_form.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&by_form), "/apps/com.example.ui");

    let bad = browser.upload(b"not a zip".to_vec(), "", &csrf, false).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.expect("html").contains("id=\"error-message\""));

    let home = browser.get("/").await.text().await.expect("html");
    assert!(home.contains("Tom &#38; Jerry &#60;beta&#62;") || home.contains("Tom &amp; Jerry &lt;beta&gt;"), "{home}");
    assert!(home.contains("2 builds"));
    let app = browser.get("/apps/com.example.ui").await;
    assert_eq!(app.status(), StatusCode::OK);
    let html = app.text().await.expect("html");
    assert_eq!(html.matches("class=\"build\"").count(), 2);
    assert!(html.contains("first &#60;b&#62;notes&#60;/b&#62;") || html.contains("first &lt;b&gt;notes&lt;/b&gt;"));
    assert!(html.contains(build["install_url"].as_str().expect("url")));
    assert!(html.contains("<svg"), "the latest build's QR code");
    assert_eq!(browser.get("/apps/com.example.missing").await.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn deleting_checks_origin_and_csrf_then_removes_the_files() {
    let mut server = Server::start().await;
    let mut browser = UiClient::new(&server);
    browser.sign_in(&server.token.clone()).await;
    let csrf = browser.csrf().await;
    let mut ids = Vec::new();
    for version in ["1", "2"] {
        let ipa = IpaBuilder::new("com.example.gone").info("CFBundleVersion", version).to_bytes();
        let build: Value = browser.upload(ipa, "", &csrf, true).await.json().await.expect("JSON");
        ids.push(build["id"].as_str().expect("id").to_owned());
    }
    let path = format!("/builds/{}/delete", ids[0]);
    let cross_site = browser.post_form(&path, &[("csrf", &csrf)], Some("https://evil.example")).await;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let forged = browser.post_form(&path, &[("csrf", "nope")], None).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(server.blob_keys().await.iter().any(|key| key.contains(&ids[0])));

    let deleted = browser.post_form(&path, &[("csrf", &csrf)], Some(&server.base.clone())).await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&deleted), "/apps/com.example.gone");
    assert!(!server.blob_keys().await.iter().any(|key| key.contains(&ids[0])));
    let last = browser.post_form(&format!("/builds/{}/delete", ids[1]), &[("csrf", &csrf)], None).await;
    assert_eq!(location(&last), "/", "the app's last build gone: back to the app list");
    assert!(server.blob_keys().await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn signing_out_or_revoking_the_token_ends_the_session() {
    let mut server = Server::start().await;
    let mut browser = UiClient::new(&server);
    let token = tokens::generate();
    server.state.db.insert_token("uitoken", "QA laptop", &tokens::hash(&token)).await.expect("token");
    browser.sign_in(&token).await;
    assert!(browser.get("/").await.text().await.expect("html").contains("Signed in as QA laptop"));
    server.state.db.revoke_token("uitoken").await.expect("revoke");
    assert_eq!(location(&browser.get("/").await), "/signin", "a revoked token's session is over");

    browser.sign_in(&server.token.clone()).await;
    let csrf = browser.csrf().await;
    let stale_cookie = browser.cookie.clone();
    let out = browser.post_form("/signout", &[("csrf", &csrf)], None).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(out.headers()["set-cookie"].to_str().expect("ascii").contains("Max-Age=0"));
    browser.cookie = stale_cookie;
    assert_eq!(location(&browser.get("/").await), "/signin", "the old cookie no longer works");
    server.stop().await;
}

#[tokio::test]
async fn over_https_the_session_cookie_is_secure() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca_pem) = crate::support::write_test_certificate(certs.path());
    let args = otaship_server::ServeArgs { tls_cert: Some(cert), tls_key: Some(key), ..Default::default() };
    let mut server = Server::start_with(args).await;
    server.trusted_ca = Some(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"));
    let response = UiClient::new(&server).sign_in(&server.token.clone()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()["set-cookie"].to_str().expect("ascii");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diagnose_page_runs_the_doctor_on_any_link() {
    let mut server = Server::start().await;
    let mut browser = UiClient::new(&server);
    browser.sign_in(&server.token.clone()).await;
    let csrf = browser.csrf().await;
    let build: Value = browser
        .upload(IpaBuilder::new("com.example.diagnosed").to_bytes(), "", &csrf, true)
        .await
        .json()
        .await
        .expect("JSON");
    let install_url = build["install_url"].as_str().expect("url").to_owned();
    assert_eq!(browser.get("/admin/diagnose").await.status(), StatusCode::OK);
    let forged = browser.post_form("/admin/diagnose", &[("csrf", "no"), ("target", &install_url)], None).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let page = browser.post_form("/admin/diagnose", &[("csrf", &csrf), ("target", &install_url)], None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    // This test server speaks plain HTTP on loopback: exactly what an iPhone cannot use.
    for code in ["manifest-not-https", "manifest-url-local", "unsigned"] {
        assert!(html.contains(code), "{code} in {html}");
    }
    assert!(html.contains("will stop the install"), "{html}");
    let local = browser.post_form("/admin/diagnose", &[("csrf", &csrf), ("target", "/etc/passwd")], None).await;
    assert!(local.text().await.expect("html").contains("Give an install page URL"), "no local files");
    server.stop().await;
}
