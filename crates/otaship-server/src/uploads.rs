//! Resumable uploads: create an upload (size, SHA-256, file name), send its parts in any order,
//! then complete it.
//!
//! This module owns the upload's lifecycle and its bytes, stored one of two ways:
//!
//! - **local disk**: one file, `uploads/<id>.part` in the data directory, created at its full
//!   (sparse) length; each part is written at its own offset, so parts may arrive in any order
//!   and in parallel, and completing needs no copy. A part sent again overwrites itself.
//! - **object storage** (several instances): each part is an object of its own,
//!   `uploads/<id>/<n>-<random>`, so the parts of one upload may reach different instances; a
//!   part sent again goes to a new object that replaces the recorded one once checked, so a
//!   recorded part's object never changes. Completing fetches the parts in order into a
//!   temporary file while hashing them.
//!
//! A part counts as received only once its length and SHA-256 matched what the client declared.
//! Completing checks the whole file's SHA-256, then hands the file to the same ingest as a
//! single-request upload. Exactly one request completes an upload: it moves the row to
//! `completing` under a lease it renews while it works; an instance that dies mid-way lets the
//! lease lapse, and any instance's sweep deletes the upload.
//!
//! On local disk, completing must hash the whole file, which for a large build takes most of a
//! second per GiB; so while parts arrive, [`InFlight`] hashes the received prefix in the
//! background, and completing only hashes what is left. That state lives in this instance's
//! memory: an instance that did not see the parts (or restarted) simply hashes the whole file.
//!
//! An upload nobody touches for `--upload-expiry` is abandoned: [`sweep_expired`] deletes its
//! row and its file. Creating an upload for a file that already has an open upload returns that
//! upload with the parts it holds, which is how an interrupted push resumes on any machine.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::AppState;
use crate::db::{BuildRow, PartRecorded, PartRow, UploadRow};
use crate::error::ApiError;
use crate::ingest::{BuildDetails, Ingested, Received, TempUpload, ingest, storage_error, too_large};
use crate::tokens::{hex, random_hex};

/// Part size when the client does not ask for one.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// Smallest part size accepted (except for the last part, which holds the rest).
pub const MIN_PART_SIZE: u64 = 1 << 20;
/// Largest part size accepted.
pub const MAX_PART_SIZE: u64 = 256 << 20;
/// Most parts an upload may have; larger files get larger parts.
pub const MAX_PARTS: u64 = 10_000;
/// Bytes of a part gathered before one write to disk.
const WRITE_BATCH: usize = 1 << 20;

/// What a client asks for when it creates an upload.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// The file's name, for the record.
    pub file_name: String,
    /// Bytes of the whole file.
    pub size: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    /// Preferred part size.
    pub part_size: Option<u64>,
    /// What the build will be recorded with.
    pub details: BuildDetails,
}

/// The answer to creating an upload.
pub enum Created {
    /// A new upload, or (`resumed`) the open upload of the same file with the parts it holds.
    Upload {
        /// The upload.
        upload: UploadRow,
        /// Whether it existed before this request.
        resumed: bool,
    },
    /// The server already has a build of this file; there is nothing to send.
    Build(BuildRow),
}

/// A part that was received and checked.
#[derive(Debug, Clone)]
pub struct PartReceipt {
    /// Its number (1-based).
    pub number: u32,
    /// Its length.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// The number of parts of an upload.
pub fn part_count(upload: &UploadRow) -> u32 {
    u32::try_from(upload.size.div_ceil(upload.part_size)).unwrap_or(u32::MAX)
}

/// Part numbers not yet received, ascending.
pub fn missing_parts(upload: &UploadRow) -> Vec<u32> {
    let mut received = upload.received.iter().peekable();
    (1..=part_count(upload))
        .filter(|number| {
            while received.next_if(|&&got| got < *number).is_some() {}
            received.next_if_eq(&number).is_none()
        })
        .collect()
}

/// The byte range (offset, length) of part `number`, or an error that names the valid range.
pub fn part_range(upload: &UploadRow, number: u32) -> Result<(u64, u64), ApiError> {
    let count = part_count(upload);
    if number == 0 || number > count {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-part-number",
            format!("This upload has parts 1 to {count}; part {number} does not exist."),
        ));
    }
    let offset = u64::from(number - 1) * upload.part_size;
    Ok((offset, upload.part_size.min(upload.size - offset)))
}

