//! Crash safety of `otaship serve`, as a machine that loses power or an OOM killer would test
//! it: the real binary, on SQLite and local disk, is killed with SIGKILL while builds upload
//! (single-request and resumable uploads, several at once), then started again on the same data
//! directory. Twenty-four kills on one directory, so that any damage would pile up.
//!
//! Each kill is aimed at a moment of its own, in turn: part-way through the bodies' bytes, just
//! after a body's last byte (the server syncing, inspecting, moving and recording the build), just
//! after a completion was asked for (assembling and recording a resumable upload), and at any
//! time. After every start-up the test checks that every listed build downloads byte-identical to
//! a file that was sent, that every upload answered `201` (or `200`) before the kill is listed,
//! that no temporary file, blob without a build, upload file without its upload (or the other way
//! round) is left, and that SQLite's `integrity_check` and `foreign_key_check` pass. Uploads cut
//! by a kill are sent again after the restart, as a CI job would; at the end every file sent is
//! exactly one build.
//!
//! The kill moments come from a seeded generator: the seed is printed, and
//! `OTASHIP_CRASH_SEED=N` replays the same schedule (threads still interleave as they will).
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use otaship_ipa::builder::{IpaBuilder, ZipEntry};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Six kills of each kind.
const TRIALS: usize = 24;
const MIB: usize = 1 << 20;
/// The smallest part size the server accepts: small files still come in several parts.
const PART_SIZE: usize = MIB;
const BUNDLE_ID: &str = "com.example.crash";
/// Files sent again in one round, at most (besides the new ones).
const RETRIES_PER_ROUND: usize = 3;
/// No request of this test should take anywhere near this long; it only stops a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------------------------

/// SplitMix64: small, and the same sequence for the same seed on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
}

