//! The server end to end over HTTP on loopback, with the real fixtures: upload, the JSON, the
//! install page's link parsed back to the manifest URL, the manifest as a plist, downloads
//! with ranges, refusals that leave nothing behind, and tokens.

use otaship_ipa::builder::{IpaBuilder, profile_plist};
use otaship_server::storage::{BlobKey, BlobKind};
use otaship_server::{AppState, Config, ServeArgs, tokens};
use reqwest::StatusCode;
use serde_json::Value;

use crate::backends;
use crate::support::{FIXTURES, Server, fixture_files, install_href, manifest_url_of};

#[tokio::test]
async fn every_fixture_uploads_or_is_refused_cleanly() {
    let mut server = Server::start().await;
    let client = server.client();
    let mut accepted = 0;
    for path in fixture_files() {
        let bytes = std::fs::read(&path).expect("read");
        let response = server.upload(bytes.clone()).await;
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
        let expected_refusal = [
            ("fastlane-not-an-ipa.ipa", "not-a-zip"),
            ("fastlane-no-app-bundle.ipa", "ipa-no-app-bundle"),
            ("isign-NotAnApp.ipa", "ipa-no-payload"),
            ("IPAParser-Flat.ipa", "ipa-no-payload"),
            ("fastlane-ContainsWatchApp.ipa", "ipa-no-payload"),
        ]
        .iter()
        .find(|(file, _)| *file == name);
        if let Some((_, code)) = expected_refusal {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
            assert_eq!(body["error"]["code"], *code, "{name}");
            assert!(body["error"]["message"].as_str().is_some_and(|text| !text.is_empty()));
            continue;
        }
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        accepted += 1;
        for field in [
            "id",
            "bundle_id",
            "name",
            "version",
            "build",
            "size",
            "sha256",
            "created_at",
            "notes",
            "profile",
            "installable",
            "install_url",
            "manifest_url",
            "download_url",
            "icon_url",
        ] {
            assert!(body.get(field).is_some(), "{name}: missing {field}");
        }
        assert_eq!(body["size"], bytes.len());

        // The install page: its link leads exactly to manifest_url (when it offers one).
        let page = client.get(body["install_url"].as_str().expect("url")).send().await.expect("page");
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.expect("html");
        let installable = body["installable"]["ok"].as_bool().expect("ok");
        match install_href(&html) {
            Some(link) => {
                assert!(installable, "{name}: an uninstallable build offers no button");
                assert_eq!(manifest_url_of(&link), body["manifest_url"].as_str().expect("url"), "{name}");
            }
            None => {
                assert!(!installable, "{name}: an installable build offers a button");
                assert!(html.contains("This build cannot be installed."), "{name}");
            }
        }

        // The manifest, parsed as a plist.
        let response = client.get(body["manifest_url"].as_str().expect("url")).send().await.expect("manifest");
        assert_eq!(response.headers()["content-type"], "text/xml; charset=utf-8");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let manifest = plist::Value::from_reader_xml(response.bytes().await.expect("body").as_ref()).expect("plist");
        let item = &manifest.as_dictionary().expect("dict")["items"].as_array().expect("items")[0];
        let metadata = item.as_dictionary().expect("item")["metadata"].as_dictionary().expect("metadata");
        assert_eq!(metadata["bundle-identifier"].as_string(), body["bundle_id"].as_str());
        assert_eq!(metadata["kind"].as_string(), Some("software"));
        let assets = item.as_dictionary().expect("item")["assets"].as_array().expect("assets");
        let asset_url = |kind: &str| {
            assets.iter().find_map(|asset| {
                let asset = asset.as_dictionary()?;
                (asset["kind"].as_string() == Some(kind)).then(|| asset["url"].as_string().map(str::to_owned))?
            })
        };
        assert_eq!(asset_url("software-package").as_deref(), body["download_url"].as_str());
        assert_eq!(asset_url("display-image").as_deref(), body["icon_url"].as_str());

        // The download is byte-identical, uncompressed, with a length.
        let response = client
            .get(body["download_url"].as_str().expect("url"))
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .expect("download");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("content-encoding").is_none());
        assert_eq!(response.headers()["content-length"], bytes.len().to_string().as_str());
        assert_eq!(response.headers()["accept-ranges"], "bytes");
        assert_eq!(response.bytes().await.expect("body").as_ref(), bytes.as_slice(), "{name}");

        if let Some(icon_url) = body["icon_url"].as_str() {
            let png = client.get(icon_url).send().await.expect("icon").bytes().await.expect("body");
            assert_eq!(&png[12..16], b"IHDR", "{name}: the icon is a standard PNG");
        }
    }
    assert_eq!(accepted, 18);
    assert!(server.files_under("tmp").is_empty(), "no temporary file remains");
    assert_eq!(server.blob_keys().await.iter().filter(|key| key.ends_with("app.ipa")).count(), 18);
    server.stop().await;
}

