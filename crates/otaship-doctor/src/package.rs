//! The `.ipa` behind a manifest: how it is served (HEAD, ranges, length, no compression), then
//! what it is, read through HTTP range requests (the zip's central directory and the few entries
//! `inspect` needs, never the whole file unless the server cannot serve ranges or `--full` asks),
//! and whether it fits the manifest and the device.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use otaship_ipa::device::{BundleProfile, Device, Listing, OsCheck, eligibility};
use otaship_ipa::{InspectOptions, Inspection, IpaError, Source};
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use tokio::runtime::Handle;

use crate::{Finding, Severity};

/// Bytes fetched per range request: one request covers many small zip entries' headers.
const BLOCK: u64 = 64 * 1024;
/// Most a remote inspection may download before it gives up (a hostile archive cannot make
/// the doctor fetch gigabytes through its central directory).
const MAX_REMOTE_BYTES: u64 = 64 << 20;
/// The most of a display image read.
const MAX_IMAGE_BYTES: usize = 1 << 20;

/// What the device and the person asking know.
#[derive(Debug, Clone, Default)]
pub struct DeviceFacts {
    /// The device's UDID, to look up in the profiles.
    pub udid: Option<String>,
    /// The device's iOS version, e.g. `17.5`.
    pub ios: Option<String>,
}

/// Reads a remote file through HTTP range requests, a block at a time, keeping what it read.
pub struct RemoteSource {
    client: reqwest::Client,
    url: String,
    length: u64,
    runtime: Handle,
    blocks: Mutex<std::collections::HashMap<u64, Arc<Vec<u8>>>>,
    transferred: Arc<AtomicU64>,
}

impl RemoteSource {
    /// A source over `url`, whose length the caller learnt from HEAD or a first range.
    pub fn new(client: reqwest::Client, url: &str, length: u64, transferred: Arc<AtomicU64>) -> RemoteSource {
        RemoteSource {
            client,
            url: url.to_owned(),
            length,
            runtime: Handle::current(),
            blocks: Mutex::new(std::collections::HashMap::new()),
            transferred,
        }
    }

    fn block(&self, index: u64) -> io::Result<Arc<Vec<u8>>> {
        if let Some(block) = self.blocks.lock().map_err(|_| io::Error::other("poisoned"))?.get(&index) {
            return Ok(Arc::clone(block));
        }
        let start = index * BLOCK;
        let end = (start + BLOCK).min(self.length).saturating_sub(1);
        if self.transferred.load(Ordering::Relaxed) > MAX_REMOTE_BYTES {
            return Err(io::Error::other(format!(
                "reading this archive needs more than {} MiB through range requests",
                MAX_REMOTE_BYTES >> 20
            )));
        }
        let bytes = self.runtime.block_on(async {
            let response = self
                .client
                .get(&self.url)
                .header(RANGE, format!("bytes={start}-{end}"))
                .header(ACCEPT_ENCODING, "identity")
                .send()
                .await
                .map_err(io::Error::other)?;
            if response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                return Err(io::Error::other(format!("a range request was answered {}", response.status())));
            }
            let expected = format!("bytes {start}-{end}/");
            let range_ok = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with(&expected));
            if !range_ok {
                return Err(io::Error::other("a range request was answered with another range"));
            }
            // One byte more than asked for tells a server that sends too much from one that
            // sends just enough, without reading the rest of what it sends.
            let asked = usize::try_from(end - start + 1).map_err(io::Error::other)?;
            crate::read_capped(response, asked + 1).await.map(|body| body.bytes).map_err(io::Error::other)
        })?;
        self.transferred.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() as u64 != end - start + 1 {
            return Err(io::Error::other("a range request returned the wrong number of bytes"));
        }
        let block = Arc::new(bytes);
        self.blocks.lock().map_err(|_| io::Error::other("poisoned"))?.insert(index, Arc::clone(&block));
        Ok(block)
    }
}

impl Source for RemoteSource {
    fn len(&self) -> u64 {
        self.length
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|end| *end <= self.length);
        if end.is_none() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let block = self.block(at / BLOCK)?;
            let within = usize::try_from(at % BLOCK).map_err(io::Error::other)?;
            let take = (buf.len() - done).min(block.len().saturating_sub(within));
            if take == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf[done..done + take].copy_from_slice(&block[within..within + take]);
            done += take;
        }
        Ok(())
    }
}

