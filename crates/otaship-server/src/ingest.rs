//! The upload pipeline: stream the body to a temporary file in the data directory while hashing
//! it, refuse it if too large, inspect it, move the blobs into place, and record the build in
//! one transaction. Whatever fails on the way leaves no row and no file behind. A file that was
//! uploaded before (same SHA-256) is not stored twice: the existing build is the answer, so
//! that CI retries are safe.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::http::StatusCode;
use futures_util::{Stream, StreamExt};
use otaship_ipa::{FileSource, InspectOptions, IpaReport, inspect_ipa};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::db::{BuildRow, Recorded};
use crate::error::ApiError;
use crate::storage::{BlobKey, BlobKind};
use crate::tokens::{hex, random_hex};

/// A temporary upload file, deleted when dropped unless it was moved into place.
pub struct TempUpload {
    path: PathBuf,
    kept: bool,
}

impl TempUpload {
    /// A new, unique path in `dir`.
    pub fn new(dir: &Path) -> Self {
        TempUpload { path: dir.join(format!("upload-{}.part", random_hex(16))), kept: false }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file was moved away; do not delete anything.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if !self.kept {
            // Best effort: start-up clears the temporary folder of anything left.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What was received.
pub struct Received {
    /// The temporary file.
    pub file: TempUpload,
    /// Bytes received.
    pub size: u64,
    /// SHA-256 hex.
    pub sha256: String,
}

/// Streams a body into a temporary file, hashing it and enforcing the size limit.
pub async fn receive<S, E>(state: &AppState, mut body: S) -> Result<Received, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let upload = TempUpload::new(&state.config.temp_dir());
    let mut file = tokio::fs::File::create(upload.path()).await.map_err(storage_error)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "upload-interrupted",
                format!("The upload was cut off ({error}); send it again."),
            )
        })?;
        size += chunk.len() as u64;
        if size > state.config.max_upload_size {
            return Err(too_large(state.config.max_upload_size));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(storage_error)?;
    }
    file.flush().await.map_err(storage_error)?;
    file.sync_all().await.map_err(storage_error)?;
    drop(file);
    if size == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty-upload",
            "The upload is empty; send the .ipa file as the body.",
        ));
    }
    Ok(Received { file: upload, size, sha256: hex(&hasher.finalize()) })
}

/// The error for an upload over the limit.
pub fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload-too-large",
        format!("The upload is larger than this server's limit of {limit} bytes; raise --max-upload-size."),
    )
}

/// Maps a storage failure: a full disk is a 507 that says so; object storage that fails is a
/// 503 (it is usually passing, and not the request's fault).
pub fn storage_error(error: io::Error) -> ApiError {
    if let Some(failure) = error.get_ref().and_then(|inner| inner.downcast_ref::<crate::storage::ObjectStoreFailure>())
    {
        tracing::warn!(error = %failure, "object storage failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-unavailable",
            "The server's object storage did not answer as it should; try again in a moment (the server's log \
             says more).",
        )
    } else if error.kind() == io::ErrorKind::StorageFull || error.raw_os_error() == Some(28) {
        ApiError::storage_full()
    } else {
        ApiError::internal(error)
    }
}

/// What the uploader says about a build besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildDetails {
    /// Release notes.
    pub notes: Option<String>,
    /// Channel; `default` when none was named.
    pub channel: String,
    /// Key/value pairs such as the git branch, commit and CI run URL.
    pub metadata: BTreeMap<String, String>,
}

/// Release notes are text for people; a megabyte is far more than any changelog.
pub const MAX_NOTES_BYTES: usize = 1 << 20;
const MAX_CHANNEL_CHARS: usize = 64;
const MAX_METADATA_ENTRIES: usize = 32;
const MAX_METADATA_KEY_CHARS: usize = 64;
const MAX_METADATA_VALUE_BYTES: usize = 2048;

