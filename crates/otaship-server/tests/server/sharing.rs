//! Sharing: share links with passwords, expiry and install limits, the capability URLs that
//! let the iOS installer fetch a protected build with no cookies at all, `410` pages, channel
//! links and stable channel pages, install analytics, and the build and channels pages.

use std::time::{Duration, UNIX_EPOCH};

use otaship_ipa::builder::{IpaBuilder, profile_plist};
use otaship_server::sharing::Purpose;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::support::{Server, UiClient, install_href, manifest_url_of, upload_to};

/// What the iOS installer sends when it fetches a manifest and the `.ipa`.
const INSTALLER_AGENT: &str =
    "com.apple.appstored/1.0 iOS/18.2 model/iPhone15,2 hwp/t8120 build/22C152 (6; dt:283) AMS/1";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
                             (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

/// A distinct, installable build of `bundle_id` (its version makes it distinct): in-house,
/// its profile valid until 2100.
fn build_ipa(bundle_id: &str, name: &str, version: &str) -> Vec<u8> {
    let far = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    IpaBuilder::new(bundle_id)
        .info("CFBundleDisplayName", name)
        .info("CFBundleShortVersionString", version)
        .info("CFBundleVersion", version)
        .profile(profile_plist(&format!("ABCDE12345.{bundle_id}"), None, true, false, far))
        .to_bytes()
}

async fn api(server: &Server, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = server.client().request(method, format!("{}{path}", server.base)).bearer_auth(&server.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn create_link(server: &Server, build_id: &str, body: Value) -> Value {
    let (status, link) =
        api(server, reqwest::Method::POST, &format!("/api/v1/builds/{build_id}/links"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    link
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("{key} is not a string in {value}"))
}

/// A fresh client: no cookies, no redirects followed, like the iOS installer's first request.
fn fresh(server: &Server) -> reqwest::Client {
    server.client_without_redirects()
}

/// The `software-package` and `display-image` URLs of a manifest.
fn manifest_assets(body: &[u8]) -> (String, Option<String>) {
    let manifest = plist::Value::from_reader_xml(body).expect("manifest plist");
    let assets = manifest
        .as_dictionary()
        .and_then(|root| root.get("items"))
        .and_then(|items| items.as_array())
        .and_then(|items| items.first())
        .and_then(|item| item.as_dictionary())
        .and_then(|item| item.get("assets"))
        .and_then(|assets| assets.as_array())
        .expect("assets")
        .clone();
    let url_of = |kind: &str| {
        assets.iter().find_map(|asset| {
            let asset = asset.as_dictionary()?;
            (asset.get("kind")?.as_string()? == kind).then(|| asset.get("url")?.as_string().map(str::to_owned))?
        })
    };
    (url_of("software-package").expect("software-package"), url_of("display-image"))
}

#[tokio::test]
async fn a_password_protected_link_installs_with_a_client_that_sends_no_cookies() {
    let server = Server::start().await;
    let ipa = build_ipa("com.example.protected", "Protected", "1.0");
    let build = upload_to(&server, ipa.clone(), "qa", "").await;
    let link = create_link(&server, str_of(&build, "id"), json!({"password": "s3cret & <sure>", "label": "QA"})).await;
    assert_eq!(link["password_protected"], true);
    assert_eq!(link["state"], "active");
    let page_url = str_of(&link, "url").to_owned();
    assert!(page_url.starts_with(&format!("{}/s/", server.base)), "{page_url}");

    // Without the password: a form, and nothing that installs.
    let response = fresh(&server).get(&page_url).send().await.expect("page");
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.expect("html");
    assert!(html.contains("type=\"password\""), "{html}");
    assert!(install_href(&html).is_none());
    assert!(!html.contains("/i/") && !html.contains("manifest.plist"), "no install URL before the password");

    // A wrong password: refused, no cookie.
    let wrong = fresh(&server).post(&page_url).form(&[("password", "guess")]).send().await.expect("post");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.expect("html").contains("password-error"));

    // The right one: a cookie for this link's page only, and back to the page.
    let passed = fresh(&server).post(&page_url).form(&[("password", "s3cret & <sure>")]).send().await.expect("post");
    assert_eq!(passed.status(), StatusCode::SEE_OTHER);
    let cookie = passed.headers().get("set-cookie").expect("cookie").to_str().expect("ascii").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains(&format!("Path={}", page_url.trim_start_matches(&server.base)))
    );
    let pair = cookie.split(';').next().expect("pair").to_owned();
    let html =
        fresh(&server).get(&page_url).header("cookie", &pair).send().await.expect("page").text().await.expect("html");
    let href = install_href(&html).expect("install button after the password");
    let manifest_url = manifest_url_of(&href);
    assert!(manifest_url.starts_with(&format!("{page_url}/")), "{manifest_url}");
    assert!(!html.contains(&format!("/i/{}", str_of(&build, "install_url").rsplit('/').next().expect("token"))));

    // The installer: fresh clients, no cookies at all, for the manifest and the .ipa.
    let manifest =
        fresh(&server).get(&manifest_url).header("user-agent", INSTALLER_AGENT).send().await.expect("manifest");
    assert_eq!(manifest.status(), StatusCode::OK);
    let (package_url, icon_url) = manifest_assets(&manifest.bytes().await.expect("body"));
    assert!(package_url.starts_with(&format!("{page_url}/")), "{package_url}");
    let download = fresh(&server).get(&package_url).header("user-agent", INSTALLER_AGENT).send().await.expect("ipa");
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.bytes().await.expect("bytes").as_ref(), ipa.as_slice(), "byte-identical");
    if let Some(icon_url) = icon_url {
        let icon = fresh(&server).get(&icon_url).send().await.expect("icon");
        assert_eq!(icon.status(), StatusCode::OK);
        assert_eq!(icon.headers()["content-type"], "image/png");
    }
    // The page without the cookie is still locked.
    let html = fresh(&server).get(&page_url).send().await.expect("page").text().await.expect("html");
    assert!(install_href(&html).is_none());

    // The installs are counted, with the installer's model and iOS version.
    let analytics = wait_for_completed(&server, str_of(&build, "id"), 1).await;
    assert_eq!(analytics["total"]["manifest_fetches"], 1);
    assert_eq!(analytics["total"]["downloads_started"], 1);
    assert_eq!(analytics["devices"][0]["device_model"], "iPhone15,2");
    assert_eq!(analytics["devices"][0]["os_version"], "18.2");
    assert_eq!(analytics["links"][0]["id"], link["id"]);
    assert_eq!(analytics["links"][0]["stats"]["manifest_fetches"], 1);
    let (_, link_now) =
        api(&server, reqwest::Method::GET, &format!("/api/v1/links/{}", str_of(&link, "id")), None).await;
    assert_eq!(link_now["installs"], 1);
}

/// The build's analytics once `completed` downloads have been counted (a completed download is
/// recorded as its last bytes leave, just after the client has them).
async fn wait_for_completed(server: &Server, build_id: &str, completed: u64) -> Value {
    let mut analytics = Value::Null;
    for _ in 0..100 {
        let (status, body) =
            api(server, reqwest::Method::GET, &format!("/api/v1/builds/{build_id}/analytics"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        analytics = body;
        if analytics["total"]["downloads_completed"].as_u64() >= Some(completed) {
            return analytics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{completed} completed downloads were never counted: {analytics}");
}

#[tokio::test]
async fn capabilities_outside_their_window_or_for_another_build_are_refused() {
    let server = Server::start().await;
    let first = upload_to(&server, build_ipa("com.example.one", "One", "1.0"), "default", "").await;
    let second = upload_to(&server, build_ipa("com.example.two", "Two", "1.0"), "default", "").await;
    let (first_id, second_id) = (str_of(&first, "id"), str_of(&second, "id"));
    let link = create_link(&server, first_id, json!({})).await;
    let stored = server.state.db.link_by_id(str_of(&link, "id")).await.expect("db").expect("link");
    let sharing = &server.state.sharing;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let page = str_of(&link, "url");
    let get = |capability: String| {
        let url = format!("{page}/{capability}/app.ipa");
        let client = fresh(&server);
        async move {
            let response = client.get(url).send().await.expect("request");
            let status = response.status();
            (status, response.json::<Value>().await.map(|body| body["error"]["code"].clone()).unwrap_or(Value::Null))
        }
    };
    // Within its window, for the link's build: served.
    let (status, _) =
        get(sharing.capability_for_window(&stored.id, first_id, Purpose::Package, now - 60, now + 600)).await;
    assert_eq!(status, StatusCode::OK);
    // Its window closed, or not yet open.
    let (status, code) =
        get(sharing.capability_for_window(&stored.id, first_id, Purpose::Package, now - 7200, now - 1)).await;
    assert_eq!((status, code), (StatusCode::GONE, json!("capability-expired")));
    let (status, code) =
        get(sharing.capability_for_window(&stored.id, first_id, Purpose::Package, now + 3600, now + 7200)).await;
    assert_eq!((status, code), (StatusCode::GONE, json!("capability-expired")));
    // Another build: a valid signature for a build this link does not share is refused, and so
    // is a capability whose build was swapped.
    let (status, code) =
        get(sharing.capability_for_window(&stored.id, second_id, Purpose::Package, now - 60, now + 600)).await;
    assert_eq!((status, code), (StatusCode::FORBIDDEN, json!("capability-invalid")));
    let swapped = sharing
        .capability_for_window(&stored.id, first_id, Purpose::Package, now - 60, now + 600)
        .replacen(first_id, second_id, 1);
    let (status, code) = get(swapped).await;
    assert_eq!((status, code), (StatusCode::FORBIDDEN, json!("capability-invalid")));
    // Another link's capability, a stretched window, junk.
    let (status, _) =
        get(sharing.capability_for_window("another-link", first_id, Purpose::Package, now - 60, now + 600)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let stretched = sharing
        .capability_for_window(&stored.id, first_id, Purpose::Package, now - 60, now + 600)
        .replacen(&format!(".{}.", now + 600), &format!(".{}.", now + 999_999), 1);
    let (status, _) = get(stretched).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A page capability (what the install page hands out) opens the manifest, not the .ipa:
    // only a manifest fetch, which counts against the link's limit, names the package.
    let (status, code) =
        get(sharing.capability_for_window(&stored.id, first_id, Purpose::Page, now - 60, now + 600)).await;
    assert_eq!((status, code), (StatusCode::FORBIDDEN, json!("capability-invalid")));
    let html = fresh(&server).get(page).send().await.expect("page").text().await.expect("html");
    let page_capability = manifest_url_of(&install_href(&html).expect("install"))
        .trim_start_matches(&format!("{page}/"))
        .split('/')
        .next()
        .expect("capability")
        .to_owned();
    let (status, _) = get(page_capability).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get("not-a-capability".to_owned()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The build's own install token is not a way around the link either: it is another URL space.
    let manifest = fresh(&server).get(format!("{page}/x/manifest.plist")).send().await.expect("manifest");
    assert_eq!(manifest.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn stopped_links_answer_410_and_say_why() {
    let server = Server::start().await;
    let build = upload_to(&server, build_ipa("com.example.gone", "Gone <app>", "1.0"), "default", "").await;
    let build_id = str_of(&build, "id");

    // Used up: one install allowed, the second manifest fetch is refused and the page says so.
    let once = create_link(&server, build_id, json!({"max_installs": 1})).await;
    let html = fresh(&server).get(str_of(&once, "url")).send().await.expect("page").text().await.expect("html");
    let manifest_url = manifest_url_of(&install_href(&html).expect("install"));
    // A link checker's HEAD uses up nothing.
    assert_eq!(fresh(&server).head(&manifest_url).send().await.expect("head").status(), StatusCode::OK);
    let first = fresh(&server).get(&manifest_url).send().await.expect("manifest");
    assert_eq!(first.status(), StatusCode::OK);
    let (package_url, _) = manifest_assets(&first.bytes().await.expect("body"));
    let again = fresh(&server).get(&manifest_url).send().await.expect("manifest");
    assert_eq!(again.status(), StatusCode::GONE);
    // The install that was counted still downloads.
    assert_eq!(fresh(&server).get(&package_url).send().await.expect("ipa").status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.expect("json")["error"]["code"], "link-exhausted");
    let page = fresh(&server).get(str_of(&once, "url")).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::GONE);
    let html = page.text().await.expect("html");
    assert!(html.contains("used up") && html.contains("data-reason=\"link-exhausted\""), "{html}");
    let (_, listed) = api(&server, reqwest::Method::GET, &format!("/api/v1/links/{}", str_of(&once, "id")), None).await;
    assert_eq!(listed["state"], "exhausted");

    // Revoked: the page and the capability URLs it handed out stop at once.
    let revocable = create_link(&server, build_id, json!({})).await;
    let html = fresh(&server).get(str_of(&revocable, "url")).send().await.expect("page").text().await.expect("html");
    let manifest_url = manifest_url_of(&install_href(&html).expect("install"));
    let (status, _) =
        api(&server, reqwest::Method::DELETE, &format!("/api/v1/links/{}", str_of(&revocable, "id")), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let page = fresh(&server).get(str_of(&revocable, "url")).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::GONE);
    assert!(page.text().await.expect("html").contains("revoked"));
    let manifest = fresh(&server).get(&manifest_url).send().await.expect("manifest");
    assert_eq!(manifest.status(), StatusCode::GONE);
    assert_eq!(manifest.json::<Value>().await.expect("json")["error"]["code"], "link-revoked");

    // Expired (stored with a past expiry: the API refuses to make one).
    let mut expired = server.state.db.link_by_id(str_of(&revocable, "id")).await.expect("db").expect("link");
    expired.id = "expired0".to_owned();
    expired.token = "e".repeat(32);
    expired.revoked_at = None;
    expired.expires_at = Some(OffsetDateTime::now_utc() - time::Duration::HOUR);
    server.state.db.insert_link(&expired).await.expect("insert");
    let page = fresh(&server).get(format!("{}/s/{}", server.base, expired.token)).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::GONE);
    assert!(page.text().await.expect("html").contains("expired"));

    // The build deleted: the link stays, and says so.
    let orphan = create_link(&server, build_id, json!({})).await;
    let (status, _) = api(&server, reqwest::Method::DELETE, &format!("/api/v1/builds/{build_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let page = fresh(&server).get(str_of(&orphan, "url")).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::GONE);
    assert!(page.text().await.expect("html").contains("deleted"));

    // Unknown links are 404, not 410.
    let unknown = fresh(&server).get(format!("{}/s/{}", server.base, "0".repeat(32))).send().await.expect("page");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // Settings that make no sense are refused with a sentence.
    let build = upload_to(&server, build_ipa("com.example.gone", "Gone", "2.0"), "default", "").await;
    for (body, needle) in [
        (json!({"expires_at": "2001-01-01T00:00:00Z"}), "past"),
        (json!({"expires_at": "tomorrow"}), "RFC 3339"),
        (json!({"max_installs": 0}), "at least 1"),
        (json!({"password": ""}), "empty"),
        (json!({"colour": "red"}), ""),
    ] {
        let path = format!("/api/v1/builds/{}/links", str_of(&build, "id"));
        let (status, error) = api(&server, reqwest::Method::POST, &path, Some(body.clone())).await;
        assert!(status.is_client_error(), "{body}: {status}");
        if !needle.is_empty() {
            assert!(error["error"]["message"].as_str().expect("message").contains(needle), "{error}");
        }
    }
    // The API needs a token.
    let anonymous = server.client().get(format!("{}/api/v1/links", server.base)).send().await.expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn channel_links_and_channel_pages_serve_the_newest_build() {
    let server = Server::start().await;
    let beta1 = upload_to(&server, build_ipa("com.example.chan", "Chan", "1.0"), "beta", "").await;
    let release = upload_to(&server, build_ipa("com.example.chan", "Chan", "0.9"), "release", "").await;
    let (status, link) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/apps/com.example.chan/channels/beta/links",
        Some(json!({"label": "Beta testers"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    assert_eq!(link["kind"], "channel");
    let (_, channels) = api(&server, reqwest::Method::GET, "/api/v1/apps/com.example.chan/channels", None).await;
    let beta = channels["channels"].as_array().expect("channels").iter().find(|c| c["name"] == "beta").expect("beta");
    let stable_page = str_of(beta, "page_url").to_owned();
    assert_eq!(beta["latest_build"]["id"], beta1["id"]);

    let version_on = |url: String| {
        let client = fresh(&server);
        async move {
            let html = client.get(url).send().await.expect("page").text().await.expect("html");
            assert!(install_href(&html).is_some(), "{html}");
            html
        }
    };
    assert!(version_on(str_of(&link, "url").to_owned()).await.contains("Version 1.0"));
    assert!(version_on(stable_page.clone()).await.contains("Version 1.0"));

    // A new beta build: both now serve it, with the same URLs; release is untouched.
    let beta2 = upload_to(&server, build_ipa("com.example.chan", "Chan", "1.1"), "beta", "").await;
    let html = version_on(str_of(&link, "url").to_owned()).await;
    assert!(html.contains("Version 1.1"), "the channel link follows the newest build");
    let manifest_url = manifest_url_of(&install_href(&html).expect("install"));
    let manifest = fresh(&server).get(&manifest_url).send().await.expect("manifest").bytes().await.expect("body");
    let text = String::from_utf8_lossy(&manifest);
    assert!(text.contains("<string>1.1</string>"), "{text}");
    assert!(version_on(stable_page.clone()).await.contains("Version 1.1"));
    let (_, channels) = api(&server, reqwest::Method::GET, "/api/v1/apps/com.example.chan/channels", None).await;
    let names: Vec<&str> = channels["channels"].as_array().expect("list").iter().map(|c| str_of(c, "name")).collect();
    assert_eq!(names, ["beta", "release"]);
    let stable_again = channels["channels"][0]["page_url"].as_str().expect("url");
    assert_eq!(stable_again, stable_page, "the channel's page URL never changes");
    assert_eq!(channels["channels"][0]["latest_build"]["id"], beta2["id"]);
    assert_eq!(channels["channels"][1]["latest_build"]["id"], release["id"]);

    // The manifest of the older build stays valid through the channel link while its download runs.
    let (status, _) =
        api(&server, reqwest::Method::DELETE, &format!("/api/v1/builds/{}", str_of(&beta2, "id")), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(version_on(stable_page.clone()).await.contains("Version 1.0"), "back to the newest remaining build");
    let (status, _) =
        api(&server, reqwest::Method::DELETE, &format!("/api/v1/builds/{}", str_of(&beta1, "id")), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let empty = fresh(&server).get(str_of(&link, "url")).send().await.expect("page");
    assert_eq!(empty.status(), StatusCode::GONE);
    let missing = fresh(&server).get(format!("{}/c/{}", server.base, "0".repeat(32))).send().await.expect("page");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn analytics_count_page_views_installs_and_downloads() {
    let server = Server::start().await;
    let ipa = build_ipa("com.example.stats", "Stats", "3.0");
    let build = upload_to(&server, ipa.clone(), "default", "").await;
    let build_id = str_of(&build, "id");
    let client = fresh(&server);
    for _ in 0..2 {
        let page = client.get(str_of(&build, "install_url")).header("user-agent", SAFARI_IPHONE).send().await;
        assert_eq!(page.expect("page").status(), StatusCode::OK);
    }
    let manifest = client.get(str_of(&build, "manifest_url")).header("user-agent", INSTALLER_AGENT).send().await;
    assert_eq!(manifest.expect("manifest").status(), StatusCode::OK);
    let download_url = str_of(&build, "download_url");
    // A download cut short (the first half), then resumed (the rest): one start, one completion.
    let half = ipa.len() / 2;
    let first = client.get(download_url).header("range", format!("bytes=0-{}", half - 1)).send().await.expect("get");
    assert_eq!(first.status(), StatusCode::PARTIAL_CONTENT);
    first.bytes().await.expect("bytes");
    let rest = client.get(download_url).header("range", format!("bytes={half}-")).send().await.expect("get");
    assert_eq!(rest.status(), StatusCode::PARTIAL_CONTENT);
    rest.bytes().await.expect("bytes");
    // A zip reader's look at the end is neither a start nor a completion.
    let probe = client.get(download_url).header("range", "bytes=-22").send().await.expect("get");
    assert_eq!(probe.status(), StatusCode::PARTIAL_CONTENT);
    probe.bytes().await.expect("bytes");
    // A HEAD request is neither.
    assert_eq!(client.head(download_url).send().await.expect("head").status(), StatusCode::OK);
    let analytics = wait_for_completed(&server, build_id, 1).await;
    assert_eq!(
        analytics["total"],
        json!({"page_views": 2, "manifest_fetches": 1, "downloads_started": 1, "downloads_completed": 1})
    );
    assert_eq!(
        analytics["devices"],
        json!([{"device_model": "iPhone15,2", "model_name": "iPhone 14 Pro", "os_version": "18.2", "installs": 1}])
    );
    // A whole download in one response: a second start and completion.
    let whole = client.get(download_url).send().await.expect("get").bytes().await.expect("bytes");
    assert_eq!(whole.len(), ipa.len());
    let analytics = wait_for_completed(&server, build_id, 2).await;
    assert_eq!(analytics["total"]["downloads_started"], 2);

    // The build page shows them, for signed-in uploaders.
    let mut ui = UiClient::new(&server);
    ui.sign_in(&server.token).await;
    let html = ui.get(&format!("/builds/{build_id}")).await.text().await.expect("html");
    assert!(html.contains("id=\"page-views\">2<") && html.contains("id=\"downloads-completed\">2<"), "{html}");
    assert!(html.contains("iPhone 14 Pro (iPhone15,2)") && html.contains("iOS 18.2"), "{html}");
    let anonymous = fresh(&server).get(format!("{}/builds/{build_id}", server.base)).send().await.expect("page");
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_build_page_shows_ci_metadata_and_makes_and_revokes_links() {
    let server = Server::start().await;
    let query = "&meta=git_branch=feature/<x>&meta=git_commit=0123abc&meta=ci_run_url=https://ci.example.com/run/42\
                 &meta=evil=javascript:alert(1)&notes=Fixed%20%3Cscript%3Ealert(1)%3C/script%3E";
    let build = upload_to(&server, build_ipa("com.example.page", "Tom & Jerry <beta>", "1.0"), "qa", query).await;
    let build_id = str_of(&build, "id");
    let mut ui = UiClient::new(&server);
    ui.sign_in(&server.token).await;
    let html = ui.get(&format!("/builds/{build_id}")).await.text().await.expect("html");
    assert!(html.contains("Tom &#38; Jerry &#60;beta&#62;"), "the name is escaped");
    assert!(html.contains("<a href=\"https://ci.example.com/run/42\""), "the CI run is a link");
    assert!(html.contains("feature/&#60;x&#62;") && html.contains("0123abc"));
    assert!(!html.contains("href=\"javascript:"), "only web addresses become links");
    assert!(!html.contains("<script>alert(1)"), "notes are escaped");
    assert!(html.contains("id=\"channel-page\""));

    // A link from the form: CSRF-checked, then listed with its URL; revoked from the page.
    let csrf = ui.csrf().await;
    let refused = ui.post_form(&format!("/builds/{build_id}/links"), &[("csrf", "wrong"), ("label", "x")], None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let made = ui
        .post_form(
            &format!("/builds/{build_id}/links"),
            &[
                ("csrf", &csrf),
                ("label", "Client <review>"),
                ("password", "pw-123456"),
                ("expires_in_days", "7"),
                ("max_installs", "5"),
            ],
            None,
        )
        .await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let (_, links) = api(&server, reqwest::Method::GET, &format!("/api/v1/links?build_id={build_id}"), None).await;
    let link = links["links"][0].clone();
    assert_eq!(link["label"], "Client <review>");
    assert_eq!((link["password_protected"].clone(), link["max_installs"].clone()), (json!(true), json!(5)));
    let expires = OffsetDateTime::parse(str_of(&link, "expires_at"), &time::format_description::well_known::Rfc3339)
        .expect("time");
    assert!((expires - OffsetDateTime::now_utc()).whole_hours() >= 167);
    let html = ui.get(&format!("/builds/{build_id}")).await.text().await.expect("html");
    assert!(html.contains(str_of(&link, "url")) && html.contains("Client &#60;review&#62;"), "{html}");
    let bad =
        ui.post_form(&format!("/builds/{build_id}/links"), &[("csrf", &csrf), ("expires_in_days", "soon")], None).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let revoked = ui.post_form(&format!("/links/{}/revoke", str_of(&link, "id")), &[("csrf", &csrf)], None).await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let page = fresh(&server).get(str_of(&link, "url")).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::GONE);

    // The channels page: the stable page of each channel, and channel links.
    let made =
        ui.post_form("/apps/com.example.page/channels/qa/links", &[("csrf", &csrf), ("label", "QA crew")], None).await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let html = ui.get("/apps/com.example.page/channels").await.text().await.expect("html");
    assert!(html.contains("class=\"channel-page\">") && html.contains("QA crew"), "{html}");
}

#[tokio::test]
async fn wrong_link_passwords_are_rate_limited() {
    let server = Server::start().await;
    let build = upload_to(&server, build_ipa("com.example.guess", "Guess", "1.0"), "default", "").await;
    let link = create_link(&server, str_of(&build, "id"), json!({"password": "the right one"})).await;
    let url = str_of(&link, "url");
    let mut statuses = Vec::new();
    for attempt in 0..7 {
        let response = fresh(&server).post(url).form(&[("password", format!("guess {attempt}"))]).send().await;
        statuses.push(response.expect("post").status());
    }
    assert_eq!(&statuses[..5], &[StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(&statuses[5..], &[StatusCode::TOO_MANY_REQUESTS; 2]);
    // Even the right password waits now: a guesser cannot tell it found it.
    let right = fresh(&server).post(url).form(&[("password", "the right one")]).send().await.expect("post");
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(right.headers().contains_key("retry-after"));
    assert!(right.headers().get("set-cookie").is_none());
}