fn the_seed() -> u64 {
    match std::env::var("OTASHIP_CRASH_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("OTASHIP_CRASH_SEED={text} is not a number")),
        Err(_) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            Rng(now.as_nanos() as u64 ^ u64::from(std::process::id())).next()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The files sent
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `POST /api/v1/builds` with the file as the body.
    Single,
    /// `POST /api/v1/uploads`, a `PUT` per missing part, then `POST .../complete`.
    Resumable,
}

/// A distinct, valid `.ipa` of 1 to 3 MiB: the same bundle, a build number and incompressible
/// bytes of its own.
struct SentFile {
    index: usize,
    way: Way,
    bytes: Arc<Vec<u8>>,
    sha256: String,
}

fn make_file(seed: u64, index: usize, way: Way) -> SentFile {
    let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let payload = MIB + rng.below(2 * MIB as u64) as usize;
    let mut noise = Vec::with_capacity(payload + 8);
    while noise.len() < payload {
        noise.extend_from_slice(&rng.next().to_le_bytes());
    }
    noise.truncate(payload);
    let bytes = IpaBuilder::new(BUNDLE_ID)
        .info("CFBundleVersion", index.to_string())
        .entry(ZipEntry::stored("Payload/Example.app/Assets.car", noise))
        .to_bytes();
    let sha256 = hex(&Sha256::digest(&bytes));
    SentFile { index, way, bytes: Arc::new(bytes), sha256 }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// The binary with none of the caller's otaship settings.
fn otaship() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_otaship"));
    for variable in ["OTASHIP_SERVER", "OTASHIP_TOKEN", "OTASHIP_DATA_DIR", "OTASHIP_ADMIN_TOKEN", "OTASHIP_CONFIG"] {
        command.env_remove(variable);
    }
    command
}

/// One run of `otaship serve` on the data directory, plain HTTP on a free loopback port.
struct Instance {
    child: Child,
    url: String,
    /// Everything it wrote to stderr (its log, at `warn`).
    log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    fn start(data: &Path) -> Instance {
        let mut child = otaship()
            .args(["serve", "--tls", "off", "--listen", "127.0.0.1:0"])
            .env("OTASHIP_DATA_DIR", data)
            .env("OTASHIP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sender, lines) = mpsc::channel();
        {
            // Reads stderr to its end, so that the server never blocks on a full pipe.
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().expect("log").push(line.clone());
                    let _ = sender.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut url = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = lines.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not start:\n{}", log.lock().expect("log").join("\n"));
            };
            if let Some(rest) = line.strip_prefix("otaship is listening on ") {
                let address = rest.split_once(' ').map_or(rest, |(address, _)| address);
                url = Some(format!("http://{address}"));
            }
            if line.contains("data directory:") {
                break;
            }
        }
        let url = url.unwrap_or_else(|| panic!("no address in the banner:\n{}", log.lock().expect("log").join("\n")));
        Instance { child, url, log }
    }

    fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// SIGKILL: no clean-up of any kind.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, and the exit status of a clean shutdown.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        assert!(sent.success());
        let status = self.child.wait().expect("exits");
        assert!(status.success(), "a clean shutdown on SIGTERM: {status}\n{}", self.log_text());
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Uploading, with progress the kill can be aimed at
// ---------------------------------------------------------------------------------------------

/// What the uploads have done so far, for the kill to aim at.
#[derive(Default)]
struct Progress {
    /// Body bytes handed to the connection (files and parts).
    sent: AtomicU64,
    /// Single-request bodies sent to their last byte.
    bodies_done: AtomicU64,
    /// Completions asked for.
    completions: AtomicU64,
    /// The kill was sent: from then on, a failed request is expected.
    killed: AtomicBool,
}

/// A body that counts its bytes as the client sends them.
struct Counted {
    bytes: Arc<Vec<u8>>,
    at: usize,
    end: usize,
    progress: Arc<Progress>,
    /// Whether the last byte counts as a single-request body done.
    whole_file: bool,
}

impl Read for Counted {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        // Small steps, so that the count follows the socket closely.
        let length = buffer.len().min(64 << 10).min(self.end - self.at);
        buffer[..length].copy_from_slice(&self.bytes[self.at..self.at + length]);
        self.at += length;
        self.progress.sent.fetch_add(length as u64, Ordering::SeqCst);
        if length > 0 && self.at == self.end && self.whole_file {
            self.progress.bodies_done.fetch_add(1, Ordering::SeqCst);
        }
        Ok(length)
    }
}

/// How an upload ended.
#[derive(Debug)]
enum Outcome {
    /// The server answered with the build (`201`, or `200` for a file it had).
    Acknowledged(Value),
    /// The kill cut it.
    Cut,
    /// Anything else: a failure of the server.
    Wrong(String),
}

/// Sends a request and reads the answer as JSON; a transport failure is a cut only once the kill
/// was sent.
fn exchange(
    progress: &Progress,
    what: &str,
    request: reqwest::blocking::RequestBuilder,
) -> Result<(u16, Value), Outcome> {
    let failed = |error: reqwest::Error| {
        if progress.killed.load(Ordering::SeqCst) {
            Outcome::Cut
        } else {
            Outcome::Wrong(format!("{what}: the request failed before any kill: {error}"))
        }
    };
    let response = request.send().map_err(failed)?;
    let status = response.status().as_u16();
    let bytes = response.bytes().map_err(failed)?;
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(bytes_text(&bytes)));
    Ok((status, value))
}