/// Checks how the `.ipa` at `url` is served and, when it can be read, what it is.
pub async fn check_url(
    url: &str,
    client: &reqwest::Client,
    full: bool,
    hashes: &crate::manifest::DeclaredHashes,
    transferred: &Arc<AtomicU64>,
) -> (Vec<Finding>, Option<Inspection>) {
    let mut findings = Vec::new();
    if !url.starts_with("https://") {
        findings.push(Finding::error(
            "ipa-not-https",
            format!("The .ipa URL {url} is not HTTPS; the installer refuses it."),
            "Serve the .ipa over HTTPS, like the manifest.",
        ));
    }
    let head = match client.head(url).header(ACCEPT_ENCODING, "gzip, deflate, br").send().await {
        Ok(head) => head,
        Err(error) => {
            findings.push(Finding::error(
                "ipa-unreachable",
                format!("The .ipa cannot be reached: {error}."),
                "Check the software-package URL in the manifest; the installer fetches it without cookies.",
            ));
            return (findings, None);
        }
    };
    if !head.status().is_success() {
        findings.push(Finding::error(
            "ipa-http-error",
            format!("The .ipa URL answers HTTP {} to HEAD.", head.status()),
            "The installer needs a 200: check the URL, expiry and that no login or cookie is needed.",
        ));
        return (findings, None);
    }
    if head.headers().get(CONTENT_ENCODING).is_some_and(|value| value.as_bytes() != b"identity") {
        findings.push(Finding::error(
            "ipa-compressed",
            "The .ipa is served with Content-Encoding (compressed on the fly); the installer's download fails or \
             the hash does not match.",
            "Turn off gzip/brotli for .ipa files (they are zip archives already).",
        ));
    }
    let length = head
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .filter(|length| *length > 0);
    if length.is_none() {
        findings.push(Finding::error(
            "ipa-no-content-length",
            "The .ipa is served without a Content-Length; iOS shows no progress and may give up.",
            "Serve it as a static file with its length (no chunked encoding).",
        ));
    }
    let ranges = head.headers().get("accept-ranges").is_some_and(|value| value.as_bytes() == b"bytes");
    if !ranges {
        findings.push(Finding::warning(
            "ipa-no-ranges",
            "The server does not announce byte ranges (Accept-Ranges: bytes); an interrupted download starts over.",
            "Serve the .ipa with range support.",
        ));
    }
    // The length to read ranges against is the identity length: a server that compresses on
    // the fly announces the compressed one in HEAD.
    let identity_length = if ranges && !full { identity_length(url, client, transferred).await } else { None };
    let inspection = match (identity_length.or(length), ranges && !full) {
        (Some(length), true) => {
            let source = RemoteSource::new(client.clone(), url, length, Arc::clone(transferred));
            tokio::task::spawn_blocking(move || otaship_ipa::inspect_ipa(&source, &InspectOptions::default()))
                .await
                .map_err(|error| IpaError::Io(io::Error::other(error)))
        }
        _ => download_and_inspect(url, client, hashes, &mut findings, transferred).await,
    };
    match inspection {
        Ok(Ok(inspection)) => (findings, Some(inspection)),
        Ok(Err(error)) | Err(error) => {
            findings.push(Finding::error(
                "ipa-unreadable",
                format!("The .ipa cannot be read [{}]: {error}", error.code()),
                "Upload the .ipa exported by Xcode (Product > Archive > Distribute App), unmodified.",
            ));
            (findings, None)
        }
    }
}

/// The file's full length from a one-byte identity range request (`Content-Range: bytes 0-0/N`).
async fn identity_length(url: &str, client: &reqwest::Client, transferred: &Arc<AtomicU64>) -> Option<u64> {
    let response = client.get(url).header(RANGE, "bytes=0-0").header(ACCEPT_ENCODING, "identity").send().await.ok()?;
    if response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
        return None;
    }
    let total =
        response.headers().get(CONTENT_RANGE)?.to_str().ok()?.strip_prefix("bytes 0-0/")?.parse::<u64>().ok()?;
    // One byte was asked for; whatever a server sends beyond a few is not read.
    let body = crate::read_capped(response, 64).await.ok()?;
    transferred.fetch_add(body.bytes.len() as u64, Ordering::Relaxed);
    Some(total)
}

