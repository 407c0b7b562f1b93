//! The start-up self-check: the server looks at itself from the outside, as a tester's iPhone
//! would, with the same engine as `otaship doctor`: its public URL's TLS (chain, host name,
//! EKU, key, signature, validity) and the manifest of the newest build. Problems go to the log
//! and to the admin health page; the check repeats periodically, since certificates expire and
//! addresses change.

use std::time::Duration;

use otaship_doctor::{Finding, Options, Severity};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::AppState;

/// How often the check runs after the first time.
pub const INTERVAL: Duration = Duration::from_secs(6 * 60 * 60);

/// The outcome of one self-check.
#[derive(Debug, Clone)]
pub struct SelfCheck {
    /// When it ran.
    pub checked_at: OffsetDateTime,
    /// The base URL that was checked, as devices see it.
    pub url: String,
    /// What was found.
    pub findings: Vec<Finding>,
}

/// Runs the check against `base` (the URL devices use) and records it in `state`.
pub async fn run(state: &AppState, base: &str) -> SelfCheck {
    let mut findings = Vec::new();
    let mut options = Options::default();
    if let Some(ca) = state.tls.as_ref().and_then(|tls| tls.local_ca.as_ref()) {
        // Devices that followed the onboarding page trust the local CA.
        options.extra_roots.push(CertificateDer::from(ca.ca_der().to_vec()));
    }
    match otaship_doctor::host_and_port_of(base) {
        _ if base.starts_with("http://") => findings.push(Finding::error(
            "public-url-not-https",
            format!("Devices reach this server at {base}, over plain HTTP; iOS installs only over HTTPS."),
            "Serve HTTPS (the default local CA, --tls-cert, or --acme), or give the HTTPS URL of your TLS proxy \
             with --public-url.",
        )),
        Some((host, port)) => {
            if is_loopback_host(&host) {
                findings.push(Finding::warning(
                    "public-url-loopback",
                    format!("The URL devices get names {host}, which on a phone means the phone itself."),
                    "Listen on the network (--listen 0.0.0.0:8443) or set --public-url to an address phones reach.",
                ));
            }
            let (tls, _) = otaship_doctor::tls::check(&host, port, &options).await;
            findings.extend(tls);
        }
        None => findings.push(Finding::error(
            "public-url-invalid",
            format!("{base} is not a URL the check can connect to."),
            "Fix --public-url.",
        )),
    }
    match newest_manifest(state, base).await {
        Some(url) if base.starts_with("https://") => {
            let (manifest, _) = otaship_doctor::manifest::check_url(&url, &options).await;
            findings.extend(manifest);
        }
        Some(_) => {}
        None => findings.push(Finding::info("no-builds", "No build uploaded yet, so no manifest to fetch.")),
    }
    for finding in &findings {
        match finding.severity {
            Severity::Error => {
                tracing::error!(code = finding.code, fix = %finding.fix, "self-check: {}", finding.message)
            }
            Severity::Warning => {
                tracing::warn!(code = finding.code, fix = %finding.fix, "self-check: {}", finding.message)
            }
            Severity::Info => tracing::info!(code = finding.code, "self-check: {}", finding.message),
        }
    }
    let check = SelfCheck { checked_at: OffsetDateTime::now_utc(), url: base.to_owned(), findings };
    match state.self_check.write() {
        Ok(mut slot) => *slot = Some(check.clone()),
        Err(poisoned) => *poisoned.into_inner() = Some(check.clone()),
    }
    check
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The manifest URL of the newest build, under `base`.
async fn newest_manifest(state: &AppState, base: &str) -> Option<String> {
    let apps = state.db.list_apps().await.ok()?;
    let newest = apps.into_iter().max_by_key(|app| app.latest.created_at)?;
    Some(crate::http::BuildUrls::new(base, &newest.latest.install_token, newest.latest.has_icon).manifest)
}

/// The latest result, if the check has run.
pub fn latest(state: &AppState) -> Option<SelfCheck> {
    match state.self_check.read() {
        Ok(slot) => slot.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}