#[tokio::test]
async fn downloads_honour_ranges_head_and_etags() {
    let mut server = Server::start().await;
    let bytes = std::fs::read(format!("{FIXTURES}run_loop-CalSmoke.ipa")).expect("fixture");
    let body: Value = server.upload(bytes.clone()).await.json().await.expect("JSON");
    let url = body["download_url"].as_str().expect("url").to_owned();
    let client = server.client();

    let head = client.head(&url).send().await.expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], bytes.len().to_string().as_str());
    assert_eq!(head.headers()["content-type"], "application/octet-stream");
    let disposition = head.headers()["content-disposition"].to_str().expect("ascii");
    assert!(disposition.starts_with("attachment; filename=\"CalSmoke-0.20.4-0.20.4.ipa\""), "{disposition}");
    let etag = head.headers()["etag"].to_str().expect("ascii").to_owned();
    assert_eq!(etag, format!("\"{}\"", body["sha256"].as_str().expect("sha")));

    for (range, start, end) in [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, bytes.len() - 1),
        ("bytes=-512", bytes.len() - 512, bytes.len() - 1),
    ] {
        let response = client.get(&url).header("range", range).send().await.expect("range");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(response.headers()["content-range"], format!("bytes {start}-{end}/{}", bytes.len()).as_str());
        assert_eq!(response.bytes().await.expect("body").as_ref(), &bytes[start..=end], "{range}");
    }
    let response = client.get(&url).header("range", format!("bytes={}-", bytes.len())).send().await.expect("range");
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let response = client.get(&url).header("if-none-match", &etag).send().await.expect("conditional");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response =
        client.get(&url).header("range", "bytes=0-9").header("if-range", "\"stale\"").send().await.expect("if-range");
    assert_eq!(response.status(), StatusCode::OK, "a stale If-Range gets the whole file");
    server.stop().await;
}