/// Downloads the whole `.ipa` to an anonymous temporary file (never into memory), checks the
/// manifest's hashes on the way, and inspects it.
async fn download_and_inspect(
    url: &str,
    client: &reqwest::Client,
    hashes: &crate::manifest::DeclaredHashes,
    findings: &mut Vec<Finding>,
    transferred: &Arc<AtomicU64>,
) -> Result<otaship_ipa::Result<Inspection>, IpaError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let response = client.get(url).send().await.map_err(|error| IpaError::Io(io::Error::other(error)))?;
    let mut file = tempfile::tempfile().map_err(IpaError::Io)?;
    let mut body = response.bytes_stream();
    let mut hasher = ChunkHasher::new(hashes);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| IpaError::Io(io::Error::other(error)))?;
        transferred.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(IpaError::Io)?;
    }
    findings.extend(hasher.finish(hashes));
    tokio::task::spawn_blocking(move || {
        let source = otaship_ipa::FileSource::new(file)?;
        Ok(otaship_ipa::inspect_ipa(&source, &InspectOptions::default()))
    })
    .await
    .map_err(|error| IpaError::Io(io::Error::other(error)))?
}

/// What the archive says against the manifest and the device.
pub fn judge(inspection: &Inspection, manifest_bundle_id: Option<&str>, device: &DeviceFacts) -> Vec<Finding> {
    let report = &inspection.report;
    let mut findings = Vec::new();
    if let Some(expected) = manifest_bundle_id
        && expected != report.bundle_id
    {
        findings.push(Finding::error(
            "bundle-id-mismatch",
            format!(
                "The manifest installs {expected}, but the .ipa is {}; the icon appears, then the install fails.",
                report.bundle_id
            ),
            "Write bundle-identifier in the manifest from the .ipa's Info.plist (otaship does).",
        ));
    }
    for problem in &report.installable.problems {
        findings.push(Finding {
            code: problem.code,
            severity: Severity::Error,
            message: problem.message.clone(),
            fix: String::new(),
        });
    }
    for warning in &report.installable.warnings {
        findings.push(Finding {
            code: warning.code,
            severity: Severity::Warning,
            message: warning.message.clone(),
            fix: String::new(),
        });
    }
    let bundles: Vec<BundleProfile<'_>> =
        std::iter::once(BundleProfile { bundle: "the app", profile: report.profile.as_ref() })
            .chain(
                report
                    .extensions
                    .iter()
                    .map(|extension| BundleProfile { bundle: &extension.path, profile: extension.profile.as_ref() }),
            )
            .collect();
    let udid = device.udid.as_deref().map(str::trim).filter(|udid| !udid.is_empty());
    let verdict = eligibility(
        &bundles,
        report.min_os.as_deref(),
        &report.device_families,
        &Device { udid: udid.unwrap_or(""), os_version: device.ios.as_deref(), os_version_exact: true, family: None },
    );
    if let (Some(udid), Listing::NotListed { missing_from }) = (udid, &verdict.listing) {
        for bundle in missing_from {
            findings.push(Finding::error(
                "device-not-in-profile",
                format!("The device {udid} is not in the provisioning profile of {bundle}; iOS says the app cannot be installed."),
                "Add the device to the profile in the Apple Developer portal, regenerate the profile, re-export and upload again.",
            ));
        }
    }
    if let OsCheck::TooOld { required, running } = &verdict.os {
        findings.push(Finding::error(
            "ios-too-old",
            format!("The build needs iOS {required} or later; the device runs iOS {running}."),
            "Update the device, or lower the deployment target (MinimumOSVersion) and rebuild.",
        ));
    }
    findings
}

/// Checks the manifest's `display-image`: reachable, a PNG, not Apple's crushed variant.
pub async fn check_image(url: &str, client: &reqwest::Client, transferred: &Arc<AtomicU64>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let response = match client.get(url).send().await {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            findings.push(Finding::warning(
                "image-unreachable",
                format!("The display-image answers HTTP {}; the install shows a blank icon.", response.status()),
                "Fix the display-image URL or drop it from the manifest.",
            ));
            return findings;
        }
        Err(error) => {
            findings.push(Finding::warning(
                "image-unreachable",
                format!("The display-image cannot be fetched: {error}."),
                "Fix the display-image URL or drop it from the manifest.",
            ));
            return findings;
        }
    };
    // Only the signature is judged; a display image is a small PNG, so more than this is not read.
    let Ok(body) = crate::read_capped(response, MAX_IMAGE_BYTES).await else { return findings };
    let bytes = body.bytes;
    transferred.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        findings.push(Finding::warning(
            "image-not-png",
            "The display-image is not a PNG.",
            "Serve a 57x57 (or larger) standard PNG.",
        ));
    } else if bytes.windows(4).take(64).any(|window| window == b"CgBI") {
        findings.push(Finding::warning(
            "image-crushed",
            "The display-image is Apple's crushed (CgBI) PNG, which only iOS's own decoder reads.",
            "Serve a standard PNG (otaship converts the app icon for you).",
        ));
    }
    findings
}

