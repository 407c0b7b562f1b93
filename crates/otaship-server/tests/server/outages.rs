//! Outages of what the server depends on, on PostgreSQL and S3 whatever backend the rest of the
//! suite runs on: the database stopped like a crash (a PostgreSQL cluster of this test's own,
//! since the machine's serves every other test) and the object storage stopped (an S3 server of
//! this test's own). While either is down, requests that need it answer `503` with a stable code
//! and a sentence, pages a `503` page, `/readyz` says which one is missing, and an upload leaves
//! nothing behind; once it is back, the same server answers as before, without a restart, and its
//! background workers (webhooks, retention) still run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use otaship_server::ServeArgs;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::backends::{self, S3Process};
use crate::support::{Server, UiClient, uploaded};
use crate::uploads::{Api, MIB, random_ipa, sha256_hex, str_of};

/// A PostgreSQL cluster of this test's own, in a temporary directory, listening on loopback
/// only. Stopping it is `pg_ctl -m immediate`: every process ends at once, as in a crash, and
/// open connections are cut. It starts again on the same port. Dropping it stops it and
/// removes its files.
struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|meta| meta.uid() == 0).unwrap_or(false)
}

/// The newest PostgreSQL's server programs (`initdb`, `pg_ctl`), as Debian installs them.
fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("PostgreSQL's server programs are needed (/usr/lib/postgresql/VERSION/bin/initdb): apt-get install postgresql")
    })
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

impl OwnPostgres {
    async fn create() -> OwnPostgres {
        let dir = tempfile::Builder::new().prefix("otaship-pg-").tempdir().expect("tempdir");
        if is_root() {
            // PostgreSQL refuses to run as root: its files belong to the postgres user.
            let status = std::process::Command::new("chown").arg("postgres:").arg(dir.path()).status().expect("chown");
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let cluster = OwnPostgres { dir, bin: postgres_bin(), port: free_port() };
        let data = cluster.data();
        cluster.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]).await;
        cluster.start().await;
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    async fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program).args(args).output().await.expect("run a PostgreSQL program");
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{log}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server and returns once it accepts connections.
    async fn start(&self) {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        let log = self.dir.path().join("log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &options, "-w", "-t", "60", "start"]).await;
    }

    /// Stops it as a crash would; returns once no process of it is left.
    async fn crash(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "-t", "60", "stop"]).await;
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let mut command = if is_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(pg_ctl);
            command
        } else {
            std::process::Command::new(pg_ctl)
        };
        // Already stopped when a test ended normally; the directory goes with `dir`.
        let _ = command.args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}

/// An HTTP endpoint on loopback that counts webhook deliveries, by event.
struct Receiver {
    url: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let events = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&events);
        let handler = move |body: Bytes| {
            let record = Arc::clone(&record);
            async move {
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                record.lock().expect("lock").push(event);
                "thanks"
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, events }
    }

    /// Waits (a minute at most) for a delivery that names `build_id`.
    async fn wait_for_build(&self, build_id: &str) {
        for _ in 0..600 {
            if self.events.lock().expect("lock").iter().any(|event| event.to_string().contains(build_id)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no webhook delivery for build {build_id} within a minute: {:?}", self.events.lock().expect("lock"));
    }
}

/// An error answer's status and code, checking that it carries a sentence.
async fn error_of(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON error");
    let message = str_of(&body["error"], "message");
    assert!(message.ends_with('.') && message.len() > 40, "a sentence that says what to do: {body}");
    (status, str_of(&body["error"], "code").to_owned(), body)
}

/// A page's status and HTML.
async fn page_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let content_type = response.headers().get("content-type").and_then(|value| value.to_str().ok()).unwrap_or("");
    assert!(content_type.starts_with("text/html"), "a page, not {content_type}");
    (status, response.text().await.expect("html"))
}

async fn readyz(server: &Server) -> (StatusCode, String) {
    let response = server.client().get(format!("{}/readyz", server.base)).send().await.expect("readyz");
    (response.status(), response.text().await.expect("text"))
}

async fn build_count(server: &Server, app: &str) -> usize {
    let listed = server.api_json(&format!("/api/v1/apps/{app}/builds"), &[]).await;
    listed["builds"].as_array().unwrap_or_else(|| panic!("a list of builds: {listed}")).len()
}