#[tokio::test]
async fn names_and_notes_survive_escaping_everywhere() {
    let mut server = Server::start().await;
    let far = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(4_102_444_800);
    let name = "Tom & Jerry <beta> \"quoted\"";
    let ipa = IpaBuilder::new("com.example.tom")
        .info("CFBundleDisplayName", name)
        .profile(profile_plist("TEAM.com.example.tom", Some(&["00008030-001544522E60802E"]), false, false, far))
        .to_bytes();
    let body = server.upload_with_notes(ipa, "<script>alert(1)</script> & fixes").await;
    assert_eq!(body["name"], name);
    assert_eq!(body["notes"], "<script>alert(1)</script> & fixes");
    assert_eq!(body["installable"]["ok"], true, "{body}");
    let html = server
        .client()
        .get(body["install_url"].as_str().expect("url"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("Tom &amp; Jerry &lt;beta&gt; &quot;quoted&quot;")
            || html.contains("Tom &#38; Jerry &#60;beta&#62; &#34;quoted&#34;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(!html.contains("<beta>"));
    let manifest = server
        .client()
        .get(body["manifest_url"].as_str().expect("url"))
        .send()
        .await
        .expect("manifest")
        .bytes()
        .await
        .expect("body");
    let manifest = plist::Value::from_reader_xml(manifest.as_ref()).expect("plist");
    let title = manifest
        .as_dictionary()
        .and_then(|root| root["items"].as_array())
        .and_then(|items| items[0].as_dictionary())
        .and_then(|item| item["metadata"].as_dictionary())
        .and_then(|metadata| metadata["title"].as_string())
        .map(str::to_owned);
    assert_eq!(title.as_deref(), Some(name));
    server.stop().await;
}

#[tokio::test]
async fn the_api_refuses_missing_wrong_and_revoked_tokens() {
    let mut server = Server::start().await;
    let client = server.client();
    let bytes = std::fs::read(format!("{FIXTURES}sentry-cli-ipa.ipa")).expect("fixture");
    let url = format!("{}/api/v1/builds", server.base);
    let missing = client.post(&url).body(bytes.clone()).send().await.expect("request");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let body: Value = missing.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = client.post(&url).bearer_auth("ots_wrong").body(bytes.clone()).send().await.expect("request");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    for path in ["/api/v1/apps", "/api/v1/builds/00", "/api/v1/apps/x/builds"] {
        let response = client.get(format!("{}{path}", server.base)).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let token = tokens::generate();
    server.state.db.insert_token("revokeme", "test", &tokens::hash(&token)).await.expect("insert");
    let ok = client.get(format!("{}/api/v1/apps", server.base)).bearer_auth(&token).send().await.expect("request");
    assert_eq!(ok.status(), StatusCode::OK);
    server.state.db.revoke_token("revokeme").await.expect("revoke");
    let revoked = client.get(format!("{}/api/v1/apps", server.base)).bearer_auth(&token).send().await.expect("request");
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
    assert!(server.blob_keys().await.is_empty(), "nothing was stored");
    server.stop().await;
}

#[tokio::test]
async fn bad_and_oversized_uploads_leave_nothing_behind() {
    let mut server =
        Server::start_with(ServeArgs { max_upload_size: Some("100KB".into()), ..ServeArgs::default() }).await;
    let large = std::fs::read(format!("{FIXTURES}run_loop-CalSmoke.ipa")).expect("fixture");
    let response = server.upload(large).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "upload-too-large");
    let response = server.upload(b"not an ipa at all".to_vec()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = server.upload(Vec::new()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(server.files_under("tmp").is_empty());
    assert!(server.blob_keys().await.is_empty());
    let apps: Value = server.api_json("/api/v1/apps", &[]).await;
    assert_eq!(apps["apps"].as_array().map(Vec::len), Some(0));
    server.stop().await;
}

#[tokio::test]
async fn apps_builds_and_deletion() {
    let mut server = Server::start().await;
    let client = server.client();
    let mut ids = Vec::new();
    for version in ["1", "2", "3"] {
        let ipa = IpaBuilder::new("com.example.paged").info("CFBundleVersion", version).to_bytes();
        let body: Value = server.upload(ipa).await.json().await.expect("JSON");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    let other: Value = server.upload(IpaBuilder::new("com.example.other").to_bytes()).await.json().await.expect("JSON");
    let apps: Value = server.api_json("/api/v1/apps", &[]).await;
    let apps = apps["apps"].as_array().expect("apps").clone();
    assert_eq!(apps.len(), 2);
    let paged = apps.iter().find(|app| app["bundle_id"] == "com.example.paged").expect("paged app");
    assert_eq!(paged["build_count"], 3);
    assert_eq!(paged["latest_build"]["build"], "3");
    let page: Value = server.api_json("/api/v1/apps/com.example.paged/builds?page=2&per_page=2", &[]).await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["builds"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["builds"][0]["build"], "1", "newest first: page 2 holds the oldest");

    let fetched: Value = server.api_json(&format!("/api/v1/builds/{}", ids[0]), &[]).await;
    assert_eq!(fetched["build"], "1");
    let install_url = fetched["install_url"].as_str().expect("url").to_owned();
    let deleted = client
        .delete(format!("{}/api/v1/builds/{}", server.base, ids[0]))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(client.get(&install_url).send().await.expect("page").status(), StatusCode::NOT_FOUND);
    assert_eq!(client.get(format!("{install_url}/app.ipa")).send().await.expect("ipa").status(), StatusCode::NOT_FOUND);
    assert!(!server.blob_keys().await.iter().any(|key| key.contains(&ids[0])), "its files are gone");
    let again = client
        .delete(format!("{}/api/v1/builds/{}", server.base, ids[0]))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert!(other["id"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn public_url_and_proxy_headers_decide_absolute_urls() {
    let mut direct = Server::start().await;
    let body: Value = direct.upload(IpaBuilder::new("com.example.url").to_bytes()).await.json().await.expect("JSON");
    assert!(body["manifest_url"].as_str().expect("url").starts_with(&direct.base));
    // Without --trust-proxy, forwarded headers are ignored.
    let path = format!("/api/v1/builds/{}", body["id"].as_str().expect("id"));
    let ignored = direct.api_json(&path, &[("x-forwarded-proto", "https"), ("x-forwarded-host", "evil.example")]).await;
    assert!(ignored["manifest_url"].as_str().expect("url").starts_with(&direct.base));
    direct.stop().await;

    let mut proxied = Server::start_with(ServeArgs { trust_proxy: Some(true), ..ServeArgs::default() }).await;
    let body: Value = proxied.upload(IpaBuilder::new("com.example.url").to_bytes()).await.json().await.expect("JSON");
    let path = format!("/api/v1/builds/{}", body["id"].as_str().expect("id"));
    let forwarded =
        proxied.api_json(&path, &[("x-forwarded-proto", "https"), ("x-forwarded-host", "ota.example.com")]).await;
    assert!(forwarded["manifest_url"].as_str().expect("url").starts_with("https://ota.example.com/i/"));
    proxied.stop().await;

    let mut public =
        Server::start_with(ServeArgs { public_url: Some("https://ota.example.net/".into()), ..ServeArgs::default() })
            .await;
    let body: Value = public.upload(IpaBuilder::new("com.example.url").to_bytes()).await.json().await.expect("JSON");
    assert!(body["download_url"].as_str().expect("url").starts_with("https://ota.example.net/i/"));
    public.stop().await;
}

#[tokio::test]
async fn a_restart_removes_what_a_crash_left_behind() {
    let mut server = Server::start().await;
    let kept: Value = server.upload(IpaBuilder::new("com.example.kept").to_bytes()).await.json().await.expect("JSON");
    let kept_id = kept["id"].as_str().expect("id").to_owned();
    server.stop().await;
    let data = server.data_dir.path().to_owned();
    std::fs::write(data.join("tmp/upload-interrupted.part"), b"half an upload").expect("write");
    let orphan = "00112233445566778899aabbccddeeff";
    let young_orphan = "ffeeddccbbaa99887766554433221100";
    for id in [orphan, young_orphan] {
        server.state.storage.put_bytes(&BlobKey::new(id, BlobKind::Ipa), b"never recorded").await.expect("write");
    }
    let shared = !server.state.storage.is_local();
    if shared {
        // On shared storage a blob without a build may be another instance's upload in
        // progress: only old ones are left overs. Age one (s3s-fs keeps objects as files).
        let bucket_dir = backends::s3()
            .root
            .join(server.args.storage.as_deref().and_then(|url| url.strip_prefix("s3://")).expect("s3 URL"));
        let file = bucket_dir.join(format!("builds/{orphan}/app.ipa"));
        let touched =
            std::process::Command::new("touch").arg("-d").arg("2 hours ago").arg(&file).status().expect("touch");
        assert!(touched.success(), "{}", file.display());
    }
    let state = AppState::open(Config::load(&server.restart_args()).expect("config")).await.expect("reopen");
    assert!(!data.join("tmp/upload-interrupted.part").exists());
    let blobs = server.blob_keys().await;
    assert!(!blobs.iter().any(|key| key.contains(orphan)), "{blobs:?}");
    assert_eq!(blobs.iter().any(|key| key.contains(young_orphan)), shared, "{blobs:?}");
    assert!(blobs.contains(&format!("builds/{kept_id}/app.ipa")), "{blobs:?}");
    assert!(state.db.integrity_ok().await.expect("check"));
}