/// The part size for a file: the client's preference within limits, raised so that no file needs
/// more than [`MAX_PARTS`] parts.
fn choose_part_size(size: u64, requested: Option<u64>) -> u64 {
    let wanted = requested.unwrap_or(DEFAULT_PART_SIZE).clamp(MIN_PART_SIZE, MAX_PART_SIZE);
    wanted.max(size.div_ceil(MAX_PARTS))
}

fn is_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Where an upload's bytes live on local storage.
fn upload_file(state: &AppState, upload_id: &str) -> io::Result<PathBuf> {
    if !is_upload_id(upload_id) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an upload id"));
    }
    Ok(state.config.uploads_dir().join(format!("{upload_id}.part")))
}

/// Keeps only a plausible base name: clients send paths, and the name is only for people.
fn clean_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if cleaned.trim().is_empty() { "app.ipa".to_owned() } else { cleaned }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Creates an upload, resumes the open upload of the same file, or answers with the build that
/// already holds it.
pub async fn create(state: &AppState, request: NewUpload) -> Result<Created, ApiError> {
    let sha256 = request.sha256.trim().to_ascii_lowercase();
    if !is_sha256_hex(&sha256) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-sha256",
            "`sha256` must be the file's SHA-256 as 64 hex digits (`shasum -a 256 app.ipa`).",
        ));
    }
    if request.size == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty-upload",
            "`size` must be the file's length in bytes, above 0.",
        ));
    }
    if request.size > state.config.max_upload_size {
        return Err(too_large(state.config.max_upload_size));
    }
    if let Some(build) = state.db.build_by_sha256(&sha256).await? {
        return Ok(Created::Build(build));
    }
    let expires_at = OffsetDateTime::now_utc() + state.config.upload_expiry;
    if let Some(mut upload) = state.db.open_upload_for(&sha256, request.size).await? {
        upload.notes = request.details.notes;
        upload.channel = request.details.channel;
        upload.metadata = request.details.metadata;
        upload.expires_at = expires_at;
        state.db.update_upload(&upload).await?;
        return Ok(Created::Upload { upload, resumed: true });
    }
    let upload = UploadRow {
        id: random_hex(16),
        file_name: clean_file_name(&request.file_name),
        size: request.size,
        sha256,
        part_size: choose_part_size(request.size, request.part_size),
        notes: request.details.notes,
        channel: request.details.channel,
        metadata: request.details.metadata,
        created_at: OffsetDateTime::now_utc(),
        expires_at,
        received: Vec::new(),
    };
    if state.storage.is_local() {
        let path = upload_file(state, &upload.id).map_err(ApiError::internal)?;
        // Sparse: the disk fills as parts arrive, and a full disk says so on the part that hits
        // it.
        let created = async {
            let file = tokio::fs::File::create_new(&path).await?;
            file.set_len(upload.size).await?;
            file.sync_all().await
        }
        .await;
        if let Err(error) = created {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(storage_error(error));
        }
        if let Err(error) = state.db.insert_upload(&upload).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(error.into());
        }
    } else {
        // On object storage each part becomes an object of its own when it arrives.
        state.db.insert_upload(&upload).await?;
    }
    tracing::info!(upload.id = %upload.id, size = upload.size, parts = part_count(&upload), "upload created");
    Ok(Created::Upload { upload, resumed: false })
}

/// The open upload `id`, or a 404 that says how to go on.
pub async fn find(state: &AppState, id: &str) -> Result<UploadRow, ApiError> {
    if !is_upload_id(id) {
        return Err(upload_not_found());
    }
    state.db.upload(id).await?.ok_or_else(upload_not_found)
}

fn not_open() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "upload-not-open",
        "This upload is being completed (or is gone); it takes no more parts.",
    )
}

fn upload_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "upload-not-found",
        "This upload does not exist: it was completed, cancelled, or abandoned for too long. Create a new upload \
         (`otaship push` does this by itself).",
    )
}