/// Computes what the manifest declares (whole-file and per-chunk MD5 and SHA-256) as the file
/// streams by.
struct ChunkHasher {
    md5: Option<md5::Md5>,
    sha256: Option<sha2::Sha256>,
    md5_chunks: Option<(u64, u64, md5::Md5, Vec<String>)>,
    sha256_chunks: Option<(u64, u64, sha2::Sha256, Vec<String>)>,
}

impl ChunkHasher {
    fn new(hashes: &crate::manifest::DeclaredHashes) -> Self {
        use sha2::Digest;
        ChunkHasher {
            md5: hashes.md5.as_ref().map(|_| md5::Md5::new()),
            sha256: hashes.sha256.as_ref().map(|_| sha2::Sha256::new()),
            md5_chunks: hashes.md5_chunks.as_ref().map(|(size, _)| (*size, 0, md5::Md5::new(), Vec::new())),
            sha256_chunks: hashes.sha256_chunks.as_ref().map(|(size, _)| (*size, 0, sha2::Sha256::new(), Vec::new())),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        if let Some(md5) = &mut self.md5 {
            md5.update(bytes);
        }
        if let Some(sha256) = &mut self.sha256 {
            sha256.update(bytes);
        }
        if let Some((size, filled, hasher, done)) = &mut self.md5_chunks {
            feed_chunks(bytes, *size, filled, hasher, done);
        }
        if let Some((size, filled, hasher, done)) = &mut self.sha256_chunks {
            feed_chunks(bytes, *size, filled, hasher, done);
        }
    }

    fn finish(self, declared: &crate::manifest::DeclaredHashes) -> Vec<Finding> {
        use sha2::Digest;
        let mut findings = Vec::new();
        let mut compare = |kind: &str, expected: &str, actual: String| {
            if expected != actual {
                findings.push(Finding::error(
                    "ipa-hash-mismatch",
                    format!("The manifest's {kind} does not match the .ipa served (expected {expected}, got {actual})."),
                    "Regenerate the manifest from the .ipa it points at, or drop the hash keys (TLS already protects the download).",
                ));
            }
        };
        if let (Some(hasher), Some(expected)) = (self.md5, &declared.md5) {
            compare("md5", expected, hex(&hasher.finalize()));
        }
        if let (Some(hasher), Some(expected)) = (self.sha256, &declared.sha256) {
            compare("sha256", expected, hex(&hasher.finalize()));
        }
        if let (Some((_, filled, hasher, mut done)), Some((_, expected))) = (self.md5_chunks, &declared.md5_chunks) {
            if filled > 0 {
                done.push(hex(&hasher.finalize()));
            }
            compare("md5s", &expected.join(","), done.join(","));
        }
        if let (Some((_, filled, hasher, mut done)), Some((_, expected))) =
            (self.sha256_chunks, &declared.sha256_chunks)
        {
            if filled > 0 {
                done.push(hex(&hasher.finalize()));
            }
            compare("sha256s", &expected.join(","), done.join(","));
        }
        findings
    }
}

fn feed_chunks<D: sha2::Digest + Default>(
    mut bytes: &[u8],
    size: u64,
    filled: &mut u64,
    hasher: &mut D,
    done: &mut Vec<String>,
) {
    while !bytes.is_empty() {
        let room = usize::try_from(size - *filled).unwrap_or(usize::MAX);
        let take = room.min(bytes.len());
        hasher.update(&bytes[..take]);
        *filled += take as u64;
        bytes = &bytes[take..];
        if *filled == size {
            done.push(hex(&std::mem::take(hasher).finalize()));
            *filled = 0;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::DeclaredHashes;

    #[test]
    fn chunk_hashes_follow_the_declared_chunk_size_across_reads() {
        let data: Vec<u8> = (0..25u32).flat_map(u32::to_le_bytes).collect();
        let chunk_hex = |chunk: &[u8]| {
            use sha2::Digest;
            hex(&sha2::Sha256::digest(chunk))
        };
        let expected: Vec<String> = data.chunks(40).map(chunk_hex).collect();
        let declared = DeclaredHashes { sha256_chunks: Some((40, expected)), ..DeclaredHashes::default() };
        let mut hasher = ChunkHasher::new(&declared);
        for piece in data.chunks(7) {
            hasher.update(piece);
        }
        assert!(hasher.finish(&declared).is_empty());
        let wrong = DeclaredHashes { sha256_chunks: Some((40, vec!["00".into()])), ..DeclaredHashes::default() };
        let mut hasher = ChunkHasher::new(&wrong);
        hasher.update(&data);
        assert_eq!(hasher.finish(&wrong)[0].code, "ipa-hash-mismatch");
    }
}
