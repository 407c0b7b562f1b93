//! The diagnosis engine behind `otaship doctor`, the server's start-up self-check and its
//! Diagnose page: it looks at an over-the-air install link from the outside, the way an iPhone
//! does, and says what will fail and how to fix it.
//!
//! Every check yields [`Finding`]s with a stable code, a severity, what is wrong, and what to
//! do. The rules come from Apple's documented requirements (spec §3.2 and §4): TLS as iOS's
//! App Transport Security wants it, manifests as the installer reads them.

pub mod manifest;
pub mod tls;

use std::net::SocketAddr;

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
