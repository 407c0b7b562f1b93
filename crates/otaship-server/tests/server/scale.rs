//! Several instances on one PostgreSQL database and one S3 bucket (always, whatever backend the
//! rest of the suite runs on): what one instance stores, every other serves at once; the parts
//! of one upload may reach different instances; the local CA is one for all; downloads stream
//! with ranges or redirect to presigned URLs; and blobs move between storages.

use otaship_server::ServeArgs;
use otaship_server::relocate::{Moved, move_blobs};
use otaship_server::storage::{BlobKey, BlobKind, Storage};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backends;
use crate::support::Server;
use crate::uploads::{Api, MIB, part, random_ipa, sha256_hex, str_of};

/// The settings of a cluster: one database, one bucket.
async fn cluster_args() -> ServeArgs {
    let mut args = ServeArgs::default();
    backends::use_postgres_s3(&mut args).await;
    args
}

async fn upload(server: &Server, ipa: Vec<u8>) -> Value {
    let response = server.upload(ipa).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn two_instances_serve_one_database_and_bucket() {
    let shared = cluster_args().await;
    let tls =
        |redirect: bool| ServeArgs { tls: Some("local-ca".into()), storage_redirect: Some(redirect), ..shared.clone() };
    // Started together: the migrations run once, and both end up with the same CA.
    let (mut a, mut b) = tokio::join!(Server::start_exactly(tls(false)), Server::start_exactly(tls(true)));
    let ca = |server: &Server| {
        server.state.tls.as_ref().and_then(|tls| tls.local_ca.as_ref()).map(|ca| ca.ca_pem().to_owned())
    };
    assert!(ca(&a).is_some());
    assert_eq!(ca(&a), ca(&b), "one local CA for every instance");

    // A build uploaded through A is listed, installable and downloadable through B at once.
    let ipa = random_ipa("com.example.cluster", 21, 3 * MIB);
    let build = upload(&a, ipa.clone()).await;
    let id = str_of(&build, "id").to_owned();
    let apps = b.api_json("/api/v1/apps", &[]).await;
    assert_eq!(apps["apps"][0]["bundle_id"], "com.example.cluster", "{apps}");
    let install_url = str_of(&build, "install_url").replace(&a.base, &b.base);
    let page = b.client().get(&install_url).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("com.example.cluster"));
    let manifest_url = str_of(&build, "manifest_url").replace(&a.base, &b.base);
    let manifest = b.client().get(&manifest_url).send().await.expect("manifest").text().await.expect("text");
    let ipa_url = str_of(&build, "download_url").replace(&a.base, &b.base);
    assert!(manifest.contains(&ipa_url), "the manifest names otaship's own URL, not a presigned one: {manifest}");

    // B redirects to a presigned URL, valid without any credentials; A streams, with ranges.
    let redirect = &b.client_without_redirects().get(&ipa_url).send().await.expect("download");
    assert_eq!(redirect.status(), StatusCode::FOUND);
    assert_eq!(redirect.headers()["cache-control"], "no-store");
    let location = redirect.headers()["location"].to_str().expect("location").to_owned();
    assert!(location.starts_with(&backends::s3().endpoint) && location.contains("X-Amz-Signature"), "{location}");
    let presigned = reqwest::get(&location).await.expect("presigned GET");
    assert_eq!(presigned.status(), StatusCode::OK);
    assert!(presigned.bytes().await.expect("bytes") == ipa, "the presigned URL serves the build");
    let forged = reqwest::get(location.replace("X-Amz-Signature=", "X-Amz-Signature=0")).await.expect("GET");
    assert!(forged.status().is_client_error(), "a changed signature is refused: {}", forged.status());
    let head = b.client().head(&ipa_url).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK, "HEAD is answered, not redirected");
    assert_eq!(head.headers()["content-length"], ipa.len().to_string().as_str());
    let streamed = a.client().get(str_of(&build, "download_url")).send().await.expect("download");
    assert_eq!(streamed.status(), StatusCode::OK);
    assert!(streamed.bytes().await.expect("bytes") == ipa);
    let range =
        a.client().get(str_of(&build, "download_url")).header("range", "bytes=1000-1999").send().await.expect("range");
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.bytes().await.expect("bytes"), ipa[1000..2000]);

    // The parts of one upload reach different instances; it completes on either.
    let big = random_ipa("com.example.cluster", 22, 5 * MIB);
    let (on_a, on_b) = (Api::new(&a), Api::new(&b));
    let created = on_a
        .create_new(json!({"size": big.len(), "sha256": sha256_hex(&big), "part_size": MIB, "file_name": "b.ipa"}))
        .await;
    let upload_id = str_of(&created, "id").to_owned();
    let count = created["part_count"].as_u64().expect("count") as usize;
    for number in 1..=count {
        let api = if number % 2 == 0 { &on_a } else { &on_b };
        api.put_ok(&upload_id, number, part(&big, MIB, number)).await;
    }
    let (status, seen) = on_a.get(&upload_id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["missing_parts"], json!([]), "A sees the parts B received");
    let (status, completed) = on_b.complete(&upload_id).await;
    assert_eq!(status, StatusCode::CREATED, "{completed}");
    let big_build = &completed;
    let fetched =
        a.client().get(str_of(big_build, "download_url").replace(&b.base, &a.base)).send().await.expect("GET");
    assert!(fetched.bytes().await.expect("bytes") == big, "byte-identical through the other instance");
    assert!(b.upload_leftovers().await.is_empty(), "no part object outlives its upload");

    // Deleting through B deletes for A.
    let deleted =
        b.client().delete(format!("{}/api/v1/builds/{id}", b.base)).bearer_auth(&b.token).send().await.expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = a.client().get(str_of(&build, "download_url")).send().await.expect("GET");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // Both are ready for a load balancer: database and storage answer.
    for server in [&a, &b] {
        let ready = server.client().get(format!("{}/readyz", server.base)).send().await.expect("readyz");
        assert_eq!(ready.status(), StatusCode::OK);
        assert_eq!(ready.text().await.expect("text"), "database: ok\nstorage: ok\n");
    }

    // Nothing of the builds lives on either instance's disk.
    for server in [&a, &b] {
        assert!(server.files_under("blobs").is_empty() && server.files_under("uploads").is_empty());
        assert!(server.files_under("tmp").is_empty());
    }
    let keys = a.blob_keys().await;
    assert!(keys.iter().all(|key| !key.contains(&id)) && !keys.is_empty(), "{keys:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn several_instances_starting_at_once_migrate_once() {
    let shared = cluster_args().await;
    let servers = futures_util::future::join_all((0..4).map(|_| Server::start_exactly(shared.clone()))).await;
    // Each seeded a token; the same token seeded by all at once is stored once, without error.
    let token = otaship_server::tokens::generate();
    let seeded = futures_util::future::join_all(servers.iter().map(|server| server.state.seed_token(&token))).await;
    assert!(seeded.iter().all(Result::is_ok), "{seeded:?}");
    let named = servers[0].state.db.list_tokens().await.expect("tokens");
    assert_eq!(named.len(), 5, "four seeded at start-up, one seeded four times: {named:?}");
    let versions = servers[0].state.db.applied_migrations().await.expect("versions");
    let known: std::collections::HashSet<i64> =
        servers[0].state.db.known_migrations().into_iter().map(|(version, _)| version).collect();
    assert_eq!(versions, known, "every migration applied, once each (the table's key is the version)");
    for mut server in servers {
        server.stop().await;
    }
}