impl BuildDetails {
    /// Checks and normalises what an uploader sent: empty notes are none, the channel is a
    /// lower-case name, metadata keys are short identifiers.
    pub fn new(
        notes: Option<String>,
        channel: Option<&str>,
        metadata: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ApiError> {
        let notes = notes.filter(|text| !text.trim().is_empty());
        // A NUL is never part of real text, and PostgreSQL cannot store one.
        if notes.as_ref().is_some_and(|text| text.contains('\0')) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-notes",
                "The release notes hold a NUL character; remove it and upload again.",
            ));
        }
        if notes.as_ref().is_some_and(|text| text.len() > MAX_NOTES_BYTES) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "notes-too-large",
                format!("The release notes are larger than {MAX_NOTES_BYTES} bytes."),
            ));
        }
        let channel = match channel.map(str::trim).filter(|name| !name.is_empty()) {
            None => "default".to_owned(),
            Some(name)
                if name.len() <= MAX_CHANNEL_CHARS
                    && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.')) =>
            {
                name.to_ascii_lowercase()
            }
            Some(name) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-channel",
                    format!(
                        "The channel {name:?} is not a valid name: use up to {MAX_CHANNEL_CHARS} letters, digits, \
                         dots, dashes or underscores, such as `beta`."
                    ),
                ));
            }
        };
        let mut entries = BTreeMap::new();
        for (key, value) in metadata {
            let key = key.trim().to_owned();
            let valid_key = !key.is_empty()
                && key.len() <= MAX_METADATA_KEY_CHARS
                && key.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
            if !valid_key {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-metadata",
                    format!(
                        "The metadata key {key:?} is not valid: use up to {MAX_METADATA_KEY_CHARS} letters, digits, \
                         dots, dashes or underscores, as in `git_branch=main`."
                    ),
                ));
            }
            if value.contains('\0') {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-metadata",
                    format!("The metadata value of {key:?} holds a NUL character; remove it."),
                ));
            }
            if value.len() > MAX_METADATA_VALUE_BYTES {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-metadata",
                    format!("The metadata value of {key:?} is longer than {MAX_METADATA_VALUE_BYTES} bytes."),
                ));
            }
            entries.insert(key, value);
        }
        if entries.len() > MAX_METADATA_ENTRIES {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-metadata",
                format!("Send at most {MAX_METADATA_ENTRIES} metadata entries."),
            ));
        }
        Ok(BuildDetails { notes, channel, metadata: entries })
    }

    /// Parses one `key=value` metadata entry.
    pub fn metadata_entry(text: &str) -> Result<(String, String), ApiError> {
        match text.split_once('=') {
            Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
            None => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-metadata",
                format!("The metadata entry {text:?} has no `=`: write it as key=value, as in `git_branch=main`."),
            )),
        }
    }
}

/// A build that an upload produced.
pub struct Ingested {
    /// The build.
    pub build: BuildRow,
    /// False when the same file had been uploaded before and `build` is that earlier build.
    pub created: bool,
}

