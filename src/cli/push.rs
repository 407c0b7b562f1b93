//! `otaship push`: upload a build from CI or a laptop.
//!
//! The file is read locally first, as `inspect` does, so that a broken archive is refused before
//! a byte is sent. Then it goes through the resumable upload API: its size and SHA-256 are
//! declared (the server answers at once if it already has a build of that file), its parts are
//! sent in parallel (each with its own SHA-256, retried with backoff), and the server checks the
//! whole before recording the build. A file that fits in one part is sent in one request. Run
//! the same command again after an interruption and only the missing parts are sent: the server
//! finds the open upload of the same file by its SHA-256.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use otaship_ipa::{FileSource, InspectOptions, Source, inspect_ipa};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::{CallError, Remote, RemoteArgs};
use super::progress::{Progress, ProgressMode};
use super::{Failure, print, runtime};

/// Arguments of `otaship push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The .ipa to upload.
    pub file: PathBuf,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Release notes (Markdown).
    #[arg(long, value_name = "TEXT", conflicts_with = "notes_file")]
    pub notes: Option<String>,
    /// Read the release notes from a file (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub notes_file: Option<PathBuf>,
    /// The channel to publish to, e.g. beta [default: default].
    #[arg(long, value_name = "NAME")]
    pub channel: Option<String>,
    /// Metadata shown with the build, e.g. --meta git_commit=$GITHUB_SHA (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Print only the build's JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// How to show progress on standard error.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Parts sent at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub parallel: u16,
    /// Part size; a file that fits in one part is sent in one request.
    #[arg(long, default_value = "8MiB", value_name = "SIZE", value_parser = parse_part_size)]
    pub part_size: u64,
    /// How many times a request that failed on the way (network, server error) is tried again.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
}

fn parse_part_size(text: &str) -> Result<u64, String> {
    let size = otaship_server::config::parse_size(text).ok_or_else(|| format!("{text:?} is not a size like 8MiB"))?;
    if (1 << 20..=256 << 20).contains(&size) { Ok(size) } else { Err("use 1MiB to 256MiB".to_owned()) }
}

/// Runs `otaship push`.
pub fn run(args: &PushArgs) -> Result<(), Failure> {
    let remote = Remote::new(&args.remote)?;
    let notes = read_notes(args)?;
    let metadata = parse_metadata(&args.meta)?;
    let size = check_locally(&args.file, args.json)?;
    let push = Push { remote, args, notes, metadata, size };
    let outcome = runtime()?.block_on(push.run())?;
    report(args, &outcome)
}

fn read_notes(args: &PushArgs) -> Result<Option<String>, Failure> {
    match &args.notes_file {
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read the release notes from standard input")?;
            Ok(Some(text))
        }
        Some(path) => Ok(Some(
            std::fs::read_to_string(path).with_context(|| format!("cannot read --notes-file {}", path.display()))?,
        )),
        None => Ok(args.notes.clone()),
    }
}

fn parse_metadata(entries: &[String]) -> Result<serde_json::Map<String, Value>, Failure> {
    let mut metadata = serde_json::Map::new();
    for entry in entries {
        let (key, value) = entry.split_once('=').ok_or_else(|| Failure::Refused {
            code: "bad-metadata".into(),
            message: format!("--meta {entry:?} has no `=`: write it as KEY=VALUE, as in --meta git_branch=main"),
        })?;
        metadata.insert(key.trim().to_owned(), Value::String(value.to_owned()));
    }
    Ok(metadata)
}

/// Reads the archive as `inspect` does: refuses what the server would refuse, warns about what
/// will not install. Returns the file's length.
fn check_locally(path: &Path, quiet: bool) -> Result<u64, Failure> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let source = FileSource::new(file).with_context(|| format!("cannot read {}", path.display()))?;
    let report = inspect_ipa(&source, &InspectOptions::default())?.report;
    if !report.installable.ok {
        eprintln!("warning: this build will not install over the air; uploading it anyway:");
        for problem in &report.installable.problems {
            eprintln!("  {}: {}", problem.code, problem.message);
        }
    } else if !quiet {
        let name = report.name.as_deref().unwrap_or(&report.bundle_id);
        let version = report.version.as_deref().unwrap_or("?");
        let build = report.build.as_deref().unwrap_or("?");
        eprintln!("pushing {name} {version} ({build}), {}", indicatif::HumanBytes(source.len()));
    }
    Ok(source.len())
}

/// One push in progress.
struct Push<'a> {
    remote: Remote,
    args: &'a PushArgs,
    notes: Option<String>,
    metadata: serde_json::Map<String, Value>,
    size: u64,
}