/// Receives part `number` of upload `id`: writes it at its offset while hashing it, then
/// records it if its length and SHA-256 are the declared ones.
pub async fn put_part<S, E>(
    state: &AppState,
    id: &str,
    number: u32,
    declared_sha256: [u8; 32],
    declared_length: Option<u64>,
    mut body: S,
) -> Result<PartReceipt, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let upload = find(state, id).await?;
    let (offset, expected) = part_range(&upload, number)?;
    let size_mismatch = |got: u64| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "part-size-mismatch",
            format!(
                "Part {number} must be exactly {expected} bytes (the part size is {}; the last part holds the rest), \
                 not {got}.",
                upload.part_size
            ),
        )
    };
    if let Some(length) = declared_length
        && length != expected
    {
        return Err(size_mismatch(length));
    }
    // The same part again (a retry whose first answer was lost, or another push of the same
    // file): its bytes are stored already, so the body is only checked, never written, and a
    // resend damaged on the way cannot spoil them. Other content replaces the part: on local
    // disk it stops counting until it is checked (it is written over the old bytes); on object
    // storage it goes to an object of its own, which replaces the old one once checked.
    let already_there = state.db.part_sha256(id, number).await?.as_deref() == Some(hex(&declared_sha256).as_str());
    let mut sink = if already_there {
        Sink::Discard
    } else if state.storage.is_local() {
        if !state.db.forget_part(id, number).await? {
            return Err(not_open());
        }
        state.in_flight.forget(id, number, offset).await;
        let gate = state.in_flight.gate(id);
        let path = upload_file(state, id).map_err(ApiError::internal)?;
        match tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(path)).await {
            Ok(Ok(file)) => Sink::File { file: Arc::new(file), gate, offset },
            // Row without a file: a crash between creating both, or a sweep in progress.
            Ok(Err(error)) if error.kind() == io::ErrorKind::NotFound => return Err(upload_not_found()),
            Ok(Err(error)) => return Err(storage_error(error)),
            Err(error) => return Err(ApiError::internal(error)),
        }
    } else {
        Sink::Object(Box::new(state.storage.part_writer(id, number).map_err(ApiError::internal)?))
    };
    // Bytes are hashed as they arrive and stored in batches: far fewer thread hand-offs (or
    // buffer copies) than one per network chunk.
    let received = async {
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut batch = bytes::BytesMut::with_capacity(WRITE_BATCH);
        let mut written = 0u64;
        loop {
            let chunk = body.next().await;
            if let Some(chunk) = &chunk {
                let chunk = chunk.as_ref().map_err(|error| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "upload-interrupted",
                        format!("Part {number} was cut off ({error}); send it again."),
                    )
                })?;
                received += chunk.len() as u64;
                if received > expected {
                    return Err(size_mismatch(received));
                }
                hasher.update(chunk);
                batch.extend_from_slice(chunk);
            }
            if batch.len() >= WRITE_BATCH || (chunk.is_none() && !batch.is_empty()) {
                let bytes = batch.split().freeze();
                let length = bytes.len() as u64;
                sink.store(state, id, number, written, bytes).await?;
                written += length;
            }
            if chunk.is_none() {
                break;
            }
        }
        if received != expected {
            return Err(size_mismatch(received));
        }
        Ok::<[u8; 32], ApiError>(hasher.finalize().into())
    }
    .await;
    if !already_there && state.storage.is_local() {
        // Whatever was written, the prefix hashed before it may no longer be what is on disk.
        state.in_flight.forget(id, number, offset).await;
    }
    let digest = match received {
        Ok(digest) if digest == declared_sha256 => digest,
        Ok(digest) => {
            sink.abandon().await;
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "part-checksum-mismatch",
                format!(
                    "Part {number} arrived with SHA-256 {} but was declared as {}: it was damaged on the way; send it \
                     again.",
                    hex(&digest),
                    hex(&declared_sha256)
                ),
            ));
        }
        Err(error) => {
            sink.abandon().await;
            return Err(error);
        }
    };
    let expires_at = OffsetDateTime::now_utc() + state.config.upload_expiry;
    let sha256 = hex(&digest);
    let receipt = PartReceipt { number, size: expected, sha256: sha256.clone() };
    match sink {
        Sink::Discard => {
            if !state.db.touch_upload(id, expires_at).await? {
                return Err(not_open());
            }
        }
        Sink::File { .. } => {
            // No fsync per part: completing syncs the whole file once, and checks its SHA-256,
            // so a part lost to a power cut is caught there (the push then starts again).
            let part = PartRow { number, size: expected, sha256, object: None };
            if state.db.record_part(id, &part, expires_at).await? == PartRecorded::Closed {
                return Err(not_open());
            }
            state.in_flight.received(state, &upload, number).await;
        }
        Sink::Object(writer) => {
            let key = writer.key.clone();
            if let Err(error) = writer.finish().await {
                let _ = state.storage.delete_part(&key).await;
                return Err(storage_error(error));
            }
            let part = PartRow { number, size: expected, sha256, object: Some(key.clone()) };
            match state.db.record_part(id, &part, expires_at).await {
                Ok(PartRecorded::Recorded { replaced }) => {
                    if let Some(replaced) = replaced {
                        let _ = state.storage.delete_part(&replaced).await;
                    }
                }
                Ok(PartRecorded::Closed) => {
                    let _ = state.storage.delete_part(&key).await;
                    return Err(not_open());
                }
                Err(error) => {
                    let _ = state.storage.delete_part(&key).await;
                    return Err(error.into());
                }
            }
        }
    }
    Ok(receipt)
}

