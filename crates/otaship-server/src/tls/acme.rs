//! Certificates from an ACME CA (Let's Encrypt, or any RFC 8555 directory) over TLS-ALPN-01.
//!
//! The validation happens on the HTTPS port itself: the CA connects offering the `acme-tls/1`
//! protocol, the resolver answers with the challenge certificate, and the accept loop closes
//! such connections after the handshake. Account and certificates are cached under
//! `<data-dir>/tls/acme/`, so a restart serves the cached certificate at once; renewal runs in
//! the background while the server serves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use rustls::RootCertStore;
use rustls_acme::caches::DirCache;
use rustls_acme::{AcmeConfig, AcmeState, ResolvesServerCertAcme};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

type State = AcmeState<std::io::Error, std::io::Error>;

/// The ACME client and the certificate it keeps current.
pub struct Acme {
    resolver: Arc<ResolvesServerCertAcme>,
    /// The state machine; taken by the task that drives it.
    state: Mutex<Option<State>>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Acme").finish_non_exhaustive()
    }
}

/// What the ACME client needs to know.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// Names of the certificate.
    pub domains: Vec<String>,
    /// Account contact address.
    pub email: Option<String>,
    /// Directory URL.
    pub directory: String,
    /// The only root trusted for the directory's HTTPS, when it is a private CA; else the
    /// public Web PKI roots.
    pub directory_ca: Option<PathBuf>,
    /// Where account and certificates are cached.
    pub cache_dir: PathBuf,
}

impl Acme {
    /// Prepares the client; nothing is ordered until [`Acme::drive`] runs.
    pub fn new(settings: &AcmeSettings) -> Result<Acme> {
        std::fs::create_dir_all(&settings.cache_dir)
            .with_context(|| format!("cannot create the ACME cache {}", settings.cache_dir.display()))?;
        let provider = super::crypto_provider();
        let config = match &settings.directory_ca {
            Some(path) => AcmeConfig::new_with_client_config(&settings.domains, directory_client(path, provider)?),
            None => AcmeConfig::new_with_provider(&settings.domains, provider),
        };
        let contact: Vec<String> = settings.email.iter().map(|email| format!("mailto:{email}")).collect();
        let state = config
            .directory(&settings.directory)
            .contact(contact)
            .cache(DirCache::new(settings.cache_dir.clone()))
            .state();
        Ok(Acme { resolver: state.resolver(), state: Mutex::new(Some(state)) })
    }

    /// The resolver that serves the ACME certificate, and challenge certificates to validators.
    pub fn resolver(&self) -> Arc<ResolvesServerCertAcme> {
        Arc::clone(&self.resolver)
    }

    /// Orders, deploys and renews the certificate until `stop` is cancelled, logging what
    /// happens. Runs once per process; a second call returns at once.
    pub async fn drive(&self, stop: tokio_util::sync::CancellationToken) {
        let taken = match self.state.lock() {
            Ok(mut state) => state.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(mut state) = taken else { return };
        loop {
            tokio::select! {
                event = state.next() => match event {
                    Some(Ok(event)) => tracing::info!(?event, "ACME"),
                    Some(Err(error)) => tracing::error!(%error, "ACME failed; retrying"),
                    None => return,
                },
                () = stop.cancelled() => return,
            }
        }
    }
}

/// A TLS client for the ACME directory that trusts only the root in `path`.
fn directory_client(path: &Path, provider: Arc<rustls::crypto::CryptoProvider>) -> Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read --acme-ca-cert {}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.with_context(|| format!("--acme-ca-cert {} is not PEM", path.display()))?;
        roots.add(certificate).with_context(|| format!("--acme-ca-cert {} holds an unusable root", path.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("--acme-ca-cert {} holds no certificate", path.display());
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("the TLS library refused the protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