fn bytes_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn upload_single(
    client: &reqwest::blocking::Client,
    url: &str,
    token: &str,
    file: &SentFile,
    progress: &Arc<Progress>,
) -> Outcome {
    let length = file.bytes.len();
    let body = Counted {
        bytes: Arc::clone(&file.bytes),
        at: 0,
        end: length,
        progress: Arc::clone(progress),
        whole_file: true,
    };
    let request = client
        .post(format!("{url}/api/v1/builds"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::blocking::Body::sized(body, length as u64));
    match exchange(progress, "POST /api/v1/builds", request) {
        Ok((200 | 201, build)) => Outcome::Acknowledged(build),
        Ok((status, body)) => {
            Outcome::Wrong(format!("file {}: POST /api/v1/builds answered {status}: {body}", file.index))
        }
        Err(outcome) => outcome,
    }
}

fn upload_resumable(
    client: &reqwest::blocking::Client,
    url: &str,
    token: &str,
    file: &SentFile,
    progress: &Arc<Progress>,
) -> Outcome {
    let steps = || -> Result<Value, Outcome> {
        let wrong = |step: &str, status: u16, body: &Value| {
            Outcome::Wrong(format!("file {}: {step} answered {status}: {body}", file.index))
        };
        // Creating resumes the open upload of the same file, if a kill left one.
        let create = client.post(format!("{url}/api/v1/uploads")).bearer_auth(token).json(&json!({
            "file_name": format!("crash-{}.ipa", file.index),
            "size": file.bytes.len(),
            "sha256": file.sha256,
            "part_size": PART_SIZE,
        }));
        let (status, created) = exchange(progress, "POST /api/v1/uploads", create)?;
        if !matches!(status, 200 | 201) {
            return Err(wrong("POST /api/v1/uploads", status, &created));
        }
        if created["build"].is_object() {
            return Ok(created["build"].clone());
        }
        let upload = &created["upload"];
        let id = upload["id"].as_str().ok_or_else(|| wrong("POST /api/v1/uploads", status, &created))?;
        let part_size = upload["part_size"].as_u64().ok_or_else(|| wrong("POST /api/v1/uploads", status, &created))?;
        let missing: Vec<u64> = upload["missing_parts"]
            .as_array()
            .ok_or_else(|| wrong("POST /api/v1/uploads", status, &created))?
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        for number in missing {
            let start = usize::try_from((number - 1) * part_size).expect("offset");
            let end = (start + usize::try_from(part_size).expect("size")).min(file.bytes.len());
            let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&file.bytes[start..end]));
            let body = Counted {
                bytes: Arc::clone(&file.bytes),
                at: start,
                end,
                progress: Arc::clone(progress),
                whole_file: false,
            };
            let put = client
                .put(format!("{url}/api/v1/uploads/{id}/parts/{number}"))
                .bearer_auth(token)
                .header("content-digest", format!("sha-256=:{digest}:"))
                .body(reqwest::blocking::Body::sized(body, (end - start) as u64));
            let (status, answer) = exchange(progress, "PUT part", put)?;
            if status != 200 {
                return Err(wrong(&format!("PUT part {number}"), status, &answer));
            }
        }
        progress.completions.fetch_add(1, Ordering::SeqCst);
        let complete = client.post(format!("{url}/api/v1/uploads/{id}/complete")).bearer_auth(token);
        match exchange(progress, "POST complete", complete)? {
            (200 | 201, build) => Ok(build),
            (status, answer) => Err(wrong("POST complete", status, &answer)),
        }
    };
    match steps() {
        Ok(build) => Outcome::Acknowledged(build),
        Err(outcome) => outcome,
    }
}

// ---------------------------------------------------------------------------------------------
// Aiming the kill
// ---------------------------------------------------------------------------------------------

/// When a round's kill comes.
#[derive(Debug, Clone, Copy)]
enum Aim {
    /// Once this many body bytes were sent: the server is streaming bodies to disk.
    Streaming { bytes: u64 },
    /// This long after the `nth` single-request body was sent whole: the server is syncing,
    /// inspecting, moving the file into place or recording the build.
    AfterBody { nth: u64, delay: Duration },
    /// This long after the `nth` completion was asked for: assembling, inspecting, recording.
    Completing { nth: u64, delay: Duration },
    /// This long after the round began, whatever is happening.
    Anytime { delay: Duration },
}

impl Aim {
    fn choose(trial: usize, rng: &mut Rng, planned_bytes: u64, singles: u64, resumables: u64) -> Aim {
        match trial % 4 {
            0 => Aim::Streaming { bytes: 1 + rng.below(planned_bytes.max(1)) },
            // A body's last byte to its answer takes a few milliseconds: sync, inspection, rename
            // and insert.
            1 => Aim::AfterBody { nth: 1 + rng.below(singles), delay: Duration::from_micros(rng.below(30_000)) },
            2 => Aim::Completing { nth: 1 + rng.below(resumables), delay: Duration::from_micros(rng.below(12_000)) },
            _ => Aim::Anytime { delay: Duration::from_millis(rng.below(250)) },
        }
    }