/// Where the bytes of a part go while it arrives.
enum Sink {
    /// Nowhere: the part is stored already and is only checked.
    Discard,
    /// At the part's offset in the upload's file (local storage).
    File { file: Arc<std::fs::File>, gate: Arc<tokio::sync::RwLock<bool>>, offset: u64 },
    /// Into an object of its own (object storage).
    Object(Box<crate::storage::PartWriter>),
}

impl Sink {
    /// Stores `bytes`, which start `written` bytes into part `number`.
    async fn store(
        &mut self,
        state: &AppState,
        id: &str,
        number: u32,
        written: u64,
        bytes: Bytes,
    ) -> Result<(), ApiError> {
        match self {
            Sink::Discard => Ok(()),
            Sink::File { file, gate, offset } => {
                let at = *offset + written;
                let permit = state.in_flight.write_permit(gate, id, number, at).await?;
                let file = Arc::clone(file);
                tokio::task::spawn_blocking(move || write_all_at(&file, &bytes, at))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(storage_error)?;
                drop(permit);
                Ok(())
            }
            Sink::Object(writer) => writer.write(&bytes).await.map_err(storage_error),
        }
    }

    /// The part was refused: an object begun is removed (bytes written to the file stay, as
    /// they are not counted).
    async fn abandon(self) {
        if let Sink::Object(writer) = self {
            writer.abort().await;
        }
    }
}

/// Completes upload `id`: every part must be there and the whole file must have the declared
/// SHA-256; then it becomes a build (or, for a file already uploaded, the existing build). The
/// upload is gone afterwards whatever the outcome, except when parts are missing.
pub async fn complete(state: &AppState, id: &str) -> Result<Ingested, ApiError> {
    let upload = find(state, id).await?;
    let missing = missing_parts(&upload);
    if !missing.is_empty() {
        let listed: Vec<String> = missing.iter().take(20).map(u32::to_string).collect();
        let more = if missing.len() > 20 { format!(" and {} more", missing.len() - 20) } else { String::new() };
        let message = match missing.as_slice() {
            [one] => format!("Part {one} has not been received; send it, then complete again."),
            _ => format!("Parts {}{more} have not been received; send them, then complete again.", listed.join(", ")),
        };
        return Err(ApiError::new(StatusCode::CONFLICT, "upload-incomplete", message));
    }
    if !state.db.begin_completing(id, lease_end()).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "upload-not-open",
            "This upload is already being completed by another request.",
        ));
    }
    // From here the upload is consumed: its bytes become a temporary upload (deleted on any
    // failure below), and its row goes. While this runs, the lease is renewed; if this
    // instance dies, the lease lapses and any instance's sweep deletes the upload.
    let _lease = Lease::hold(state, id);
    let mut temp = TempUpload::new(&state.config.temp_dir());
    let digest = if state.storage.is_local() {
        assemble_local(state, id, &upload, &mut temp).await?
    } else {
        let assembled = assemble_objects(state, id, &upload, temp.path()).await;
        discard(state, id).await?;
        assembled?
    };
    if digest != upload.sha256 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "checksum-mismatch",
            format!(
                "The assembled file has SHA-256 {digest}, not the declared {}: the declared checksum or the parts \
                 are wrong. The upload was discarded; push the file again.",
                upload.sha256
            ),
        ));
    }
    let received = Received { file: temp, size: upload.size, sha256: digest };
    let details = BuildDetails { notes: upload.notes, channel: upload.channel, metadata: upload.metadata };
    ingest(state, received, details).await
}