/// How a push ended.
struct Outcome {
    build: Value,
    /// False when the server already had the file.
    created: bool,
}

/// The server's view of an upload (the fields the client needs).
#[derive(Debug, Deserialize)]
struct UploadState {
    id: String,
    part_size: u64,
    part_count: u32,
    missing_parts: Vec<u32>,
}

impl UploadState {
    /// Keeps only part numbers that exist, once each: the list comes from the server.
    fn checked(mut self) -> Self {
        let count = self.part_count;
        self.missing_parts.retain(|number| (1..=count).contains(number));
        self.missing_parts.sort_unstable();
        self.missing_parts.dedup();
        self
    }
}

#[derive(Debug, Deserialize)]
struct CreatedUpload {
    upload: Option<UploadState>,
    build: Option<Value>,
}

/// Waits before attempt `attempt` (1-based) of a request: 0.5 s, 1 s, 2 s, ... up to 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.saturating_sub(1).min(4)))
}

impl Push<'_> {
    fn file_name(&self) -> String {
        self.args.file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|| "app.ipa".into())
    }

    /// Runs `attempt` until it succeeds, fails for good, or runs out of retries.
    async fn with_retries<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(error) if error.is_transient() && tries <= self.args.retries => {
                    let wait = backoff(tries);
                    eprintln!("{what} failed ({error}); trying again in {:.1} s", wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    fn progress_mode(&self) -> ProgressMode {
        if self.args.json && self.args.progress == ProgressMode::Auto && !std::io::stderr().is_terminal() {
            ProgressMode::None
        } else {
            self.args.progress
        }
    }

    /// Declares the upload, or finds the open one of the same file, or the build that has it.
    async fn create(&self, sha256: &str) -> Result<CreatedUpload, CallError> {
        let body = json!({
            "file_name": self.file_name(),
            "size": self.size,
            "sha256": sha256,
            "part_size": self.args.part_size,
            "notes": self.notes,
            "channel": self.args.channel,
            "metadata": self.metadata,
        });
        self.with_retries("creating the upload", || {
            self.remote.json(self.remote.request(Method::POST, "/api/v1/uploads").json(&body))
        })
        .await
    }

    /// Declares the file, sends what the server lacks, completes. Small files go the same way
    /// (as one part): declaring first checks the token, channel and metadata, and finds a build
    /// of the same file, before a byte of the file is sent.
    async fn run(&self) -> Result<Outcome, Failure> {
        let path = self.args.file.clone();
        let part_size = self.args.part_size;
        let (sha256, digests) = tokio::task::spawn_blocking(move || hash_file(&path, part_size))
            .await
            .map_err(|error| Failure::Failed(anyhow!("hashing failed: {error}")))?
            .with_context(|| format!("cannot read {}", self.args.file.display()))?;
        let mut created = self.create(&sha256).await?;
        // Each round sends what the server lacks and completes. Another round follows when the
        // answer to completing was lost, or when another push of the same file took the upload
        // over; declaring the file again then says where things stand.
        for _ in 0..=self.args.retries {
            let upload = match (created.upload, created.build) {
                (_, Some(build)) => return Ok(Outcome { build, created: false }),
                (Some(upload), None) if upload.part_size > 0 => upload.checked(),
                (Some(_), None) => return Err(Failure::Failed(anyhow!("the server declared a part size of 0"))),
                (None, None) => {
                    return Err(Failure::Failed(anyhow!("the server answered neither an upload nor a build")));
                }
            };
            if let Err(error) = self.send_parts(&upload, &digests).await {
                if !changed_hands(&error) {
                    return Err(stopped(error));
                }
                eprintln!("the upload changed hands ({error}); asking the server where it stands");
                created = self.create(&sha256).await?;
                continue;
            }
            let request = self.remote.request(Method::POST, &format!("/api/v1/uploads/{}/complete", upload.id));
            match self.remote.send(request).await {
                Ok(response) => {
                    let created = response.status() == reqwest::StatusCode::CREATED;
                    let build = response.json().await.map_err(|error| Failure::from(CallError::Transport(error)))?;
                    return Ok(Outcome { build, created });
                }
                Err(error) if error.is_transient() || changed_hands(&error) => {
                    eprintln!("completing the upload failed ({error}); asking the server where it stands");
                    tokio::time::sleep(backoff(1)).await;
                    created = self.create(&sha256).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(Failure::Failed(anyhow!("the server could not complete the upload; run the same command again")))
    }

    async fn send_parts(&self, upload: &UploadState, digests: &PartDigests) -> Result<(), CallError> {
        let part_length =
            |number: u32| upload.part_size.min(self.size.saturating_sub(u64::from(number - 1) * upload.part_size));
        let missing_bytes: u64 = upload.missing_parts.iter().map(|&number| part_length(number)).sum();
        if upload.missing_parts.len() < upload.part_count as usize && !self.args.json {
            eprintln!(
                "resuming: the server already has {} of {} parts",
                upload.part_count as usize - upload.missing_parts.len(),
                upload.part_count
            );
        }
        let progress = Arc::new(Progress::start(self.progress_mode(), self.size, self.size - missing_bytes));
        let source = File::open(&self.args.file)
            .and_then(FileSource::new)
            .map_err(|error| io_as_call_error(&self.args.file, error))?;
        let source = Arc::new(source);
        let sent = futures_util::stream::iter(upload.missing_parts.iter().copied())
            .map(|number| {
                let offset = u64::from(number - 1) * upload.part_size;
                // Digests computed up front are for the part size asked for; a resumed upload
                // may have another, and then each part is hashed as it is read.
                let digest = (digests.part_size == upload.part_size)
                    .then(|| digests.digests.get(number as usize - 1).copied())
                    .flatten();
                let part = PartToSend { number, offset, length: part_length(number), digest };
                self.send_part(&upload.id, part, Arc::clone(&source), Arc::clone(&progress))
            })
            .buffer_unordered(usize::from(self.args.parallel))
            .try_collect::<Vec<()>>()
            .await;
        progress.finish();
        sent.map(drop)
    }

    async fn send_part(
        &self,
        upload_id: &str,
        part: PartToSend,
        source: Arc<FileSource>,
        progress: Arc<Progress>,
    ) -> Result<(), CallError> {
        let PartToSend { number, offset, length, digest } = part;
        let (bytes, digest) = tokio::task::spawn_blocking(move || -> std::io::Result<(Bytes, [u8; 32])> {
            let mut buffer = vec![0u8; usize::try_from(length).unwrap_or(0)];
            source.read_exact_at(offset, &mut buffer)?;
            let digest = digest.unwrap_or_else(|| Sha256::digest(&buffer).into());
            Ok((Bytes::from(buffer), digest))
        })
        .await
        .map_err(|error| io_as_call_error(&self.args.file, std::io::Error::other(error)))?
        .map_err(|error| io_as_call_error(&self.args.file, error))?;
        let digest = format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(digest));
        let path = format!("/api/v1/uploads/{upload_id}/parts/{number}");
        self.with_retries(&format!("part {number}"), || {
            let sent = Arc::new(AtomicU64::new(0));
            let chunks = chunked(bytes.clone(), 256 << 10);
            let counter = Arc::clone(&sent);
            let counting = Arc::clone(&progress);
            let stream = futures_util::stream::iter(chunks).map(move |chunk| {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                counting.advance(chunk.len() as u64);
                Ok::<Bytes, std::io::Error>(chunk)
            });
            let request = self
                .remote
                .request(Method::PUT, &path)
                .header("content-digest", &digest)
                .header(reqwest::header::CONTENT_LENGTH, length)
                .body(reqwest::Body::wrap_stream(stream));
            let progress = Arc::clone(&progress);
            async move {
                let result = self.remote.send(request).await.map(drop);
                if result.is_err() {
                    progress.retract(sent.load(Ordering::Relaxed));
                }
                result
            }
        })
        .await
    }
}

/// Slices of `bytes` of at most `size` bytes (no copies), so that progress moves while a part
/// is on its way.
fn chunked(bytes: Bytes, size: usize) -> Vec<Bytes> {
    let mut chunks = Vec::with_capacity(bytes.len().div_ceil(size.max(1)));
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + size).min(bytes.len());
        chunks.push(bytes.slice(start..end));
        start = end;
    }
    chunks
}

fn io_as_call_error(path: &Path, error: std::io::Error) -> CallError {
    CallError::Local(anyhow::Error::new(error).context(format!("cannot read {}", path.display())))
}

/// Whether the upload was completed, taken over or dropped by someone else (another push of the
/// same file, usually): declaring the file again tells what became of it.
fn changed_hands(error: &CallError) -> bool {
    matches!(error, CallError::Status { code, .. }
        if code == "upload-not-open" || code == "upload-not-found" || code == "upload-incomplete")
}

/// The failure of a push whose parts could not all be sent: running it again resumes.
fn stopped(error: CallError) -> Failure {
    match Failure::from(error) {
        Failure::Failed(cause) => Failure::Failed(anyhow!(
            "the upload stopped: {cause:#}. Run the same command again to resume: the server keeps the parts it \
             received (for 24 h unless it was set up otherwise)"
        )),
        other => other,
    }
}

/// One part to send.
struct PartToSend {
    number: u32,
    offset: u64,
    length: u64,
    /// Its SHA-256, when computed up front.
    digest: Option<[u8; 32]>,
}

/// The SHA-256 of each part of a file, for one part size.
struct PartDigests {
    part_size: u64,
    digests: Vec<[u8; 32]>,
}

/// The whole file's SHA-256 (hex) and each part's, in one read of the file: two threads, one
/// per hasher, so that the server's check of every part costs no time while sending.
fn hash_file(path: &Path, part_size: u64) -> std::io::Result<(String, PartDigests)> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Bytes>(8);
    let parts = std::thread::spawn(move || {
        let mut digests = Vec::new();
        let mut hasher = Sha256::new();
        let mut in_part = 0u64;
        for chunk in receiver {
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = usize::try_from(part_size - in_part).unwrap_or(usize::MAX).min(rest.len());
                hasher.update(&rest[..take]);
                in_part += take as u64;
                rest = &rest[take..];
                if in_part == part_size {
                    digests.push(std::mem::take(&mut hasher).finalize().into());
                    in_part = 0;
                }
            }
        }
        if in_part > 0 {
            digests.push(hasher.finalize().into());
        }
        digests
    });
    let mut file = File::open(path)?;
    let mut whole = Sha256::new();
    loop {
        let mut buffer = vec![0u8; 1 << 20];
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        buffer.truncate(read);
        let chunk = Bytes::from(buffer);
        whole.update(&chunk);
        if sender.send(chunk).is_err() {
            break;
        }
    }
    drop(sender);
    let digests = parts.join().map_err(|_| std::io::Error::other("the part hasher failed"))?;
    let sha256 = otaship_server::tokens::hex(&whole.finalize());
    Ok((sha256, PartDigests { part_size, digests }))
}