    /// Since when the kill's delay runs, once its event happened.
    fn armed(&self, progress: &Progress) -> bool {
        match *self {
            Aim::Streaming { bytes } => progress.sent.load(Ordering::SeqCst) >= bytes,
            Aim::AfterBody { nth, .. } => progress.bodies_done.load(Ordering::SeqCst) >= nth,
            Aim::Completing { nth, .. } => progress.completions.load(Ordering::SeqCst) >= nth,
            Aim::Anytime { .. } => true,
        }
    }

    fn delay(&self) -> Duration {
        match *self {
            Aim::Streaming { .. } => Duration::ZERO,
            Aim::AfterBody { delay, .. } | Aim::Completing { delay, .. } | Aim::Anytime { delay } => delay,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The record of what was sent and acknowledged
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Ledger {
    files: Vec<SentFile>,
    by_sha256: HashMap<String, usize>,
    /// Build id acknowledged for each file (by index).
    acknowledged: BTreeMap<usize, String>,
    /// Files not acknowledged yet, oldest first: sent again in later rounds.
    pending: Vec<usize>,
    /// Builds downloaded and compared since they were first listed.
    verified: BTreeSet<String>,
}

impl Ledger {
    fn add(&mut self, seed: u64, way: Way) -> usize {
        let index = self.files.len();
        let file = make_file(seed, index, way);
        self.by_sha256.insert(file.sha256.clone(), index);
        self.files.push(file);
        self.pending.push(index);
        index
    }
}

/// What the kills left behind that the next start-up removed, in all.
#[derive(Default)]
struct Removed {
    temp_files: usize,
    blob_dirs: usize,
    /// Of those, folders with no blob in them yet (killed between making one and moving in).
    empty_blob_dirs: usize,
    upload_files: usize,
}

/// The data directory's temporary files, blob folders and upload files, by name.
struct Snapshot {
    temp_files: BTreeSet<String>,
    blob_dirs: BTreeSet<String>,
    empty_blob_dirs: BTreeSet<String>,
    upload_files: BTreeSet<String>,
}

impl Snapshot {
    fn of(data: &Path) -> Snapshot {
        let set = |dir: &str| names_in(&data.join(dir)).into_iter().collect::<BTreeSet<String>>();
        let blob_dirs = set("blobs/builds");
        let empty_blob_dirs =
            blob_dirs.iter().filter(|id| names_in(&data.join("blobs/builds").join(id)).is_empty()).cloned().collect();
        Snapshot { temp_files: set("tmp"), blob_dirs, empty_blob_dirs, upload_files: set("uploads") }
    }
}

/// Runs one round of uploads (`files`, all at once); kills the server as `aim` says unless it is
/// `None`. Returns each file's outcome.
fn run_round(
    server: &mut Instance,
    token: &str,
    ledger: &Ledger,
    files: &[usize],
    aim: Option<Aim>,
) -> (Vec<(usize, Outcome)>, bool) {
    let progress = Arc::new(Progress::default());
    let client = reqwest::blocking::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("client");
    let (done_sender, done) = mpsc::channel();
    let mut workers = Vec::new();
    for &index in files {
        let file = &ledger.files[index];
        let (client, url, token, progress) =
            (client.clone(), server.url.clone(), token.to_owned(), Arc::clone(&progress));
        let (bytes, sha256, way) = (Arc::clone(&file.bytes), file.sha256.clone(), file.way);
        let done_sender = done_sender.clone();
        workers.push(thread::spawn(move || {
            let file = SentFile { index, way, bytes, sha256 };
            let outcome = match way {
                Way::Single => upload_single(&client, &url, &token, &file, &progress),
                Way::Resumable => upload_resumable(&client, &url, &token, &file, &progress),
            };
            let _ = done_sender.send(());
            (index, outcome)
        }));
    }
    drop(done_sender);
    let mut in_flight = false;
    if let Some(aim) = aim {
        let mut armed_at = None;
        let mut finished = 0;
        loop {
            if armed_at.is_none() && aim.armed(&progress) {
                armed_at = Some(Instant::now());
            }
            let due = armed_at.is_some_and(|at: Instant| at.elapsed() >= aim.delay());
            if due || finished == files.len() {
                in_flight = finished < files.len();
                break;
            }
            if done.recv_timeout(Duration::from_millis(1)).is_ok() {
                finished += 1;
            }
        }
        progress.killed.store(true, Ordering::SeqCst);
        server.kill();
    }
    let outcomes = workers.into_iter().map(|worker| worker.join().expect("upload thread")).collect();
    (outcomes, in_flight)
}

/// Takes in a round's outcomes: acknowledged files leave the pending list.
fn record(ledger: &mut Ledger, outcomes: Vec<(usize, Outcome)>, log: &str) -> usize {
    let mut acknowledged = 0;
    for (index, outcome) in outcomes {
        match outcome {
            Outcome::Acknowledged(build) => {
                let id = build["id"].as_str().unwrap_or_else(|| panic!("no build id in {build}")).to_owned();
                assert_eq!(build["sha256"].as_str(), Some(ledger.files[index].sha256.as_str()), "{build}");
                if let Some(earlier) = ledger.acknowledged.insert(index, id.clone()) {
                    assert_eq!(earlier, id, "file {index} was acknowledged as two builds");
                }
                ledger.pending.retain(|&pending| pending != index);
                acknowledged += 1;
            }
            Outcome::Cut => {}
            Outcome::Wrong(message) => panic!("{message}\n--- server log\n{log}"),
        }
    }
    acknowledged
}

// ---------------------------------------------------------------------------------------------
// Checking the data directory
// ---------------------------------------------------------------------------------------------

fn names_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned()).collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => panic!("cannot read {}: {error}", dir.display()),
    }
}

