//! The diagnosis engine behind `otaship doctor`, the server's start-up self-check and its
//! Diagnose page: it looks at an over-the-air install link from the outside, the way an iPhone
//! does, and says what will fail and how to fix it.
//!
//! Every check yields [`Finding`]s with a stable code, a severity, what is wrong, and what to
//! do. The rules come from Apple's documented requirements (spec §3.2 and §4): TLS as iOS's
//! App Transport Security wants it, manifests as the installer reads them.

pub mod link;
pub mod manifest;
pub mod package;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls_pki_types::CertificateDer;
use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing fails.
    Info,
    /// Fails on some devices or soon, or works only with extra steps.
    Warning,
    /// The install fails.
    Error,
}

/// One thing the doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable kebab-case code, e.g. `tls-name-mismatch`.
    pub code: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong (or, for `info`, what was seen).
    pub message: String,
    /// How to fix it; empty for `info`.
    pub fix: String,
}

impl Finding {
    /// An error.
    pub fn error(code: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { code, severity: Severity::Error, message: message.into(), fix: fix.into() }
    }

    /// A warning.
    pub fn warning(code: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { code, severity: Severity::Warning, message: message.into(), fix: fix.into() }
    }

    /// Something seen, for the record.
    pub fn info(code: &'static str, message: impl Into<String>) -> Self {
        Finding { code, severity: Severity::Info, message: message.into(), fix: String::new() }
    }
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|finding| finding.severity == Severity::Error)
}

/// What the doctor trusts and where it connects.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Roots the devices trust besides the public ones (a local CA installed on them).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Host names mapped to addresses, as curl's `--resolve` does.
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Options {
    /// The address to connect to for `host:port`: a `--resolve` entry, else `None` (DNS).
    pub fn resolved(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.resolve
            .iter()
            .find(|(name, address)| name.eq_ignore_ascii_case(host) && address.port() == port)
            .map(|(_, address)| *address)
    }

    /// An HTTP client that fetches as the iOS installer does: no cookies, and certificates not
    /// judged here (the TLS check judges them, so that a bad certificate does not hide the
    /// problems behind it).
    pub fn http_client(&self) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::limited(5))
            .timeout(std::time::Duration::from_secs(30))
            .user_agent("otaship-doctor (like com.apple.appstored)");
        for (host, address) in &self.resolve {
            builder = builder.resolve(host, *address);
        }
        builder.build()
    }
}

/// The host and port of an `https://` or `http://` URL given as text.
pub fn host_and_port_of(url: &str) -> Option<(String, u16)> {
    host_and_port(&reqwest::Url::parse(url).ok()?)
}

/// The host and port of an `https://` or `http://` URL.
pub fn host_and_port(url: &reqwest::Url) -> Option<(String, u16)> {
    let host = match url.host()? {
        url::Host::Domain(name) => name.to_owned(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    Some((host, url.port_or_known_default()?))
}

/// What to diagnose and how.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// An install page URL, an `itms-services://` link, a manifest URL, or a local `.ipa` or
    /// manifest file.
    pub target: String,
    /// Trust and name resolution.
    pub options: Options,
    /// The device, when known.
    pub device: package::DeviceFacts,
    /// Download the whole `.ipa` instead of reading it through ranges.
    pub full: bool,
}

/// The doctor's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was asked.
    pub target: String,
    /// The `itms-services` link found or given.
    pub link: Option<String>,
    /// The manifest URL the installer fetches.
    pub manifest_url: Option<String>,
    /// The `.ipa` URL from the manifest.
    pub package_url: Option<String>,
    /// Everything found, in the order checked.
    pub findings: Vec<Finding>,
    /// Bytes downloaded from the servers.
    pub bytes_transferred: u64,
    /// Whether an install can work (no error).
    pub ok: bool,
}