/// How long a completing upload is held by the instance completing it without renewal.
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

fn lease_end() -> OffsetDateTime {
    OffsetDateTime::now_utc() + LEASE
}

/// Renews a completing upload's lease until dropped.
struct Lease(tokio::task::JoinHandle<()>);

impl Lease {
    fn hold(state: &AppState, id: &str) -> Lease {
        let (db, id) = (state.db.clone(), id.to_owned());
        Lease(tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                if !matches!(db.renew_completion(&id, lease_end()).await, Ok(true)) {
                    return;
                }
            }
        }))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Local storage: moves the upload's file to `temp` and returns its SHA-256 (continuing from the
/// prefix hashed while parts arrived). The upload is gone afterwards.
async fn assemble_local(
    state: &AppState,
    id: &str,
    upload: &UploadRow,
    temp: &mut TempUpload,
) -> Result<String, ApiError> {
    // No part is written any more once it is closed, and the prefix is taken before the file
    // moves, so that no background step reads it.
    state.in_flight.close(id).await;
    let prefix = state.in_flight.take(id).await;
    let source = upload_file(state, id).map_err(ApiError::internal)?;
    let moved = tokio::fs::rename(&source, temp.path()).await;
    state.db.delete_upload(id).await?;
    state.in_flight.discard(id);
    if let Err(error) = moved {
        temp.keep();
        return Err(ApiError::internal(format!("the file of upload {id} is missing: {error}")));
    }
    let path = temp.path().to_owned();
    let used_prefix = prefix.as_ref().is_some_and(|(hashed, _)| *hashed > 0);
    // Syncs the file (the parts were written without), then hashes what the prefix lacks.
    let digest = tokio::task::spawn_blocking(move || finish_sha256(&path, prefix))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if digest != upload.sha256 && used_prefix {
        // Before refusing a whole upload, make sure the shortcut was not the one at fault.
        let path = temp.path().to_owned();
        return tokio::task::spawn_blocking(move || finish_sha256(&path, None))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal);
    }
    Ok(digest)
}

/// Bytes of parts fetched ahead while assembling from object storage.
const ASSEMBLY_READ_AHEAD: u64 = 64 << 20;

/// Object storage: fetches the parts in order (a few ahead) into `into` while hashing them, and
/// returns the SHA-256. The parts recorded when completing began are immutable objects, so no
/// request can change them meanwhile.
async fn assemble_objects(state: &AppState, id: &str, upload: &UploadRow, into: &Path) -> Result<String, ApiError> {
    let parts = state.db.upload_parts(id).await?;
    if parts.len() != part_count(upload) as usize {
        return Err(ApiError::internal(format!("upload {id} lost parts while completing")));
    }
    let ahead = usize::try_from((ASSEMBLY_READ_AHEAD / upload.part_size).max(1)).unwrap_or(1);
    let storage = state.storage.clone();
    let mut fetched = futures_util::stream::iter(parts)
        .map(|part| {
            let storage = storage.clone();
            async move {
                let key = part.object.clone().ok_or_else(|| io::Error::other("a part has no object"))?;
                let bytes = storage.read_part(&key).await?;
                if bytes.len() as u64 != part.size {
                    return Err(io::Error::other(format!(
                        "part {} has {} bytes, not {}",
                        part.number,
                        bytes.len(),
                        part.size
                    )));
                }
                Ok::<Bytes, io::Error>(bytes)
            }
        })
        .buffered(ahead);
    let mut file = tokio::fs::File::create(into).await.map_err(storage_error)?;
    let mut hasher = Sha256::new();
    while let Some(bytes) = fetched.next().await {
        let bytes = bytes.map_err(storage_error)?;
        let hashing = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || {
                hasher.update(&bytes);
                hasher
            })
        };
        tokio::io::AsyncWriteExt::write_all(&mut file, &bytes).await.map_err(storage_error)?;
        hasher = hashing.await.map_err(ApiError::internal)?;
    }
    file.sync_all().await.map_err(storage_error)?;
    Ok(hex(&hasher.finalize()))
}

