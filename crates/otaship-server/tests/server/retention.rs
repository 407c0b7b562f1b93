//! Retention over HTTP: rules set and removed through the API and the Storage page, dry runs
//! that list exactly what a real run then deletes (rows, files, install pages), the newest
//! build of every channel surviving every combination of rules, the guard that keeps a
//! channel's newest build even against a stale plan, runs on two instances at once, the
//! background run, and the page's disk use.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use otaship_ipa::builder::IpaBuilder;
use otaship_server::ServeArgs;
use otaship_server::db::{BuildRow, Recorded};
use otaship_server::storage::{BlobKey, BlobKind};
use otaship_server::tokens::random_hex;
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::backends;
use crate::support::{Server, UiClient};
use crate::uploads::{status_and_json, str_of};

/// A server whose rules run only on demand, so that nothing deletes behind a test's back.
async fn start() -> Server {
    Server::start_with(ServeArgs { retention_interval: Some("off".into()), ..ServeArgs::default() }).await
}

fn ipa(bundle_id: &str, version: &str, build: &str) -> Vec<u8> {
    IpaBuilder::new(bundle_id).info("CFBundleShortVersionString", version).info("CFBundleVersion", build).to_bytes()
}

/// Uploads to a channel; returns the build's JSON.
async fn upload_to(server: &Server, bytes: Vec<u8>, channel: &str) -> Value {
    let response = server
        .client()
        .post(format!("{}/api/v1/builds?channel={channel}", server.base))
        .bearer_auth(&server.token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let (status, build) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{build}");
    assert_eq!(build["channel"], channel);
    build
}

async fn put_rule(server: &Server, app: &str, body: &Value) -> (StatusCode, Value) {
    let response = server
        .client()
        .put(format!("{}/api/v1/apps/{app}/retention", server.base))
        .bearer_auth(&server.token)
        .json(body)
        .send()
        .await
        .expect("PUT");
    status_and_json(response).await
}

async fn delete_rule(server: &Server, app: &str, channel: Option<&str>) -> StatusCode {
    let query = channel.map(|channel| format!("?channel={channel}")).unwrap_or_default();
    server
        .client()
        .delete(format!("{}/api/v1/apps/{app}/retention{query}", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("DELETE")
        .status()
}

async fn run(server: &Server, dry_run: bool) -> Value {
    let response = server
        .client()
        .post(format!("{}/api/v1/retention/run?dry_run={dry_run}", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("run");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dry_run"], dry_run, "{body}");
    body
}

fn run_ids(run: &Value) -> Vec<String> {
    run["builds"].as_array().expect("builds").iter().map(|build| str_of(build, "id").to_owned()).collect()
}

async fn build_status(server: &Server, id: &str) -> StatusCode {
    server
        .client()
        .get(format!("{}/api/v1/builds/{id}", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("GET")
        .status()
}

async fn has_blobs(server: &Server, id: &str) -> bool {
    server.blob_keys().await.iter().any(|key| key.contains(id))
}

/// Ids of an app's builds, newest first.
async fn build_ids(server: &Server, app: &str) -> Vec<String> {
    let page = server.api_json(&format!("/api/v1/apps/{app}/builds?per_page=100"), &[]).await;
    page["builds"]
        .as_array()
        .map_or_else(Vec::new, |builds| builds.iter().map(|build| str_of(build, "id").to_owned()).collect())
}

#[tokio::test]
async fn keep_last_on_a_channel_removes_exactly_its_oldest_builds_after_a_dry_run_that_deletes_nothing() {
    let mut server = start().await;
    let app = "com.example.retained";
    let mut beta = Vec::new();
    for number in 1..=5 {
        beta.push(upload_to(&server, ipa(app, "1.0", &number.to_string()), "beta").await);
    }
    let times: Vec<&str> = beta.iter().map(|build| str_of(build, "created_at")).collect();
    assert!(times.windows(2).all(|pair| pair[0] < pair[1]), "uploads are ordered in time: {times:?}");
    let only_default = upload_to(&server, ipa(app, "1.0", "99"), "default").await;
    let other_app = [
        upload_to(&server, ipa("com.example.untouched", "1.0", "1"), "beta").await,
        upload_to(&server, ipa("com.example.untouched", "1.0", "2"), "beta").await,
    ];

    let (status, rule) = put_rule(&server, app, &json!({"channel": "Beta", "keep_last": 2})).await;
    assert_eq!(status, StatusCode::OK, "{rule}");
    assert_eq!(rule["channel"], "beta", "channels are lower-cased like uploads'");
    assert_eq!(rule["keep_last"], 2);
    assert_eq!(rule["max_age_days"], Value::Null);
    // An app-wide rule that would keep one build per channel, and a max age: the only build of
    // `default` stays all the same.
    let (status, wide) = put_rule(&server, app, &json!({"keep_last": 1, "max_age_days": 1})).await;
    assert_eq!(status, StatusCode::OK, "{wide}");
    assert_eq!(wide["channel"], Value::Null);
    let rules = server.api_json("/api/v1/retention", &[]).await;
    assert_eq!(rules["rules"].as_array().map(Vec::len), Some(2), "{rules}");
    assert_eq!(rules["rules"][0]["channel"], Value::Null, "the app-wide rule first: {rules}");
    assert_eq!(rules["rules"][1]["channel"], "beta");

    let oldest_three: Vec<String> = beta[..3].iter().rev().map(|build| str_of(build, "id").to_owned()).collect();
    let preview = run(&server, true).await;
    assert_eq!(run_ids(&preview), oldest_three, "newest first: {preview}");
    for build in preview["builds"].as_array().expect("builds") {
        assert_eq!(build["reason"], "beyond the newest 2 of beta", "{build}");
        assert_eq!(build["bundle_id"], app);
        assert_eq!(build["channel"], "beta");
        assert_eq!(build["version"], "1.0");
    }
    let sizes: u64 = beta[..3].iter().map(|build| build["size"].as_u64().expect("size")).sum();
    assert_eq!(preview["bytes_freed"], sizes);
    // The dry run deleted nothing.
    assert_eq!(build_ids(&server, app).await.len(), 6);
    for build in &beta {
        assert!(has_blobs(&server, str_of(build, "id")).await);
    }
    assert_eq!(run_ids(&run(&server, true).await), oldest_three, "a dry run is repeatable");

    let applied = run(&server, false).await;
    assert_eq!(run_ids(&applied), oldest_three, "the run deletes exactly what the dry run listed");
    assert_eq!(applied["bytes_freed"], sizes);
    for build in &beta[..3] {
        let id = str_of(build, "id");
        assert_eq!(build_status(&server, id).await, StatusCode::NOT_FOUND);
        assert!(!has_blobs(&server, id).await, "the files of {id} are gone");
        let page = server.client().get(str_of(build, "install_url")).send().await.expect("page");
        assert_eq!(page.status(), StatusCode::NOT_FOUND, "its install page is gone");
        let download = server.client().get(str_of(build, "download_url")).send().await.expect("download");
        assert_eq!(download.status(), StatusCode::NOT_FOUND);
    }
    for build in beta[3..].iter().chain([&only_default]).chain(&other_app) {
        let id = str_of(build, "id");
        assert_eq!(build_status(&server, id).await, StatusCode::OK, "{id} stays");
        assert!(has_blobs(&server, id).await);
        let page = server.client().get(str_of(build, "install_url")).send().await.expect("page");
        assert_eq!(page.status(), StatusCode::OK);
    }
    let remaining = build_ids(&server, app).await;
    assert_eq!(remaining, [str_of(&only_default, "id"), str_of(&beta[4], "id"), str_of(&beta[3], "id")]);
    assert_eq!(run_ids(&run(&server, false).await), Vec::<String>::new(), "nothing more to do");
    server.stop().await;
}

#[tokio::test]
async fn rules_are_checked_and_removed_and_need_a_token() {
    let mut server = start().await;
    let app = "com.example.rules";
    upload_to(&server, ipa(app, "1.0", "1"), "default").await;
    for (body, code) in [
        (json!({}), "empty-retention-rule"),
        (json!({"channel": "beta"}), "empty-retention-rule"),
        (json!({"keep_last": null, "max_age_days": null}), "empty-retention-rule"),
        (json!({"keep_last": 0}), "bad-retention-rule"),
        (json!({"keep_last": -3}), "bad-retention-rule"),
        (json!({"max_age_days": 0}), "bad-retention-rule"),
        (json!({"max_age_days": 40_000}), "bad-retention-rule"),
        (json!({"keep_last": 1, "channel": "no spaces!"}), "bad-channel"),
        (json!({"keep_last": "five"}), "bad-json"),
        (json!({"keep_last": 1, "keep": 2}), "bad-json"),
    ] {
        let (status, error) = put_rule(&server, app, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        assert!(error["error"]["message"].as_str().is_some_and(|text| text.len() > 20), "{error}");
    }
    let (status, error) = put_rule(&server, "com.example.nothing", &json!({"keep_last": 1})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(server.api_json("/api/v1/retention", &[]).await, json!({"rules": []}), "nothing refused was stored");

    // Setting again replaces; the channel's rule and the app's are separate.
    put_rule(&server, app, &json!({"keep_last": 3})).await;
    let (_, replaced) = put_rule(&server, app, &json!({"max_age_days": 30})).await;
    assert_eq!((replaced["keep_last"].clone(), replaced["max_age_days"].clone()), (Value::Null, json!(30)));
    put_rule(&server, app, &json!({"channel": "beta", "keep_last": 5})).await;
    assert_eq!(server.api_json("/api/v1/retention", &[]).await["rules"].as_array().map(Vec::len), Some(2));
    assert_eq!(delete_rule(&server, app, Some("nightly")).await, StatusCode::NOT_FOUND);
    assert_eq!(delete_rule(&server, app, Some("BETA")).await, StatusCode::NO_CONTENT);
    assert_eq!(delete_rule(&server, app, Some("beta")).await, StatusCode::NOT_FOUND);
    assert_eq!(delete_rule(&server, app, None).await, StatusCode::NO_CONTENT);
    assert_eq!(server.api_json("/api/v1/retention", &[]).await, json!({"rules": []}));

    let bad = server
        .client()
        .post(format!("{}/api/v1/retention/run?dry_run=maybe", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("run");
    let (status, error) = status_and_json(bad).await;
    assert_eq!((status, error["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("bad-dry-run")));
    let default = server
        .client()
        .post(format!("{}/api/v1/retention/run", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("run");
    assert_eq!(default.json::<Value>().await.expect("JSON")["dry_run"], true, "without dry_run, only a preview");

    let anonymous = server.client();
    let base = &server.base;
    for request in [
        anonymous.get(format!("{base}/api/v1/retention")),
        anonymous.put(format!("{base}/api/v1/apps/{app}/retention")).json(&json!({"keep_last": 1})),
        anonymous.delete(format!("{base}/api/v1/apps/{app}/retention")),
        anonymous.post(format!("{base}/api/v1/retention/run?dry_run=false")),
        anonymous.post(format!("{base}/api/v1/retention/run")).bearer_auth("ots_not_a_token"),
    ] {
        let (status, error) = status_and_json(request.send().await.expect("request")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
    }
    assert_eq!(server.api_json("/api/v1/retention", &[]).await, json!({"rules": []}));
    server.stop().await;
}

/// A build recorded as uploaded `age` ago, with a stored file: uploads are always "now".
async fn insert_aged(server: &Server, app: &str, channel: &str, age: time::Duration) -> BuildRow {
    let id = random_hex(16);
    let row = BuildRow {
        install_token: random_hex(16),
        bundle_id: app.to_owned(),
        name: Some("Aged".to_owned()),
        version: Some("1.0".to_owned()),
        build: Some(format!("{}h", age.whole_hours())),
        size: u64::try_from(format!("the .ipa of {id}").len()).expect("size"),
        sha256: random_hex(32),
        notes: None,
        channel: channel.to_owned(),
        metadata: BTreeMap::new(),
        created_at: OffsetDateTime::now_utc() - age,
        has_icon: false,
        report: "{}".to_owned(),
        id,
    };
    restore(server, &row).await;
    row
}

/// Records a build (again) with its file.
async fn restore(server: &Server, row: &BuildRow) {
    let bytes = format!("the .ipa of {}", row.id).into_bytes();
    server.state.storage.put_bytes(&BlobKey::new(&row.id, BlobKind::Ipa), &bytes).await.expect("blob");
    assert!(matches!(server.state.db.insert_build(row).await.expect("insert"), Recorded::Inserted));
}

/// A rule as the tests write it: channel (`""` for every channel), keep_last, max_age_days.
type Rule<'a> = (&'a str, Option<u32>, Option<u32>);

/// What the rules doom, by a model written independently of the server's.
fn model(rules: &[Rule<'_>], builds: &[BuildRow], now: OffsetDateTime, app: &str) -> BTreeSet<String> {
    let mut doomed = BTreeSet::new();
    let channels: BTreeSet<&str> = builds.iter().map(|build| build.channel.as_str()).collect();
    for channel in channels {
        let rule = rules.iter().find(|rule| rule.0 == channel).or_else(|| rules.iter().find(|rule| rule.0.is_empty()));
        let Some(&(_, keep, days)) = rule else { continue };
        let mut members: Vec<&BuildRow> =
            builds.iter().filter(|build| build.channel == channel && build.bundle_id == app).collect();
        members.sort_by_key(|build| std::cmp::Reverse(build.created_at));
        for (index, build) in members.iter().enumerate().skip(1) {
            let beyond = keep.is_some_and(|keep| index >= keep as usize);
            let old = days.is_some_and(|days| build.created_at < now - time::Duration::days(i64::from(days)));
            if beyond || old {
                doomed.insert(build.id.clone());
            }
        }
    }
    doomed
}

#[tokio::test]
async fn the_newest_build_of_each_channel_survives_every_rule() {
    let mut server = start().await;
    let app = "com.example.property";
    let hours = |hours: i64| time::Duration::hours(hours);
    // Ages half a day away from every limit the rules use, so that none is crossed mid-test.
    let mut builds = Vec::new();
    for (channel, ages) in
        [("beta", &[12, 132, 492, 972][..]), ("default", &[2412][..]), ("nightly", &[732, 972, 1212][..])]
    {
        for age in ages {
            builds.push(insert_aged(&server, app, channel, hours(*age)).await);
        }
    }
    let others = [
        insert_aged(&server, "com.example.norules", "beta", hours(2412)).await,
        insert_aged(&server, "com.example.norules", "beta", hours(4812)).await,
    ];
    let newest: Vec<&str> = ["beta", "default", "nightly"]
        .iter()
        .map(|channel| {
            builds
                .iter()
                .filter(|build| build.channel == *channel)
                .max_by_key(|build| build.created_at)
                .map(|build| build.id.as_str())
                .expect("a build")
        })
        .collect();
    let counts = [None, Some(1), Some(2), Some(3)];
    let ages = [None, Some(1), Some(15), Some(45)];
    let overrides: [Option<Rule>; 4] =
        [None, Some(("beta", Some(3), None)), Some(("nightly", None, Some(45))), Some(("default", Some(1), Some(1)))];
    let mut combination = 0;
    let mut deleted_somewhere = 0;
    for keep in counts {
        for days in ages {
            if keep.is_none() && days.is_none() {
                continue;
            }
            combination += 1;
            let mut rules = vec![("", keep, days)];
            rules.extend(overrides[combination % overrides.len()]);
            for (channel, keep, days) in &rules {
                let body = json!({"channel": channel, "keep_last": keep, "max_age_days": days});
                let (status, rule) = put_rule(&server, app, &body).await;
                assert_eq!(status, StatusCode::OK, "{rule}");
            }
            let expected = model(&rules, &builds, OffsetDateTime::now_utc(), app);
            let preview = run(&server, true).await;
            let listed: BTreeSet<String> = run_ids(&preview).into_iter().collect();
            assert_eq!(listed, expected, "{rules:?}: {preview}");
            assert_eq!(build_ids(&server, app).await.len(), builds.len(), "{rules:?}: the dry run deleted nothing");

            let applied = run(&server, false).await;
            assert_eq!(run_ids(&applied), run_ids(&preview), "{rules:?}: the run deleted what the dry run listed");
            assert_eq!(applied["bytes_freed"], preview["bytes_freed"]);
            let remaining = build_ids(&server, app).await;
            for id in &newest {
                assert!(remaining.iter().any(|kept| kept == id), "{rules:?} removed the newest build {id}");
            }
            for build in &builds {
                let kept = remaining.contains(&build.id);
                assert_eq!(kept, !expected.contains(&build.id), "{rules:?}: {}", build.id);
                assert_eq!(has_blobs(&server, &build.id).await, kept, "{rules:?}: the files follow the row");
            }
            assert_eq!(build_ids(&server, "com.example.norules").await.len(), others.len());
            deleted_somewhere += expected.len();

            // Back to the same builds and no rules for the next combination.
            for build in builds.iter().filter(|build| expected.contains(&build.id)) {
                restore(&server, build).await;
            }
            assert_eq!(delete_rule(&server, app, None).await, StatusCode::NO_CONTENT);
            if let Some((channel, _, _)) = rules.get(1) {
                assert_eq!(delete_rule(&server, app, Some(channel)).await, StatusCode::NO_CONTENT);
            }
        }
    }
    assert_eq!(combination, 15);
    assert!(deleted_somewhere > 0, "the combinations removed builds");
    server.stop().await;
}

#[tokio::test]
async fn a_build_that_became_the_newest_of_its_channel_is_never_deleted() {
    let mut server = start().await;
    let app = "com.example.guard";
    let older = upload_to(&server, ipa(app, "1.0", "1"), "beta").await;
    let newer = upload_to(&server, ipa(app, "1.0", "2"), "beta").await;
    let (older, newer) = (str_of(&older, "id").to_owned(), str_of(&newer, "id").to_owned());
    put_rule(&server, app, &json!({"channel": "beta", "keep_last": 1})).await;
    assert_eq!(run_ids(&run(&server, true).await), std::slice::from_ref(&older));

    // A plan made now is stale once the newer build is deleted by hand: the delete statement
    // itself refuses, as it would for a run on another instance.
    let db = &server.state.db;
    assert!(db.delete_build_unless_latest(&newer).await.expect("delete").is_none(), "the newest stays");
    let response = server
        .client()
        .delete(format!("{}/api/v1/builds/{newer}", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(db.delete_build_unless_latest(&older).await.expect("delete").is_none(), "now the newest, it stays");
    assert_eq!(build_status(&server, &older).await, StatusCode::OK);
    assert!(has_blobs(&server, &older).await);
    assert_eq!(run_ids(&run(&server, false).await), Vec::<String>::new());

    // A newer upload in the same channel makes it removable; one in another channel does not.
    let other_channel = upload_to(&server, ipa(app, "1.0", "3"), "nightly").await;
    assert!(db.delete_build_unless_latest(&older).await.expect("delete").is_none());
    let newest = upload_to(&server, ipa(app, "1.0", "4"), "beta").await;
    let deleted = db.delete_build_unless_latest(&older).await.expect("delete").expect("deleted");
    assert_eq!(deleted.id, older);
    assert_eq!(build_ids(&server, app).await, [str_of(&newest, "id"), str_of(&other_channel, "id")]);
    server.stop().await;
}

#[tokio::test]
async fn two_instances_applying_at_once_remove_each_build_once_and_keep_the_newest() {
    let mut shared = ServeArgs { retention_interval: Some("off".into()), ..ServeArgs::default() };
    backends::use_postgres_s3(&mut shared).await;
    let (mut a, mut b) = tokio::join!(Server::start_exactly(shared.clone()), Server::start_exactly(shared));
    let app = "com.example.cluster";
    let mut uploaded = Vec::new();
    for number in 1..=8 {
        uploaded.push(str_of(&upload_to(&a, ipa(app, "1.0", &number.to_string()), "beta").await, "id").to_owned());
    }
    put_rule(&a, app, &json!({"keep_last": 1})).await;
    let (from_a, from_b, late) = tokio::join!(
        otaship_server::retention::apply(&a.state),
        otaship_server::retention::apply(&b.state),
        upload_to(&b, ipa(app, "1.0", "9"), "beta"),
    );
    let (from_a, from_b) = (from_a.expect("apply"), from_b.expect("apply"));
    let removed: Vec<&str> = from_a.iter().chain(&from_b).map(|doomed| doomed.build.id.as_str()).collect();
    let unique: BTreeSet<&str> = removed.iter().copied().collect();
    assert_eq!(unique.len(), removed.len(), "no build was removed twice: {removed:?}");
    assert!(unique.iter().all(|id| uploaded.iter().any(|old| old == id)), "only older builds: {removed:?}");
    let late = str_of(&late, "id").to_owned();
    let remaining = build_ids(&a, app).await;
    assert!(remaining.contains(&late), "the newest build stays: {remaining:?}");
    // What a run before the late upload kept (the eighth) may stay until the next run.
    assert_eq!(run_ids(&run(&b, false).await).len() + 1, remaining.len());
    assert_eq!(build_ids(&a, app).await, [late]);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn every_instance_applies_the_rules_in_the_background() {
    let mut server =
        Server::start_with(ServeArgs { retention_interval: Some("1s".into()), ..ServeArgs::default() }).await;
    let app = "com.example.background";
    let mut ids = Vec::new();
    for number in 1..=3 {
        ids.push(str_of(&upload_to(&server, ipa(app, "1.0", &number.to_string()), "beta").await, "id").to_owned());
    }
    put_rule(&server, app, &json!({"keep_last": 1})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while build_ids(&server, app).await.len() > 1 {
        assert!(Instant::now() < deadline, "the background run did not apply the rule within a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(build_ids(&server, app).await, [ids[2].clone()]);
    for id in &ids[..2] {
        assert!(!has_blobs(&server, id).await);
    }
    server.stop().await;
}

fn location(response: &reqwest::Response) -> &str {
    response.headers().get("location").and_then(|value| value.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn the_storage_page_shows_disk_use_sets_rules_previews_and_applies() {
    let mut server = start().await;
    let mut browser = UiClient::new(&server);
    let page = browser.get("/admin/storage").await;
    assert_eq!((page.status(), location(&page)), (StatusCode::SEE_OTHER, "/signin"), "signed out: to sign-in");
    let anonymous = browser.post_form("/admin/storage/run", &[("csrf", "x"), ("dry_run", "false")], None).await;
    assert_eq!((anonymous.status(), location(&anonymous)), (StatusCode::SEE_OTHER, "/signin"));
    let rule_form = [("csrf", "x"), ("bundle_id", "com.example.page"), ("keep_last", "1")];
    let anonymous = browser.post_form("/admin/storage/rules", &rule_form, None).await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);

    let app = "com.example.page";
    let mut beta = Vec::new();
    for number in 1..=3 {
        beta.push(upload_to(&server, ipa(app, "<i>2.0</i>", &number.to_string()), "beta").await);
    }
    let nightly = upload_to(&server, ipa(app, "2.0", "7"), "nightly").await;
    let other = upload_to(&server, ipa("com.example.other", "1.0", "1"), "default").await;
    let size = |build: &Value| build["size"].as_u64().expect("size");
    let beta_bytes: u64 = beta.iter().map(size).sum();
    let total: u64 = beta_bytes + size(&nightly) + size(&other);

    browser.sign_in(&server.token.clone()).await;
    let csrf = browser.csrf().await;
    let html = browser.get("/admin/storage").await.text().await.expect("html");
    assert!(html.contains("href=\"/admin/storage\">Storage</a>"), "the navigation links the page");
    assert!(html.contains("id=\"total-builds\">5<"), "{html}");
    assert!(html.contains(&format!("id=\"total-bytes\">{total}<")), "{html}");
    assert!(
        html.contains(&format!("data-app=\"{app}\" data-bytes=\"{}\" data-builds=\"4\"", beta_bytes + size(&nightly)))
    );
    assert!(
        html.contains(&format!(
            "data-app=\"{app}\" data-channel=\"beta\" data-bytes=\"{beta_bytes}\" data-builds=\"3\""
        ))
    );
    assert!(html.contains(&format!("data-channel=\"nightly\" data-bytes=\"{}\" data-builds=\"1\"", size(&nightly))));
    if server.state.storage.is_local() {
        assert!(html.contains("id=\"disk-free\"") && html.contains("% used)"), "{html}");
    } else {
        assert!(html.contains("id=\"object-storage\"") && html.contains("s3://"), "{html}");
    }
    assert!(html.contains("id=\"no-rules\""));

    // Rules through the forms: checked like the API's, CSRF and Origin first.
    let form = |keep: &str, days: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("bundle_id", app.to_owned()),
            ("channel", "beta".to_owned()),
            ("keep_last", keep.to_owned()),
            ("max_age_days", days.to_owned()),
        ]
    };
    let post = |path: &'static str, form: Vec<(&'static str, String)>, origin: Option<String>| {
        let browser = &browser;
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser.post_form(path, &pairs, origin.as_deref()).await
        }
    };
    let mut forged = form("1", "");
    forged[0].1 = "0".repeat(64);
    assert_eq!(post("/admin/storage/rules", forged, None).await.status(), StatusCode::FORBIDDEN);
    let cross_site = post("/admin/storage/rules", form("1", ""), Some("https://evil.example".into())).await;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let empty = post("/admin/storage/rules", form("", ""), None).await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    assert!(empty.text().await.expect("html").contains("needs `keep_last`"));
    let words = post("/admin/storage/rules", form("ten", ""), None).await;
    assert_eq!(words.status(), StatusCode::BAD_REQUEST);
    assert_eq!(server.api_json("/api/v1/retention", &[]).await, json!({"rules": []}));
    let set = post("/admin/storage/rules", form("1", "30"), Some(server.base.clone())).await;
    assert_eq!((set.status(), location(&set)), (StatusCode::SEE_OTHER, "/admin/storage"));
    let rules = server.api_json("/api/v1/retention", &[]).await;
    assert_eq!(rules["rules"][0]["keep_last"], 1, "{rules}");
    assert_eq!(rules["rules"][0]["max_age_days"], 30, "{rules}");
    let html = browser.get("/admin/storage").await.text().await.expect("html");
    assert!(html.contains(&format!("class=\"rule\" data-app=\"{app}\" data-channel=\"beta\"")), "{html}");
    assert!(html.contains("keep the newest 1, remove after 30 days"), "{html}");

    // Preview: the list, with reasons and bytes, escaped; nothing deleted.
    let preview = post("/admin/storage/run", vec![("csrf", csrf.clone()), ("dry_run", "true".into())], None).await;
    assert_eq!(preview.status(), StatusCode::OK);
    let html = preview.text().await.expect("html");
    let doomed_bytes = size(&beta[0]) + size(&beta[1]);
    assert!(html.contains(&format!("data-dry-run=\"true\" data-bytes=\"{doomed_bytes}\"")), "{html}");
    assert!(html.contains("would remove 2 builds"), "{html}");
    for build in &beta[..2] {
        assert!(html.contains(&format!("data-id=\"{}\"", str_of(build, "id"))), "{html}");
    }
    assert!(!html.contains(&format!("data-id=\"{}\"", str_of(&beta[2], "id"))));
    assert!(html.contains("not the newest of beta"));
    assert!(html.contains("&#60;i&#62;2.0&#60;/i&#62; (1)"), "the version is escaped: {html}");
    assert!(!html.contains("<i>2.0</i>"));
    assert_eq!(build_ids(&server, app).await.len(), 4, "the preview deleted nothing");

    let forged = post("/admin/storage/run", vec![("csrf", "0".repeat(64)), ("dry_run", "false".into())], None).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(build_ids(&server, app).await.len(), 4);
    let applied = post("/admin/storage/run", vec![("csrf", csrf.clone()), ("dry_run", "false".into())], None).await;
    let html = applied.text().await.expect("html");
    assert!(html.contains(&format!("data-dry-run=\"false\" data-bytes=\"{doomed_bytes}\"")), "{html}");
    assert!(html.contains("Removed 2 builds"), "{html}");
    assert_eq!(build_ids(&server, app).await, [str_of(&nightly, "id"), str_of(&beta[2], "id")]);
    let after = total - doomed_bytes;
    assert!(html.contains(&format!("id=\"total-bytes\">{after}<")), "disk use after the run: {html}");

    let remove = [("csrf", csrf.clone()), ("bundle_id", app.to_owned()), ("channel", "beta".to_owned())];
    let removed = post("/admin/storage/rules/delete", remove.to_vec(), None).await;
    assert_eq!((removed.status(), location(&removed)), (StatusCode::SEE_OTHER, "/admin/storage"));
    assert_eq!(server.api_json("/api/v1/retention", &[]).await, json!({"rules": []}));
    let again = post("/admin/storage/rules/delete", remove.to_vec(), None).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}