/// Why the doctor could not run at all (exit 2), as opposed to what it found.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The target is none of the kinds the doctor knows.
    #[error("{0:?} is not an install page URL, an itms-services link, a manifest URL, or an .ipa or manifest file")]
    UnknownTarget(String),
    /// The HTTP client could not be built.
    #[error("cannot set up HTTP: {0}")]
    Http(#[from] reqwest::Error),
}

/// Diagnoses a target end to end.
pub async fn diagnose(request: &Request) -> Result<Report, DoctorError> {
    let target = request.target.trim();
    let transferred = Arc::new(AtomicU64::new(0));
    let client = request.options.http_client()?;
    let mut report = Report {
        target: target.to_owned(),
        link: None,
        manifest_url: None,
        package_url: None,
        findings: Vec::new(),
        bytes_transferred: 0,
        ok: false,
    };
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("itms-services:") || lower.contains("itms-services:") && !lower.starts_with("http") {
        let link = link::html_unescape(target);
        check_link(&link, &mut report);
    } else if lower.starts_with("https://") || lower.starts_with("http://") {
        check_web_target(target, request, &client, &transferred, &mut report).await;
    } else if Path::new(target).exists() {
        check_local_file(target, request, &mut report)?;
    } else {
        return Err(DoctorError::UnknownTarget(target.to_owned()));
    }
    if let Some(manifest_url) = report.manifest_url.clone() {
        check_manifest_chain(&manifest_url, request, &client, &transferred, &mut report).await;
    }
    report.bytes_transferred = transferred.load(Ordering::Relaxed);
    report.ok = !has_errors(&report.findings);
    Ok(report)
}

fn check_link(link: &str, report: &mut Report) {
    let (findings, seen) = link::check(link);
    report.findings.extend(findings);
    report.link = Some(seen.link);
    report.manifest_url = seen.manifest_url;
}