/// Runs SQL through the `sqlite3` shell (the database is the server's, open or not).
fn sqlite(database: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3").arg(database).arg(sql).output().unwrap_or_else(|error| {
        panic!("the sqlite3 shell is needed ({error}): apt-get install sqlite3, or run scripts/test, which installs it")
    });
    assert!(output.status.success(), "sqlite3 {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn assert_database_sound(database: &Path) {
    let verdict = sqlite(database, "PRAGMA integrity_check;");
    assert_eq!(verdict.trim(), "ok", "PRAGMA integrity_check");
    let dangling = sqlite(database, "PRAGMA foreign_key_check;");
    assert_eq!(dangling.trim(), "", "PRAGMA foreign_key_check: rows whose parent is gone");
}

/// Every build the API lists, as JSON.
fn listed_builds(client: &reqwest::blocking::Client, server: &Instance, token: &str) -> Vec<Value> {
    let mut builds = Vec::new();
    for page in 1.. {
        let response = client
            .get(format!("{}/api/v1/apps/{BUNDLE_ID}/builds?per_page=100&page={page}", server.url))
            .bearer_auth(token)
            .send()
            .expect("list builds");
        if response.status() == reqwest::StatusCode::NOT_FOUND && page == 1 {
            return builds;
        }
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let body: Value = response.json().expect("JSON");
        let listed = body["builds"].as_array().expect("builds");
        builds.extend(listed.iter().cloned());
        if listed.is_empty() || builds.len() as u64 >= body["total"].as_u64().expect("total") {
            return builds;
        }
    }
    builds
}