/// Cancels upload `id`, deleting its bytes.
pub async fn abort(state: &AppState, id: &str) -> Result<(), ApiError> {
    find(state, id).await?;
    if !state.db.begin_completing(id, lease_end()).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "upload-not-open",
            "This upload is being completed; it can no longer be cancelled.",
        ));
    }
    discard(state, id).await
}

/// Deletes an upload: its row, then its bytes (its file, or its part objects).
async fn discard(state: &AppState, id: &str) -> Result<(), ApiError> {
    state.in_flight.discard(id);
    let objects = state.db.delete_upload(id).await?;
    if state.storage.is_local() {
        let path = upload_file(state, id).map_err(ApiError::internal)?;
        return match tokio::fs::remove_file(&path).await {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(ApiError::internal(error)),
            _ => Ok(()),
        };
    }
    for key in objects {
        state.storage.delete_part(&key).await.map_err(storage_error)?;
    }
    Ok(())
}

/// Deletes abandoned uploads (past their expiry, or whose completion lease lapsed). Returns how
/// many were deleted.
pub async fn sweep_expired(state: &AppState) -> anyhow::Result<usize> {
    let expired = state.db.expired_upload_ids().await?;
    for id in &expired {
        if let Err(error) = discard(state, id).await {
            tracing::warn!(upload.id = %id, error = %error.message, "could not delete an abandoned upload");
        } else {
            tracing::info!(upload.id = %id, "deleted an abandoned upload");
        }
    }
    Ok(expired.len())
}

/// Removes what a crash left. On local storage (start-up; this instance alone uses the
/// directory): uploads caught while completing (their file may be half moved), and upload
/// files without a row. On object storage (shared by instances that may be mid-request): part
/// objects no upload records, once older than [`crate::ingest::SHARED_GRACE`]; completions cut
/// off are left to their lease and the sweep.
pub async fn remove_leftovers(state: &AppState) -> anyhow::Result<()> {
    if !state.storage.is_local() {
        let listed = state.storage.list_part_objects().await?;
        let recorded = state.db.part_objects().await?;
        let now = std::time::SystemTime::now();
        for object in listed {
            let old_enough = now.duration_since(object.modified).unwrap_or_default() >= crate::ingest::SHARED_GRACE;
            if old_enough && !recorded.contains(&object.key) {
                tracing::warn!(key = %object.key, "removing a part object no upload records");
                state.storage.delete_part(&object.key).await?;
            }
        }
        return Ok(());
    }
    for id in state.db.completing_upload_ids().await? {
        tracing::warn!(upload.id = %id, "deleting an upload whose completion was cut off; push it again");
        if let Err(error) = discard(state, &id).await {
            tracing::warn!(upload.id = %id, error = %error.message, "could not delete an upload");
        }
    }
    let known: std::collections::HashSet<String> = state.db.upload_ids().await?.into_iter().collect();
    let mut entries = tokio::fs::read_dir(state.config.uploads_dir()).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let id = name.to_str().and_then(|name| name.strip_suffix(".part"));
        if id.is_none_or(|id| !known.contains(id)) {
            tracing::warn!(file = %entry.path().display(), "removing an upload file no upload owns");
            tokio::fs::remove_file(entry.path()).await.ok();
        }
    }
    Ok(())
}