/// Inspects a received upload and records it as a build, or returns the build that already
/// holds the same file.
pub async fn ingest(state: &AppState, mut received: Received, details: BuildDetails) -> Result<Ingested, ApiError> {
    if let Some(build) = state.db.build_by_sha256(&received.sha256).await? {
        tracing::info!(build.id = %build.id, "upload is identical to build {}; kept the existing one", build.id);
        return Ok(Ingested { build, created: false });
    }
    let path = received.file.path().to_owned();
    let inspection = tokio::task::spawn_blocking(move || {
        let source = FileSource::new(std::fs::File::open(&path)?)?;
        inspect_ipa(&source, &InspectOptions::default())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|error| match error {
        otaship_ipa::IpaError::Io(io) => ApiError::internal(io),
        refused => ApiError::new(StatusCode::BAD_REQUEST, refused.code(), capitalise(&refused.to_string())),
    })?;
    let mut report: IpaReport = inspection.report;
    report.sha256 = Some(received.sha256.clone());
    let id = random_hex(16);
    let build = BuildRow {
        id: id.clone(),
        install_token: random_hex(16),
        bundle_id: report.bundle_id.clone(),
        name: report.name.clone(),
        version: report.version.clone(),
        build: report.build.clone(),
        size: received.size,
        sha256: received.sha256.clone(),
        notes: details.notes,
        channel: details.channel,
        metadata: details.metadata,
        created_at: OffsetDateTime::now_utc(),
        has_icon: inspection.icon_png.is_some(),
        report: serde_json::to_string(&report).map_err(ApiError::internal)?,
    };
    let stored = async {
        state.storage.put_file(&BlobKey::new(&id, BlobKind::Ipa), received.file.path()).await?;
        received.file.keep();
        if let Some(icon) = &inspection.icon_png {
            state.storage.put_bytes(&BlobKey::new(&id, BlobKind::Icon), icon).await?;
        }
        Ok::<(), io::Error>(())
    }
    .await;
    if let Err(error) = stored {
        let _ = state.storage.delete_build(&id).await;
        return Err(storage_error(error));
    }
    match state.db.insert_build(&build).await {
        Ok(Recorded::Inserted) => {}
        Ok(Recorded::Existing(existing)) => {
            // The same file finished uploading concurrently; keep the first.
            let _ = state.storage.delete_build(&id).await;
            return Ok(Ingested { build: *existing, created: false });
        }
        Err(error) => {
            let _ = state.storage.delete_build(&id).await;
            return Err(error.into());
        }
    }
    tracing::info!(build.id = %build.id, bundle_id = %build.bundle_id, size = build.size, "stored build {}", build.id);
    // The channel's stable page gets its token now rather than on its first view, so that
    // showing the build's pages needs no write (a full disk must not break them).
    if let Err(error) = state.db.channel_page_token(&build.bundle_id, &build.channel, &random_hex(16)).await {
        tracing::warn!(build.id = %build.id, %error, "could not make the channel page's token");
    }
    // The build is stored: failing the upload now would only make the client retry and get the
    // existing build, never announced. The log says what went wrong.
    if let Err(error) = crate::webhooks::build_uploaded(state, &build).await {
        tracing::warn!(build.id = %build.id, %error, "could not enqueue the build.uploaded webhooks");
    }
    Ok(Ingested { build, created: true })
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Removes the files of a build whose row was just deleted. Every deletion (the API, the web UI,
/// retention) deletes the row first, so that nothing serves a build whose files are half gone,
/// then calls this. A failure is logged, not returned: the row is gone, and reconciliation
/// removes the files later (at start-up on local disk, periodically on object storage).
pub async fn remove_files(state: &AppState, build: &BuildRow) {
    if let Err(error) = state.storage.delete_build(&build.id).await {
        tracing::warn!(build.id = %build.id, %error, "could not delete the files of a deleted build");
    }
}

/// How old a blob without a build row must be before it counts as left over, on shared object
/// storage: another instance may be between storing a build's blobs and recording the build.
pub const SHARED_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes this instance's temporary files (start-up: whatever a crash left in them).
pub async fn clear_temp(state: &AppState) -> anyhow::Result<()> {
    let mut entries = tokio::fs::read_dir(state.config.temp_dir()).await?;
    while let Some(entry) = entries.next_entry().await? {
        tokio::fs::remove_file(entry.path()).await.ok();
    }
    Ok(())
}

/// Removes blobs without a build row: at once on local disk (this instance owns it), after
/// [`SHARED_GRACE`] on object storage (shared with instances that may be mid-upload). Returns
/// how many builds' blobs went.
pub async fn reconcile(state: &AppState) -> anyhow::Result<usize> {
    // Listed before the rows are read: a build recorded in between is then known. On local
    // disk, also the folders a crash left empty (or holding only a blob's temporary name): no
    // blob lists them, but they would pile up.
    let stored = state.storage.list_blobs().await?;
    let folders = state.storage.build_folders().await?;
    let known: std::collections::HashSet<String> = state.db.build_ids().await?.into_iter().collect();
    let grace = if state.storage.is_local() { std::time::Duration::ZERO } else { SHARED_GRACE };
    let now = std::time::SystemTime::now();
    let mut orphans = std::collections::BTreeMap::<String, bool>::new();
    for blob in stored {
        let Some(id) = blob.key.strip_prefix("builds/").and_then(|rest| rest.split('/').next()) else { continue };
        if known.contains(id) {
            continue;
        }
        let old_enough = now.duration_since(blob.modified).unwrap_or_default() >= grace;
        *orphans.entry(id.to_owned()).or_insert(true) &= old_enough;
    }
    for id in folders {
        if !known.contains(&id) {
            orphans.entry(id).or_insert(true);
        }
    }
    let mut removed = 0;
    for (id, old_enough) in orphans {
        if old_enough {
            tracing::warn!(build.id = %id, "removing blobs of a build that was never recorded");
            state.storage.delete_build(&id).await?;
            removed += 1;
        }
    }
    Ok(removed)
}