/// The database is stopped like a crash and started again, under a running server.
#[tokio::test]
async fn the_server_rides_out_a_database_outage() {
    let cluster = OwnPostgres::create().await;
    let mut args =
        ServeArgs { database: Some(cluster.url()), retention_interval: Some("1s".into()), ..ServeArgs::default() };
    backends::use_postgres_s3(&mut args).await;
    let mut server = Server::start_exactly(args).await;
    let app = "com.example.outage";

    // Before: a build, a signed-in browser, a webhook and a retention rule (both run by
    // background workers that must outlive the outage).
    let receiver = Receiver::start().await;
    let webhook = server
        .client()
        .post(format!("{}/api/v1/webhooks", server.base))
        .bearer_auth(&server.token)
        .json(&json!({"url": receiver.url, "events": ["build.uploaded"]}))
        .send()
        .await
        .expect("webhook");
    assert_eq!(webhook.status(), StatusCode::CREATED);
    let first = uploaded(&server, random_ipa(app, 1, 64 * 1024)).await;
    receiver.wait_for_build(str_of(&first, "id")).await;
    let rule = server
        .client()
        .put(format!("{}/api/v1/apps/{app}/retention", server.base))
        .bearer_auth(&server.token)
        .json(&json!({"keep_last": 2}))
        .send()
        .await
        .expect("rule");
    assert_eq!(rule.status(), StatusCode::OK);
    let mut browser = UiClient::new(&server);
    assert_eq!(browser.sign_in(&server.token.clone()).await.status(), StatusCode::SEE_OTHER);
    let install_path = str_of(&first, "install_url").replace(&server.base, "");
    let blobs_before = server.blob_keys().await;

    cluster.crash().await;

    // While it is down, every kind of request at once (each waits for a connection in vain).
    let api = async {
        let response = server
            .client()
            .get(format!("{}/api/v1/apps", server.base))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("request");
        let retry_after = response.headers().get("retry-after").cloned();
        (error_of(response).await, retry_after)
    };
    let upload = async { error_of(server.upload(random_ipa(app, 2, 64 * 1024)).await).await };
    let resumable = async {
        let ipa = random_ipa(app, 3, MIB);
        let (status, body) = Api::new(&server)
            .create(json!({"size": ipa.len(), "sha256": sha256_hex(&ipa), "part_size": MIB, "file_name": "a.ipa"}))
            .await;
        (status, body)
    };
    let home = async { page_of(browser.get("/").await).await };
    let install = async {
        page_of(server.client().get(format!("{}{install_path}", server.base)).send().await.expect("page")).await
    };
    let ((api, retry_after), upload, resumable, home, install, ready) =
        tokio::join!(api, upload, resumable, home, install, readyz(&server));
    assert_eq!((api.0, api.1.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "database-unavailable"), "{}", api.2);
    assert!(str_of(&api.2["error"], "message").contains("try again"), "{}", api.2);
    assert!(retry_after.is_some(), "a 503 says when to come back");
    assert_eq!(
        (upload.0, upload.1.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "database-unavailable"),
        "{}",
        upload.2
    );
    assert_eq!(resumable.0, StatusCode::SERVICE_UNAVAILABLE, "{}", resumable.1);
    assert_eq!(resumable.1["error"]["code"], "database-unavailable");
    for (status, html) in [home, install] {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{html}");
        assert!(html.contains("cannot reach its database"), "the page says what is wrong: {html}");
    }
    assert_eq!(ready.0, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.1);
    assert!(ready.1.contains("storage: ok\n") && !ready.1.contains("database: ok"), "{}", ready.1);
    let alive = server.client().get(format!("{}/healthz", server.base)).send().await.expect("healthz");
    assert_eq!(alive.status(), StatusCode::OK, "the process keeps running");
    assert!(server.files_under("tmp").is_empty(), "the refused upload left no temporary file");
    assert_eq!(server.blob_keys().await, blobs_before, "nor a blob");

    cluster.start().await;

    // Back: the same server answers as before, at once.
    assert_eq!(readyz(&server).await, (StatusCode::OK, "database: ok\nstorage: ok\n".to_owned()));
    let apps = server.api_json("/api/v1/apps", &[]).await;
    assert_eq!(apps["apps"][0]["bundle_id"], app, "{apps}");
    let (status, html) = page_of(browser.get("/").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(app));
    let install = server.client().get(format!("{}{install_path}", server.base)).send().await.expect("page");
    assert_eq!(install.status(), StatusCode::OK);
    // The workers survived: a new build is announced, and the retention rule (two builds) is
    // applied once a third arrives.
    let second = uploaded(&server, random_ipa(app, 4, 64 * 1024)).await;
    receiver.wait_for_build(str_of(&second, "id")).await;
    let third = uploaded(&server, random_ipa(app, 5, 64 * 1024)).await;
    receiver.wait_for_build(str_of(&third, "id")).await;
    for _ in 0..600 {
        if build_count(&server, app).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(build_count(&server, app).await, 2, "the background retention run applied the rule within a minute");
    let gone = server.client().get(str_of(&first, "download_url")).send().await.expect("GET");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND, "the oldest build went");
    server.stop().await;
}

/// An S3 server of this test's own, on a port kept for starting it again.
struct OwnS3 {
    root: tempfile::TempDir,
    serving: S3Process,
}