#[cfg(unix)]
fn write_all_at(file: &std::fs::File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(not(unix))]
fn write_all_at(mut file: &std::fs::File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, Write};
    file.seek(io::SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

/// Flushes a completed upload's file to disk and returns its SHA-256, continuing from the
/// prefix hashed while parts arrived.
fn finish_sha256(path: &Path, prefix: Option<(u64, Sha256)>) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    file.sync_all()?;
    let (start, hasher) = prefix.unwrap_or_default();
    file.seek(io::SeekFrom::Start(start))?;
    Ok(hex(&hash_rest(&mut file, hasher)?.finalize()))
}

/// Feeds everything `reader` has left into `hasher`.
fn hash_rest(mut reader: impl Read, mut hasher: Sha256) -> io::Result<Sha256> {
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(hasher);
        }
        hasher.update(&buffer[..read]);
    }
}

/// What this instance keeps in memory about open uploads: the SHA-256 state of each one's
/// received prefix (parts 1..k, all received), advanced in the background as parts arrive (see
/// the module documentation), and a lock that completing takes so that no part is still being
/// written into a file once it is checked.
#[derive(Default)]
pub struct InFlight {
    uploads: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Prefix>>>>,
    /// Per upload: whether it is closed to writes (completing), behind a lock every write
    /// holds for its duration.
    writers: std::sync::Mutex<HashMap<String, Arc<tokio::sync::RwLock<bool>>>>,
}

#[derive(Default)]
struct Prefix {
    /// Bytes hashed from the start.
    hashed_to: u64,
    hasher: Sha256,
    /// Parts received (by this instance) and not yet hashed.
    waiting: BTreeSet<u32>,
}

impl InFlight {
    /// The gate of an upload's writes; a part takes it before it opens the file, so that closing
    /// the upload (which flips this very gate) reaches every write that could still land.
    fn gate(&self, id: &str) -> Arc<tokio::sync::RwLock<bool>> {
        let mut writers = self.writers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(writers.entry(id.to_owned()).or_default())
    }

    /// Permission for one write at `offset` into part `number`, held while it runs: refused
    /// once completing closed the gate, and invalidating a prefix hashed past `offset`.
    async fn write_permit(
        &self,
        gate: &Arc<tokio::sync::RwLock<bool>>,
        id: &str,
        number: u32,
        offset: u64,
    ) -> Result<tokio::sync::OwnedRwLockReadGuard<bool>, ApiError> {
        let permit = Arc::clone(gate).read_owned().await;
        if *permit {
            return Err(not_open());
        }
        self.forget(id, number, offset).await;
        Ok(permit)
    }

    /// Closes an upload to writes: waits for the writes under way (each one a single positioned
    /// write of at most a batch) and lets none start. A client that stalls in the middle of a
    /// part does not hold completing up: its next write is refused.
    async fn close(&self, id: &str) {
        *self.gate(id).write_owned().await = true;
    }

    fn entry(&self, id: &str) -> Arc<tokio::sync::Mutex<Prefix>> {
        let mut uploads = self.uploads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(uploads.entry(id.to_owned()).or_default())
    }

    /// Part `number` (at `offset`) is about to be written again: if it was hashed, the prefix
    /// must start over.
    async fn forget(&self, id: &str, number: u32, offset: u64) {
        let entry = self.entry(id);
        let mut prefix = entry.lock().await;
        prefix.waiting.remove(&number);
        if offset < prefix.hashed_to {
            let waiting = std::mem::take(&mut prefix.waiting);
            *prefix = Prefix { waiting, ..Prefix::default() };
        }
    }

    /// Part `number` was recorded: hash the prefix as far as the received parts now reach, in
    /// the background.
    async fn received(&self, state: &AppState, upload: &UploadRow, number: u32) {
        let entry = self.entry(&upload.id);
        entry.lock().await.waiting.insert(number);
        let (Ok(path), part_size, size) = (upload_file(state, &upload.id), upload.part_size, upload.size) else {
            return;
        };
        tokio::spawn(async move {
            let mut prefix = entry.lock().await;
            loop {
                let next = u32::try_from(prefix.hashed_to / part_size + 1).unwrap_or(u32::MAX);
                if prefix.hashed_to >= size || !prefix.waiting.remove(&next) {
                    return;
                }
                let (start, hasher) = (prefix.hashed_to, prefix.hasher.clone());
                let length = part_size.min(size - start);
                let path = path.clone();
                let hashed = tokio::task::spawn_blocking(move || -> io::Result<Sha256> {
                    let mut file = std::fs::File::open(path)?;
                    file.seek(io::SeekFrom::Start(start))?;
                    hash_rest(Read::take(file, length), hasher)
                })
                .await;
                match hashed {
                    Ok(Ok(hasher)) => {
                        prefix.hasher = hasher;
                        prefix.hashed_to = start + length;
                    }
                    // The upload went away meanwhile; what was hashed stays valid.
                    _ => return,
                }
            }
        });
    }