/// An `http(s)://` target is an install page (HTML with a link) or a manifest (a plist).
async fn check_web_target(
    url: &str,
    request: &Request,
    client: &reqwest::Client,
    transferred: &Arc<AtomicU64>,
    report: &mut Report,
) {
    let response = match client.get(url).send().await {
        Ok(response) => response,
        Err(error) => {
            report.findings.push(Finding::error(
                "target-unreachable",
                format!("{url} cannot be fetched: {error}."),
                "Check the URL, and that the server is reachable from here.",
            ));
            // Still judge the TLS, which is often why.
            tls_for(url, request, report).await;
            return;
        }
    };
    let status = response.status();
    let body = read_capped(response, MAX_PAGE_BYTES).await.map(|body| body.bytes).unwrap_or_default();
    transferred.fetch_add(body.len() as u64, Ordering::Relaxed);
    let is_html = body
        .iter()
        .take(1024)
        .map(u8::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .windows(5)
        .any(|w| w == b"<html" || w == b"<!doc");
    if is_html {
        let text = String::from_utf8_lossy(&body);
        match link::links_in_html(&text).into_iter().next() {
            Some(link) => check_link(&link, report),
            None if !status.is_success() => report.findings.push(Finding::error(
                "page-http-error",
                format!("The page answers HTTP {status} and holds no install link."),
                "Check the install page URL.",
            )),
            None => {
                report.findings.push(Finding::error(
                    "page-no-link",
                    "The page offers no itms-services link, so there is nothing to tap (the page may say why).",
                    "An install page needs <a href=\"itms-services://?action=download-manifest&amp;url=...\">; \
                     a link built by JavaScript alone is invisible to this check and fragile in in-app browsers.",
                ));
                // otaship's pages keep their manifest beside them: diagnose it anyway.
                let beside = format!("{}/manifest.plist", url.trim_end_matches('/'));
                if client.head(&beside).send().await.is_ok_and(|response| response.status().is_success()) {
                    let mut findings = Vec::new();
                    link::check_manifest_url(&beside, &mut findings);
                    report.findings.extend(findings);
                    report.manifest_url = Some(beside);
                }
            }
        }
    } else {
        // Not a page: take it as the manifest itself.
        let mut findings = Vec::new();
        link::check_manifest_url(url, &mut findings);
        report.findings.extend(findings);
        report.manifest_url = Some(url.to_owned());
    }
}

fn check_local_file(path: &str, request: &Request, report: &mut Report) -> Result<(), DoctorError> {
    let file_error = |source| DoctorError::File { path: path.to_owned(), source };
    let bytes_head = {
        use std::io::Read;
        let mut head = [0u8; 4];
        let mut file = std::fs::File::open(path).map_err(file_error)?;
        let read = file.read(&mut head).map_err(file_error)?;
        head[..read].to_vec()
    };
    if bytes_head.starts_with(b"PK") {
        let file = std::fs::File::open(path).map_err(file_error)?;
        let source = otaship_ipa::FileSource::new(file).map_err(file_error)?;
        match otaship_ipa::inspect_ipa(&source, &otaship_ipa::InspectOptions::default()) {
            Ok(inspection) => report.findings.extend(package::judge(&inspection, None, &request.device)),
            Err(error) => report.findings.push(Finding::error(
                "ipa-unreadable",
                format!("The .ipa cannot be read [{}]: {error}", error.code()),
                "Use the .ipa exported by Xcode, unmodified.",
            )),
        }
    } else {
        let bytes = std::fs::read(path).map_err(file_error)?;
        let (findings, seen) = manifest::check_bytes(&bytes);
        report.findings.extend(findings);
        report.package_url = seen.package_url;
    }
    Ok(())
}

async fn tls_for(url: &str, request: &Request, report: &mut Report) {
    if !url.starts_with("https://") {
        return;
    }
    if let Some((host, port)) = host_and_port_of(url) {
        let (findings, _) = tls::check(&host, port, &request.options).await;
        report.findings.extend(findings);
    }
}

/// The manifest, the TLS of its host, the `.ipa` and the image behind it.
async fn check_manifest_chain(
    manifest_url: &str,
    request: &Request,
    client: &reqwest::Client,
    transferred: &Arc<AtomicU64>,
    report: &mut Report,
) {
    tls_for(manifest_url, request, report).await;
    let (findings, seen) = manifest::check_url(manifest_url, &request.options).await;
    // The link check may already have judged the manifest URL (its scheme, say): one finding of
    // a kind is enough.
    for finding in findings {
        if !report.findings.iter().any(|known| known.code == finding.code) {
            report.findings.push(finding);
        }
    }
    report.package_url = seen.package_url.clone();
    if let Some(package_url) = &seen.package_url {
        if host_and_port_of(package_url) != host_and_port_of(manifest_url) {
            tls_for(package_url, request, report).await;
        }
        let (findings, inspection) =
            package::check_url(package_url, client, request.full, &seen.hashes, transferred).await;
        report.findings.extend(findings);
        if let Some(inspection) = inspection {
            report.findings.extend(package::judge(&inspection, seen.bundle_id.as_deref(), &request.device));
        }
    }
    if let Some(image_url) = &seen.display_image_url {
        report.findings.extend(package::check_image(image_url, client, transferred).await);
    }
}

/// The largest install page read: the link is near its top, and a server under diagnosis is not
/// trusted to end what it sends.
const MAX_PAGE_BYTES: usize = 4 << 20;

/// A response body read up to a limit.
pub(crate) struct CappedBody {
    /// The bytes read: all of the body, or its first `limit` bytes.
    pub bytes: Vec<u8>,
    /// Whether the body went on past the limit (the rest was not read).
    pub truncated: bool,
}

/// Reads at most `limit` bytes of a body, chunk by chunk. The doctor looks at servers that may
/// be broken or hostile: one that never ends a body (or sends gigabytes where a manifest should
/// be) must cost a bounded amount of memory, not all of it until the client's timeout.
pub(crate) async fn read_capped(mut response: reqwest::Response, limit: usize) -> reqwest::Result<CappedBody> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(CappedBody { bytes, truncated: true });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(CappedBody { bytes, truncated: false })
}
