//! A full disk under a running server. The test mounts a small tmpfs of its own (so it runs as
//! root, as CI does) and puts the whole data directory on it: the SQLite database, the blobs,
//! the temporary files and the resumable uploads' files. It uploads builds until one does not
//! fit, then fills the last free byte, as another program on the disk would, so that every write
//! fails, the database's too. Uploads must answer `507 storage-full` and leave nothing behind;
//! everything that only reads (the API, install pages, manifests, icons, whole and ranged
//! downloads, the web UI) must keep working, though each of those requests tries to write (page
//! views, the token's last use); and once space is freed, uploads succeed again, with nothing
//! corrupted.
//!
//! The point is the disk under the database and the blobs, so the test runs on SQLite and local
//! disk whatever `OTASHIP_TEST_BACKEND` says.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use otaship_server::ServeArgs;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::backends;
use crate::support::{FIXTURES, Server, UiClient};
use crate::uploads::{content_digest, part, random_ipa, sha256_hex, str_of};

const MIB: usize = 1 << 20;

/// A tmpfs mounted on a new directory, unmounted when dropped (a panicking test included).
struct Tmpfs {
    mount_point: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let root = status.lines().any(|line| line.split_whitespace().take(2).eq(["Uid:", "0"]));
        assert!(
            root,
            "the full-disk test mounts a small tmpfs, which needs root: run the tests as root (CI does), or through \
             scripts/test as root"
        );
        let mount_point = tempfile::tempdir().expect("mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "otaship-test-full"])
            .arg(mount_point.path())
            .output()
            .expect("mount runs");
        assert!(output.status.success(), "mount -t tmpfs failed: {}", String::from_utf8_lossy(&output.stderr));
        Tmpfs { mount_point }
    }

    fn path(&self) -> &Path {
        self.mount_point.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server task that still holds a file open must not keep the mount alive.
        let _ = Command::new("umount").arg("--lazy").arg(self.mount_point.path()).status();
    }
}

/// Writes `path` until the disk refuses another byte; returns how many it took.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("filler");
    let mut written = 0u64;
    for chunk in [MIB, 4096, 1] {
        let bytes = vec![0x5a; chunk];
        loop {
            match file.write(&bytes) {
                Ok(0) => break,
                Ok(count) => written += count as u64,
                Err(error) if error.raw_os_error() == Some(28) => break,
                Err(error) => panic!("filling the disk: {error}"),
            }
        }
    }
    written
}

async fn sqlite(server: &Server) -> sqlx::SqliteConnection {
    let path = server.data_dir.path().join("otaship.db");
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.expect("open the database")
}

const SAFARI_ON_IOS_18_1: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, \
                                  like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

/// Enrolls an iPhone on iOS 18 (as its signed reply would, straight in the database) and returns
/// the cookie that names it in its Safari.
async fn enrolled_device(server: &Server) -> String {
    use otaship_server::tokens;
    let challenge = tokens::random_hex(32);
    let db = &server.state.db;
    let expires_at = time::OffsetDateTime::now_utc() + time::Duration::HOUR;
    db.insert_enrollment(&tokens::hash(&challenge), expires_at, None).await.expect("enrollment");
    let attributes = otaship_ipa::device::DeviceAttributes {
        udid: "00008030-001544522E60802E".to_owned(),
        product: Some("iPhone15,2".to_owned()),
        os_build: Some("22A3354".to_owned()),
        serial: None,
        device_name: Some("Full Disk iPhone".to_owned()),
        challenge: Some(challenge.clone()),
    };
    let result = tokens::hash(&tokens::random_hex(16));
    let enrolled = db
        .record_enrollment(&tokens::hash(&challenge), &attributes, true, &tokens::random_hex(16), &result)
        .await
        .expect("record the device");
    let otaship_server::db::Enrolled::Recorded(device) = enrolled else { panic!("the challenge was handed out") };
    format!("{}={}", otaship_server::devices::DEVICE_COOKIE, server.state.devices.cookie_value(&device.id))
}

async fn error_of(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    response.json().await.expect("JSON error")
}

fn assert_storage_full(body: &Value) {
    assert_eq!(body["error"]["code"], "storage-full", "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("disk is full") && message.contains("free space"),
        "a sentence that says what to do: {message}"
    );
}

/// The blob folders on disk, as build ids.
fn blob_folders(server: &Server) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(server.data_dir.path().join("blobs/builds"))
        .map(|entries| entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

fn sorted_ids<'a>(builds: impl IntoIterator<Item = &'a (Value, Vec<u8>)>) -> Vec<String> {
    let mut ids: Vec<String> = builds.into_iter().map(|(build, _)| str_of(build, "id").to_owned()).collect();
    ids.sort();
    ids
}

async fn download(server: &Server, build: &Value) -> Vec<u8> {
    let response = server.client().get(str_of(build, "download_url")).send().await.expect("download");
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.expect("bytes").to_vec()
}

