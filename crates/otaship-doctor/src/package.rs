//! The `.ipa` behind a manifest: how it is served (HEAD, ranges, length, no compression), then
//! what it is, read through HTTP range requests (the zip's central directory and the few entries
//! `inspect` needs, never the whole file unless the server cannot serve ranges or `--full` asks),
//! and whether it fits the manifest and the device.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use otaship_ipa::{InspectOptions, Inspection, IpaError, ProfileKind, Source};
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use tokio::runtime::Handle;

use crate::{Finding, Severity};

/// Bytes fetched per range request: one request covers many small zip entries' headers.
const BLOCK: u64 = 64 * 1024;
/// Most a remote inspection may download before it gives up (a hostile archive cannot make
/// the doctor fetch gigabytes through its central directory).
const MAX_REMOTE_BYTES: u64 = 64 << 20;

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
            response.bytes().await.map_err(io::Error::other)
        })?;
        self.transferred.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() as u64 != end - start + 1 {
            return Err(io::Error::other("a range request returned the wrong number of bytes"));
        }
        let block = Arc::new(bytes.to_vec());
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
    let inspection = match (length, ranges && !full) {
        (Some(length), true) => {
            let source = RemoteSource::new(client.clone(), url, length, Arc::clone(transferred));
            tokio::task::spawn_blocking(move || otaship_ipa::inspect_ipa(&source, &InspectOptions::default()))
                .await
                .map_err(|error| IpaError::Io(io::Error::other(error)))
        }
        _ => download_and_inspect(url, client, transferred).await,
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

/// Downloads the whole `.ipa` into memory-bounded temporary storage and inspects it.
async fn download_and_inspect(
    url: &str,
    client: &reqwest::Client,
    transferred: &Arc<AtomicU64>,
) -> Result<otaship_ipa::Result<Inspection>, IpaError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let response = client.get(url).send().await.map_err(|error| IpaError::Io(io::Error::other(error)))?;
    let mut file = tempfile::tempfile().map_err(IpaError::Io)?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| IpaError::Io(io::Error::other(error)))?;
        transferred.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        file.write_all(&chunk).map_err(IpaError::Io)?;
    }
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
    if let Some(udid) = device.udid.as_deref().map(str::trim).filter(|udid| !udid.is_empty()) {
        let profiles = std::iter::once(("the app".to_owned(), report.profile.as_ref()))
            .chain(report.extensions.iter().map(|extension| (extension.path.clone(), extension.profile.as_ref())));
        for (bundle, profile) in profiles {
            let Some(profile) = profile else { continue };
            let listed = profile.provisions_all_devices
                || matches!(profile.kind, ProfileKind::Enterprise)
                || profile.devices.iter().any(|device| device.eq_ignore_ascii_case(udid));
            if !listed && matches!(profile.kind, ProfileKind::Development | ProfileKind::AdHoc) {
                findings.push(Finding::error(
                    "device-not-in-profile",
                    format!("The device {udid} is not in the provisioning profile of {bundle}; iOS says the app cannot be installed."),
                    "Add the device to the profile in the Apple Developer portal, regenerate the profile, re-export and upload again.",
                ));
            }
        }
    }
    if let (Some(device_ios), Some(min_os)) = (device.ios.as_deref(), report.min_os.as_deref())
        && version_less(device_ios, min_os)
    {
        findings.push(Finding::error(
            "ios-too-old",
            format!("The build needs iOS {min_os} or later; the device runs iOS {device_ios}."),
            "Update the device, or lower the deployment target (MinimumOSVersion) and rebuild.",
        ));
    }
    findings
}

fn version_less(left: &str, right: &str) -> bool {
    let parts = |text: &str| -> Vec<u64> { text.split('.').map(|part| part.trim().parse().unwrap_or(0)).collect() };
    let (left, right) = (parts(left), parts(right));
    for index in 0..left.len().max(right.len()) {
        let (a, b) = (left.get(index).copied().unwrap_or(0), right.get(index).copied().unwrap_or(0));
        if a != b {
            return a < b;
        }
    }
    false
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
    let Ok(bytes) = response.bytes().await else { return findings };
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