#[tokio::test]
async fn blobs_move_between_storages_and_the_move_resumes() {
    // A server on local disk with two builds (one with an icon).
    let mut server = Server::start_exactly(ServeArgs::default()).await;
    let with_icon = std::fs::read(format!("{}{}", crate::support::FIXTURES, "lagunitas-Sample.ipa")).expect("fixture");
    let first = upload(&server, random_ipa("com.example.move", 31, MIB)).await;
    let second = upload(&server, with_icon).await;
    assert!(second["icon_url"].is_string(), "{second}");
    server.stop().await;
    let from = Storage::open(&server.state.config.storage).expect("source");
    let mut cluster = cluster_args().await;
    let to_config = otaship_server::Config::load(&ServeArgs {
        data_dir: Some(server.data_dir.path().to_owned()),
        ..cluster.clone()
    })
    .expect("config");
    let to = Storage::open(&to_config.storage).expect("destination");
    let db = &server.state.db;

    let report = move_blobs(db, &from, &to, false, |_| {}).await.expect("move");
    assert_eq!(report.builds, 2);
    assert_eq!(report.copied + report.already_there, from.list_blobs().await.expect("list").len());
    assert!(report.missing.is_empty());

    // Interrupted half-way (one blob lost in the destination): the rerun copies only it.
    let lost = BlobKey::new(str_of(&first, "id"), BlobKind::Ipa);
    to.delete_build(str_of(&first, "id")).await.expect("delete");
    let mut steps = Vec::new();
    let report = move_blobs(db, &from, &to, true, |step| steps.push(step.clone())).await.expect("resume");
    let copied: Vec<&str> =
        steps.iter().filter(|step| matches!(step.moved, Moved::Copied { .. })).map(|step| step.key.as_str()).collect();
    assert_eq!(copied, vec![format!("builds/{}/app.ipa", lost.build_id).as_str()]);
    assert_eq!(report.deleted_from_source, 2);
    assert!(from.list_blobs().await.expect("list").is_empty(), "--delete-source emptied the old storage");

    // The same database with the new storage serves both builds, byte-identical.
    cluster.database = Some(format!("sqlite://{}", server.data_dir.path().join("otaship.db").display()));
    let mut moved = Server::start_exactly(ServeArgs { data_dir: None, ..cluster }).await;
    for build in [&first, &second] {
        let url = str_of(build, "download_url").replace(&server.base, &moved.base);
        let bytes = moved.client().get(&url).send().await.expect("GET").bytes().await.expect("bytes");
        assert_eq!(sha256_hex(&bytes), str_of(build, "sha256"));
    }
    let icon_url = str_of(&second, "icon_url").replace(&server.base, &moved.base);
    let icon = moved.client().get(&icon_url).send().await.expect("icon");
    assert_eq!(icon.status(), StatusCode::OK);
    assert!(icon.bytes().await.expect("png").starts_with(b"\x89PNG"), "the icon moved too");
    moved.stop().await;
}

#[tokio::test]
async fn unreachable_object_storage_stops_start_up_with_a_sentence() {
    let mut args = cluster_args().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    args.s3_endpoint = Some(format!("http://{closed}"));
    args.data_dir = Some(tempfile::tempdir().expect("tempdir").keep());
    let config = otaship_server::Config::load(&args).expect("config");
    let error = match otaship_server::AppState::open(config).await {
        Ok(_) => panic!("started without its storage"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("cannot use the storage s3://") && error.contains("--s3-endpoint"), "{error}");
}