    /// Takes an upload's prefix (waiting for a background step to finish): the bytes hashed
    /// and the state to continue from.
    async fn take(&self, id: &str) -> Option<(u64, Sha256)> {
        let entry = self.uploads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id)?;
        let mut prefix = entry.lock().await;
        let taken = std::mem::take(&mut *prefix);
        Some((taken.hashed_to, taken.hasher))
    }

    /// Drops what is kept about an upload (completed, cancelled or abandoned).
    fn discard(&self, id: &str) {
        self.uploads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
        self.writers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }
}

/// Parses an RFC 9530 `Content-Digest` header and returns its `sha-256` value.
pub fn sha256_from_content_digest(header: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    header.split(',').find_map(|member| {
        let (algorithm, value) = member.split_once('=')?;
        if !algorithm.trim().eq_ignore_ascii_case("sha-256") {
            return None;
        }
        let encoded = value.trim().strip_prefix(':')?.strip_suffix(':')?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        bytes.try_into().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(size: u64, part_size: u64, received: Vec<u32>) -> UploadRow {
        UploadRow {
            id: "0".repeat(32),
            file_name: "app.ipa".into(),
            size,
            sha256: "0".repeat(64),
            part_size,
            notes: None,
            channel: "default".into(),
            metadata: Default::default(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: OffsetDateTime::UNIX_EPOCH,
            received,
        }
    }

    #[test]
    fn parts_cover_the_file_and_the_last_holds_the_rest() {
        let upload = upload(10, 4, vec![]);
        assert_eq!(part_count(&upload), 3);
        assert_eq!(part_range(&upload, 1).ok(), Some((0, 4)));
        assert_eq!(part_range(&upload, 3).ok(), Some((8, 2)));
        assert!(part_range(&upload, 0).is_err());
        assert!(part_range(&upload, 4).is_err());
        assert_eq!(part_count(&super::tests::upload(8, 4, vec![])), 2);
    }

    #[test]
    fn missing_parts_are_the_complement_of_the_received() {
        assert_eq!(missing_parts(&upload(10, 1, vec![1, 2, 5, 10])), vec![3, 4, 6, 7, 8, 9]);
        assert_eq!(missing_parts(&upload(3, 1, vec![1, 2, 3])), Vec::<u32>::new());
        assert_eq!(missing_parts(&upload(3, 1, vec![])), vec![1, 2, 3]);
    }

    #[test]
    fn part_sizes_stay_within_limits() {
        assert_eq!(choose_part_size(100, None), DEFAULT_PART_SIZE);
        assert_eq!(choose_part_size(100, Some(1)), MIN_PART_SIZE);
        assert_eq!(choose_part_size(100, Some(u64::MAX)), MAX_PART_SIZE);
        let huge = 4 * MAX_PARTS * MAX_PART_SIZE;
        assert!(huge.div_ceil(choose_part_size(huge, None)) <= MAX_PARTS);
    }

    #[test]
    fn content_digest_is_read_as_rfc_9530_says() {
        let digest =
            sha256_from_content_digest("sha-512=:AAAA:, sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
        assert_eq!(
            digest.map(|bytes| hex(&bytes)).as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(sha256_from_content_digest("sha-256=47DEQpj8HBSa"), None);
        assert_eq!(sha256_from_content_digest("sha-256=:AAAA:"), None);
    }

    #[test]
    fn file_names_lose_their_paths() {
        assert_eq!(clean_file_name("/home/ci/build/My App.ipa"), "My App.ipa");
        assert_eq!(clean_file_name("C:\\build\\x.ipa"), "x.ipa");
        assert_eq!(clean_file_name("../"), "app.ipa");
    }
}