impl OwnS3 {
    fn start() -> OwnS3 {
        let root = tempfile::Builder::new().prefix("otaship-s3-outage-").tempdir().expect("S3 root");
        std::fs::create_dir(root.path().join("outage")).expect("bucket");
        let serving = S3Process::start(root.path(), std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        OwnS3 { root, serving }
    }

    fn restart(&mut self) {
        let address = self.serving.address;
        self.serving = S3Process::start(self.root.path(), address);
    }

    fn args(&self) -> ServeArgs {
        ServeArgs {
            storage: Some("s3://outage/otaship".to_owned()),
            s3_endpoint: Some(self.serving.endpoint()),
            s3_region: Some("us-east-1".to_owned()),
            s3_access_key_id: Some(backends::S3_ACCESS_KEY.to_owned()),
            s3_secret_access_key: Some(backends::S3_SECRET_KEY.to_owned()),
            ..ServeArgs::default()
        }
    }

    /// Whether any file under the bucket is left of an upload (objects, or multipart parts).
    fn files(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![self.root.path().to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.path().is_dir() {
                    stack.push(entry.path());
                } else {
                    found.push(relative(self.root.path(), &entry.path()));
                }
            }
        }
        found.sort();
        found
    }
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// The object storage stops (listener and connections closed) and starts again on the same
/// port, under a running server.
#[tokio::test]
async fn the_server_rides_out_a_storage_outage() {
    let mut s3 = OwnS3::start();
    let mut args = s3.args();
    backends::use_postgres_s3(&mut args).await;
    let mut server = Server::start_exactly(args).await;
    let app = "com.example.storage-outage";
    let ipa = random_ipa(app, 11, MIB);
    let build = uploaded(&server, ipa.clone()).await;
    let download_url = str_of(&build, "download_url").to_owned();
    let install_url = str_of(&build, "install_url").to_owned();
    let mut browser = UiClient::new(&server);
    assert_eq!(browser.sign_in(&server.token.clone()).await.status(), StatusCode::SEE_OTHER);
    let stored_before = s3.files();

    s3.serving.stop();

    // While it is down: what needs the storage answers 503 storage-unavailable, at once for
    // all (each retries for a few seconds first); what does not keeps working.
    let later = random_ipa(app, 12, 2 * MIB);
    let parted = random_ipa(app, 13, 2 * MIB);
    let download = async { error_of(server.client().get(&download_url).send().await.expect("GET")).await };
    let upload = async { error_of(server.upload(later.clone()).await).await };
    let part = async {
        let uploads = Api::new(&server);
        let created = uploads
            .create_new(
                json!({"size": parted.len(), "sha256": sha256_hex(&parted), "part_size": MIB, "file_name": "p.ipa"}),
            )
            .await;
        let id = str_of(&created, "id").to_owned();
        let count = created["part_count"].as_u64().expect("part count") as usize;
        let (status, body) = uploads.put(&id, 1, crate::uploads::part(&parted, MIB, 1)).await;
        (id, count, status, body)
    };
    let (download, upload, (upload_id, part_count, part_status, part_body), ready) =
        tokio::join!(download, upload, part, readyz(&server));
    for (status, code, body) in [download, upload] {
        assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable"), "{body}");
    }
    assert_eq!(part_status, StatusCode::SERVICE_UNAVAILABLE, "{part_body}");
    assert_eq!(part_body["error"]["code"], "storage-unavailable");
    assert_eq!(ready.0, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.1);
    assert!(ready.1.starts_with("database: ok\n") && !ready.1.contains("storage: ok"), "{}", ready.1);
    let apps = server.api_json("/api/v1/apps", &[]).await;
    assert_eq!(apps["apps"][0]["bundle_id"], app, "the API without storage works: {apps}");
    let install = server.client().get(&install_url).send().await.expect("page");
    assert_eq!(install.status(), StatusCode::OK, "the install page needs no storage");
    let (status, _) = page_of(browser.get("/").await).await;
    assert_eq!(status, StatusCode::OK, "neither does the apps page");
    assert!(server.files_under("tmp").is_empty(), "the refused upload left no temporary file");

    s3.restart();

    // Back on the same port: the same server stores and serves again.
    assert_eq!(readyz(&server).await, (StatusCode::OK, "database: ok\nstorage: ok\n".to_owned()));
    assert_eq!(s3.files(), stored_before, "the failed uploads left nothing in the bucket");
    let fetched = server.client().get(&download_url).send().await.expect("GET");
    assert_eq!(fetched.status(), StatusCode::OK);
    assert!(fetched.bytes().await.expect("bytes") == ipa, "the build is intact");
    let again = uploaded(&server, later.clone()).await;
    let fetched = server.client().get(str_of(&again, "download_url")).send().await.expect("GET");
    assert!(fetched.bytes().await.expect("bytes") == later);
    let uploads = Api::new(&server);
    for number in 1..=part_count {
        uploads.put_ok(&upload_id, number, crate::uploads::part(&parted, MIB, number)).await;
    }
    let (status, completed) = uploads.complete(&upload_id).await;
    assert_eq!(status, StatusCode::CREATED, "{completed}");
    assert!(server.upload_leftovers().await.is_empty(), "no part object outlives its upload");
    assert_eq!(server.blob_keys().await.len(), 3, "three builds' .ipa files: {:?}", server.blob_keys().await);
    server.stop().await;
}