/// What a freshly started server must show: see the module documentation. Downloads every build
/// not downloaded before (all of them with `all`).
fn check_after_start(server: &Instance, token: &str, data: &Path, ledger: &mut Ledger, all: bool) {
    let context = || format!("--- server log\n{}", server.log_text());
    assert_database_sound(&data.join("otaship.db"));

    // Nothing temporary survives start-up.
    let temp = names_in(&data.join("tmp"));
    assert!(temp.is_empty(), "temporary files after start-up: {temp:?}\n{}", context());

    // Resumable uploads: every upload row is open (none caught completing) and owns its file,
    // and every file belongs to a row.
    let database = data.join("otaship.db");
    let rows: BTreeMap<String, String> = sqlite(&database, "SELECT id, state FROM uploads;")
        .lines()
        .map(|line| {
            let (id, state) = line.split_once('|').expect("id|state");
            (id.to_owned(), state.to_owned())
        })
        .collect();
    assert!(rows.values().all(|state| state == "open"), "uploads after start-up: {rows:?}");
    let files: BTreeSet<String> = names_in(&data.join("uploads"))
        .into_iter()
        .map(|name| name.strip_suffix(".part").unwrap_or_else(|| panic!("an odd file in uploads/: {name}")).to_owned())
        .collect();
    let ids: BTreeSet<String> = rows.keys().cloned().collect();
    assert_eq!(files, ids, "upload files and upload rows must match one to one\n{}", context());
    let orphan_parts =
        sqlite(&database, "SELECT count(*) FROM upload_parts WHERE upload_id NOT IN (SELECT id FROM uploads);");
    assert_eq!(orphan_parts.trim(), "0", "parts without their upload");

    // Builds: each listed one is a file that was sent, once, with its blob; no blob without one.
    let client = reqwest::blocking::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("client");
    let builds = listed_builds(&client, server, token);
    let mut seen_files = BTreeMap::new();
    let mut listed_ids = BTreeSet::new();
    for build in &builds {
        let id = build["id"].as_str().expect("id").to_owned();
        let sha256 = build["sha256"].as_str().expect("sha256");
        let index = *ledger
            .by_sha256
            .get(sha256)
            .unwrap_or_else(|| panic!("build {id} holds a file that was never sent (SHA-256 {sha256})\n{}", context()));
        if let Some(other) = seen_files.insert(index, id.clone()) {
            panic!("file {index} is two builds: {other} and {id}");
        }
        let file = &ledger.files[index];
        assert_eq!(build["size"].as_u64(), Some(file.bytes.len() as u64), "build {id}");
        let blob = data.join("blobs/builds").join(&id).join("app.ipa");
        let on_disk =
            std::fs::metadata(&blob).unwrap_or_else(|error| panic!("build {id} is listed without its blob: {error}"));
        assert_eq!(on_disk.len(), file.bytes.len() as u64, "the blob of build {id} is whole");
        if all || !ledger.verified.contains(&id) {
            let url = build["download_url"].as_str().expect("download_url");
            let response = client.get(url).send().expect("download");
            assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {url}");
            let bytes = response.bytes().expect("body");
            assert_eq!(hex(&Sha256::digest(&bytes)), sha256, "build {id} downloads with its SHA-256");
            assert!(bytes.as_ref() == file.bytes.as_slice(), "build {id} downloads byte-identical to file {index}");
            ledger.verified.insert(id.clone());
        }
        listed_ids.insert(id);
    }
    for (index, id) in &ledger.acknowledged {
        assert_eq!(
            seen_files.get(index),
            Some(id),
            "file {index} was acknowledged as build {id} but is not listed\n{}",
            context()
        );
    }
    let blob_dirs: BTreeSet<String> = names_in(&data.join("blobs/builds")).into_iter().collect();
    assert_eq!(blob_dirs, listed_ids, "blob folders and listed builds must match one to one\n{}", context());
    for id in &blob_dirs {
        let mut names = names_in(&data.join("blobs/builds").join(id));
        names.sort();
        assert!(
            names.iter().all(|name| name == "app.ipa" || name == "icon.png"),
            "build {id} holds stray files: {names:?}"
        );
    }
    let rows = sqlite(&database, "SELECT count(*) FROM builds;");
    assert_eq!(rows.trim(), builds.len().to_string(), "every build row is listed");
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn sigkill_during_uploads_loses_nothing_and_leaves_nothing_behind() {
    let seed = the_seed();
    println!("crash seed: {seed} (OTASHIP_CRASH_SEED={seed} replays this schedule of kills)");
    let mut rng = Rng(seed);
    let data_dir = tempfile::tempdir().expect("tempdir");
    let data = data_dir.path().to_owned();
    let created = otaship()
        .args(["token", "create", "--name", "crash", "--data-dir"])
        .arg(&data)
        .output()
        .expect("token create runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8(created.stdout).expect("UTF-8").trim().to_owned();

    let mut ledger = Ledger::default();
    let mut removed = Removed::default();
    let mut kills_in_flight = 0;
    let mut aims = Vec::new();
    let mut server = Instance::start(&data);
    for trial in 0..TRIALS {
        // Files cut by earlier kills go again (a CI job retrying), with new ones of each kind.
        let mut round: Vec<usize> = ledger.pending.iter().copied().take(RETRIES_PER_ROUND).collect();
        round.push(ledger.add(seed, Way::Single));
        round.push(ledger.add(seed, Way::Single));
        round.push(ledger.add(seed, Way::Resumable));
        let planned: u64 = round.iter().map(|&index| ledger.files[index].bytes.len() as u64).sum();
        let singles = round.iter().filter(|&&index| ledger.files[index].way == Way::Single).count() as u64;
        let resumables = round.len() as u64 - singles;
        let aim = Aim::choose(trial, &mut rng, planned, singles, resumables);
        let (outcomes, in_flight) = run_round(&mut server, &token, &ledger, &round, Some(aim));
        let log = server.log_text();
        let acknowledged = record(&mut ledger, outcomes, &log);
        kills_in_flight += usize::from(in_flight);
        println!(
            "trial {:>2}: {} uploads, kill {aim:?} ({}); {acknowledged} acknowledged",
            trial + 1,
            round.len(),
            if in_flight { "uploads in flight" } else { "after they all ended" }
        );
        aims.push(aim);
        // The server is down: what the kill left stays as it is until the next start-up.
        let before = Snapshot::of(&data);
        server = Instance::start(&data);
        check_after_start(&server, &token, &data, &mut ledger, false);
        let after = Snapshot::of(&data);
        removed.temp_files += before.temp_files.difference(&after.temp_files).count();
        removed.blob_dirs += before.blob_dirs.difference(&after.blob_dirs).count();
        removed.empty_blob_dirs += before.empty_blob_dirs.difference(&after.blob_dirs).count();
        removed.upload_files += before.upload_files.difference(&after.upload_files).count();
    }

    // No more kills: whatever was cut is sent again, and resumes or restarts as it should.
    for _ in 0..3 {
        if ledger.pending.is_empty() {
            break;
        }
        let round = ledger.pending.clone();
        let (outcomes, _) = run_round(&mut server, &token, &ledger, &round, None);
        let log = server.log_text();
        record(&mut ledger, outcomes, &log);
    }
    assert!(ledger.pending.is_empty(), "files never acknowledged without kills: {:?}", ledger.pending);
    check_after_start(&server, &token, &data, &mut ledger, true);
    assert_eq!(ledger.verified.len(), ledger.files.len(), "every file sent is exactly one build");
    server.stop();
    assert_database_sound(&data.join("otaship.db"));

    println!(
        "crash safety: {TRIALS} SIGKILLs ({kills_in_flight} with uploads in flight), {} files sent, {} builds, all \
         byte-identical; start-ups removed {} temporary files, {} blob folders of unrecorded builds ({} of them empty) \
         and {} files of uploads cut while completing",
        ledger.files.len(),
        ledger.verified.len(),
        removed.temp_files,
        removed.blob_dirs,
        removed.empty_blob_dirs,
        removed.upload_files,
    );
    assert!(kills_in_flight * 2 >= TRIALS, "most kills must land while uploads run, not after: {aims:?}");
}