/// Prints the result: the build's JSON, or a summary with the install URL (and its QR code on a
/// terminal).
fn report(args: &PushArgs, outcome: &Outcome) -> Result<(), Failure> {
    let build = &outcome.build;
    if args.json {
        return print(&format!("{}\n", serde_json::to_string_pretty(build).context("cannot print the build")?));
    }
    let field = |name: &str| build[name].as_str().unwrap_or("?").to_owned();
    let install_url = field("install_url");
    let verb = if outcome.created { "uploaded" } else { "already on the server (same SHA-256), not stored twice:" };
    let mut text = format!(
        "{verb} {} {} ({}), build {} in channel {}\ninstall: {install_url}\n",
        build["name"].as_str().unwrap_or(&field("bundle_id")),
        field("version"),
        field("build"),
        field("id"),
        field("channel"),
    );
    if std::io::stdout().is_terminal() {
        text.push_str(&super::terminal_qr(&install_url));
    }
    print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_eight_seconds() {
        let waits: Vec<u64> = (1..=7).map(|attempt| backoff(attempt).as_millis() as u64).collect();
        assert_eq!(waits, vec![500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn chunks_cover_the_bytes_in_order() {
        let bytes = Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<u8>>());
        let chunks = chunked(bytes.clone(), 300);
        assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), vec![300, 300, 300, 100]);
        assert_eq!(chunks.concat(), bytes.to_vec());
    }

    #[test]
    fn one_read_gives_the_whole_and_each_parts_digest() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..(3 << 20) + 5).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes)?;
        let (whole, parts) = hash_file(&path, 1 << 20)?;
        let hex = |digest: &[u8]| digest.iter().map(|byte| format!("{byte:02x}")).collect::<String>();
        assert_eq!(whole, hex(&Sha256::digest(&bytes)));
        assert_eq!(parts.digests.len(), 4);
        for (index, chunk) in bytes.chunks(1 << 20).enumerate() {
            assert_eq!(parts.digests[index], <[u8; 32]>::from(Sha256::digest(chunk)));
        }
        Ok(())
    }

    #[test]
    fn part_lists_from_the_server_are_checked() {
        let state = UploadState { id: "u".into(), part_size: 1, part_count: 3, missing_parts: vec![3, 0, 1, 3, 9] };
        assert_eq!(state.checked().missing_parts, vec![1, 3]);
    }

    #[test]
    fn part_sizes_are_bounded() {
        assert_eq!(parse_part_size("8MiB"), Ok(8 << 20));
        assert!(parse_part_size("1KiB").is_err());
        assert!(parse_part_size("lots").is_err());
    }
}