#[tokio::test]
async fn a_full_disk_refuses_uploads_with_507_and_serves_everything_else() {
    if backends::selected() == backends::Backend::PostgresS3 {
        println!("faults: the full-disk test runs on SQLite and local disk on its own tmpfs, whatever the backend");
    }
    let disk = Tmpfs::mount("48m");
    let mut server = Server::start_in(disk.path(), ServeArgs::default()).await;
    let client = server.client();

    // An ad hoc build with an icon, then a resumable upload begun while there is room (its parts come
    // once the disk is full), and a web UI session (signing in writes one).
    let with_icon = std::fs::read(format!("{FIXTURES}shipmate-Go-Tomato-Ad-Hoc-27.ipa")).expect("fixture");
    let response = server.upload(with_icon.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut kept: Vec<(Value, Vec<u8>)> = vec![(response.json().await.expect("JSON"), with_icon)];
    assert!(kept[0].0["icon_url"].is_string(), "the fixture has an icon");
    assert_eq!(kept[0].0["profile"]["kind"], "ad-hoc", "the fixture lists devices");
    let resumable = random_ipa("com.example.resumed", 90_001, 3 * MIB);
    let created = client
        .post(format!("{}/api/v1/uploads", server.base))
        .bearer_auth(&server.token)
        .json(&json!({"size": resumable.len(), "sha256": sha256_hex(&resumable), "part_size": MIB}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let upload: Value = created.json().await.expect("JSON");
    let upload_id = str_of(&upload["upload"], "id").to_owned();
    let part_url = |number: usize| format!("{}/api/v1/uploads/{upload_id}/parts/{number}", server.base);
    let mut ui = UiClient::new(&server);
    assert_eq!(ui.sign_in(&server.token).await.status(), StatusCode::SEE_OTHER);
    let device_cookie = enrolled_device(&server).await;

    // Builds of 6 MiB until one does not fit.
    let refused = loop {
        assert!(kept.len() < 12, "48 MiB never filled up");
        let ipa = random_ipa("com.example.full", kept.len() as u64, 6 * MIB);
        let response = server.upload(ipa.clone()).await;
        if response.status() != StatusCode::CREATED {
            break response;
        }
        kept.push((response.json().await.expect("JSON"), ipa));
    };
    assert!(kept.len() >= 4, "several builds fitted before the disk was full: {}", kept.len());
    assert_storage_full(&error_of(refused, StatusCode::INSUFFICIENT_STORAGE).await);
    assert!(server.files_under("tmp").is_empty(), "the refused upload left its temporary file");
    assert_eq!(blob_folders(&server), sorted_ids(&kept), "the refused upload left blobs behind");

    // The rest of the disk goes too. The database's log is emptied first (there is then no room
    // in it to reuse), and the token's last use is made old, so that the next API request tries
    // to record it: every write the server attempts from now on fails.
    {
        let mut database = sqlite(&server).await;
        sqlx::query("UPDATE tokens SET last_used_at = $1")
            .bind(otaship_server::db::timestamp(time::OffsetDateTime::UNIX_EPOCH))
            .execute(&mut database)
            .await
            .expect("age the token's last use");
        let (busy, _, _): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut database).await.expect("checkpoint");
        assert_eq!(busy, 0, "the checkpoint ran to its end");
        database.close().await.expect("close");
    }
    let filler = disk.path().join("filler");
    fill(&filler);

    // Uploads of every kind: 507 with the same sentence, and nothing left behind.
    let small = random_ipa("com.example.full", 77, 64 << 10);
    assert_storage_full(&error_of(server.upload(small.clone()).await, StatusCode::INSUFFICIENT_STORAGE).await);
    let csrf = ui.csrf().await;
    let from_ui = ui.upload(small.clone(), "", &csrf, true).await;
    assert_storage_full(&error_of(from_ui, StatusCode::INSUFFICIENT_STORAGE).await);
    let first_part = part(&resumable, MIB, 1);
    let sent = client
        .put(part_url(1))
        .bearer_auth(&server.token)
        .header("content-digest", content_digest(&first_part))
        .body(first_part.clone())
        .send()
        .await
        .expect("part");
    assert_storage_full(&error_of(sent, StatusCode::INSUFFICIENT_STORAGE).await);
    assert!(server.files_under("tmp").is_empty(), "a refused upload left its temporary file");
    assert_eq!(blob_folders(&server), sorted_ids(&kept), "a refused upload left blobs behind");

    // Everything that reads works: the API, the install page, its manifest and icon, whole and
    // ranged downloads, the web UI's pages.
    let (first, first_bytes) = &kept[0];
    let (last, last_bytes) = &kept[kept.len() - 1];
    let apps = server.api_json("/api/v1/apps", &[]).await;
    assert_eq!(apps["apps"].as_array().map(Vec::len), Some(2), "{apps}");
    let listed = server.api_json("/api/v1/apps/com.example.full/builds?per_page=100", &[]).await;
    assert_eq!(listed["total"].as_u64(), Some(kept.len() as u64 - 1), "{listed}");
    let install = client.get(str_of(first, "install_url")).send().await.expect("install page");
    assert_eq!(install.status(), StatusCode::OK);
    assert!(
        install.text().await.expect("html").contains(str_of(first, "bundle_id")),
        "the install page is the build's"
    );
    // An enrolled iPhone whose Safari reports a newer iOS: the page records the visit, and
    // shows the device all the same when that fails.
    let from_device = client
        .get(str_of(first, "install_url"))
        .header("cookie", &device_cookie)
        .header("user-agent", SAFARI_ON_IOS_18_1)
        .send()
        .await
        .expect("install page");
    assert_eq!(from_device.status(), StatusCode::OK);
    let html = from_device.text().await.expect("html");
    assert!(
        html.contains("id=\"device-check\"") && html.contains("00008030-001544522E60802E"),
        "the page knows the device"
    );
    let manifest = client.get(str_of(first, "manifest_url")).send().await.expect("manifest");
    assert_eq!(manifest.status(), StatusCode::OK);
    assert!(manifest.text().await.expect("plist").contains("software-package"));
    let icon = client.get(str_of(first, "icon_url")).send().await.expect("icon");
    assert_eq!(icon.status(), StatusCode::OK);
    assert!(icon.bytes().await.expect("png").starts_with(b"\x89PNG"));
    assert!(download(&server, first).await == *first_bytes, "the first build downloads byte-identical");
    assert!(download(&server, last).await == *last_bytes, "the last build downloads byte-identical");
    let ranged = client
        .get(str_of(last, "download_url"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .expect("ranged download");
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert!(ranged.bytes().await.expect("bytes") == last_bytes[1000..2000], "the range is the file's");
    for page in ["/".to_owned(), "/apps/com.example.full".to_owned(), format!("/builds/{}", str_of(last, "id"))] {
        let response = ui.get(&page).await;
        assert_eq!(response.status(), StatusCode::OK, "{page}");
        assert!(response.text().await.expect("html").contains("com.example.full"), "{page}");
    }

    // Deleting a build needs a database write: refused the same way, and the build stays whole.
    let delete = |id: String| {
        let (client, base, token) = (client.clone(), server.base.clone(), server.token.clone());
        async move { client.delete(format!("{base}/api/v1/builds/{id}")).bearer_auth(token).send().await.expect("delete") }
    };
    let refused = delete(str_of(last, "id").to_owned()).await;
    assert_storage_full(&error_of(refused, StatusCode::INSUFFICIENT_STORAGE).await);
    assert!(download(&server, last).await == *last_bytes, "a refused delete keeps the build whole");

    // Space comes back (the other program's file goes); deleting two builds makes room, and
    // uploads of both kinds succeed again: the part refused before, then a whole build.
    std::fs::remove_file(&filler).expect("remove the filler");
    for _ in 0..2 {
        let (gone, _) = kept.remove(1);
        assert_eq!(delete(str_of(&gone, "id").to_owned()).await.status(), StatusCode::NO_CONTENT);
    }
    for number in 1..=resumable.len().div_ceil(MIB) {
        let bytes = part(&resumable, MIB, number);
        let sent = client
            .put(part_url(number))
            .bearer_auth(&server.token)
            .header("content-digest", content_digest(&bytes))
            .body(bytes)
            .send()
            .await
            .expect("part");
        assert_eq!(sent.status(), StatusCode::OK, "part {number}");
    }
    let completed = client
        .post(format!("{}/api/v1/uploads/{upload_id}/complete", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("complete");
    assert_eq!(completed.status(), StatusCode::CREATED);
    kept.push((completed.json().await.expect("JSON"), resumable));
    let again = random_ipa("com.example.full", 78, 6 * MIB);
    let response = server.upload(again.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED, "an upload fits again");
    kept.push((response.json().await.expect("JSON"), again));

    // Nothing was corrupted: every build kept downloads byte-identical, the blobs are exactly the
    // builds', nothing temporary is left, and the database passes its checks.
    for (build, bytes) in &kept {
        assert!(download(&server, build).await == *bytes, "build {} downloads byte-identical", str_of(build, "id"));
    }
    assert_eq!(blob_folders(&server), sorted_ids(&kept));
    assert!(server.files_under("tmp").is_empty());
    server.stop().await;
    let mut database = sqlite(&server).await;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut database).await.expect("check");
    assert_eq!(verdict, "ok");
    let dangling = sqlx::query("PRAGMA foreign_key_check").fetch_all(&mut database).await.expect("check");
    assert!(dangling.is_empty(), "rows whose parent is gone: {}", dangling.len());
    database.close().await.expect("close");
}
