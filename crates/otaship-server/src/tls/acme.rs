//! Certificates from an ACME CA (Let's Encrypt, or any RFC 8555 directory) over TLS-ALPN-01.
//!
//! The validation happens on the HTTPS port itself: the CA connects offering the `acme-tls/1`
//! protocol, the resolver answers with the challenge certificate, and the accept loop closes
//! such connections after the handshake. Account and certificates are cached under
//! `<data-dir>/tls/acme/`, so a restart serves the cached certificate at once; renewal runs in
//! the background while the server serves. The cache files hold the account's and the
//! certificate's private keys: they are created `0600` (in a `0700` directory), with the file
//! names rustls-acme's own `DirCache` uses, so that caches written before stay valid.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_acme::{AccountCache, CertCache};
use rustls_acme::{AcmeConfig, AcmeState, ResolvesServerCertAcme};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

type State = AcmeState<std::io::Error, std::io::Error>;

/// The ACME client and the certificate it keeps current.
pub struct Acme {
    resolver: Arc<ResolvesServerCertAcme>,
    /// The certificate and key last loaded from or stored into the cache.
    current: Arc<RwLock<Option<Arc<CertifiedKey>>>>,
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
        crate::config::create_private_dir(&settings.cache_dir)
            .with_context(|| format!("cannot create the ACME cache {}", settings.cache_dir.display()))?;
        let provider = super::crypto_provider();
        let config = match &settings.directory_ca {
            Some(path) => AcmeConfig::new_with_client_config(&settings.domains, directory_client(path, provider)?),
            None => AcmeConfig::new_with_provider(&settings.domains, provider),
        };
        let contact: Vec<String> = settings.email.iter().map(|email| format!("mailto:{email}")).collect();
        let current = Arc::new(RwLock::new(None));
        let cache = WatchedCache { dir: settings.cache_dir.clone(), current: Arc::clone(&current) };
        let state = config.directory(&settings.directory).contact(contact).cache(cache).state();
        Ok(Acme { resolver: state.resolver(), current, state: Mutex::new(Some(state)) })
    }

    /// The certificate and key in service, once one was obtained (or loaded from the cache).
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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

/// The ACME cache on disk, watched: the certificate the client loads or stores is the one it
/// deploys, and the server also signs enrollment profiles with it. rustls-acme offers no other
/// way to read the deployed key.
struct WatchedCache {
    dir: PathBuf,
    current: Arc<RwLock<Option<Arc<CertifiedKey>>>>,
}

/// The cache file of an account (`cached_account_`, keyed by its contacts) or a certificate
/// (`cached_cert_`, keyed by its domains) at a directory: the names rustls-acme's `DirCache`
/// gives them, the unpadded URL-safe Base64 of a SHA-256 over the keys and the directory URL.
fn cache_file_name(prefix: &str, keys: &[String], directory_url: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for key in keys {
        digest.update(key.as_bytes());
        digest.update([0]);
    }
    digest.update(directory_url.as_bytes());
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.finalize()))
}

impl WatchedCache {
    async fn read(&self, name: String) -> std::io::Result<Option<Vec<u8>>> {
        let path = self.dir.join(name);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Writes a cache file `0600`, through a temporary file and a rename.
    async fn write(&self, name: String, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(name);
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || super::local_ca::write_private(&path, &bytes))
            .await
            .map_err(std::io::Error::other)?
            .map_err(|error| std::io::Error::other(format!("{error:#}")))
    }

    /// Keeps the key and chain of a cached certificate (PEM: the key, then the chain).
    fn watch(&self, pem: &[u8]) {
        match super::certified_key_from_pem(pem, pem) {
            Ok(key) => match self.current.write() {
                Ok(mut current) => *current = Some(Arc::new(key)),
                Err(poisoned) => *poisoned.into_inner() = Some(Arc::new(key)),
            },
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "the cached ACME certificate cannot sign profiles")
            }
        }
    }
}

#[async_trait::async_trait]
impl CertCache for WatchedCache {
    type EC = std::io::Error;

    async fn load_cert(&self, domains: &[String], directory_url: &str) -> Result<Option<Vec<u8>>, Self::EC> {
        let loaded = self.read(cache_file_name("cached_cert_", domains, directory_url)).await?;
        if let Some(pem) = &loaded {
            self.watch(pem);
        }
        Ok(loaded)
    }

    async fn store_cert(&self, domains: &[String], directory_url: &str, cert: &[u8]) -> Result<(), Self::EC> {
        self.watch(cert);
        self.write(cache_file_name("cached_cert_", domains, directory_url), cert).await
    }
}

#[async_trait::async_trait]
impl AccountCache for WatchedCache {
    type EA = std::io::Error;

    async fn load_account(&self, contact: &[String], directory_url: &str) -> Result<Option<Vec<u8>>, Self::EA> {
        self.read(cache_file_name("cached_account_", contact, directory_url)).await
    }

    async fn store_account(&self, contact: &[String], directory_url: &str, account: &[u8]) -> Result<(), Self::EA> {
        self.write(cache_file_name("cached_account_", contact, directory_url), account).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> WatchedCache {
        WatchedCache { dir: dir.to_owned(), current: Arc::new(RwLock::new(None)) }
    }

    #[tokio::test]
    async fn cache_files_are_private_and_named_as_rustls_acme_names_them() {
        use rustls_acme::caches::DirCache;
        let dir = tempfile::tempdir().expect("tempdir");
        let (domains, contact) = (vec!["ota.example.com".to_owned()], vec!["mailto:ops@example.com".to_owned()]);
        let directory = "https://acme.example.com/dir";
        let ours = cache(dir.path());
        ours.store_account(&contact, directory, b"account key").await.expect("store");
        ours.store_cert(&domains, directory, b"not a certificate").await.expect("store");
        let theirs = DirCache::new(dir.path().to_owned());
        assert_eq!(theirs.load_account(&contact, directory).await.expect("load").as_deref(), Some(&b"account key"[..]));
        assert_eq!(
            theirs.load_cert(&domains, directory).await.expect("load").as_deref(),
            Some(&b"not a certificate"[..])
        );
        // A cache rustls-acme wrote before is read.
        let other = vec!["other.example.com".to_owned()];
        theirs.store_cert(&other, directory, b"older").await.expect("store");
        assert_eq!(ours.load_cert(&other, directory).await.expect("load").as_deref(), Some(&b"older"[..]));
        assert_eq!(ours.load_cert(&domains, "https://elsewhere/dir").await.expect("load"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for name in [
                cache_file_name("cached_account_", &contact, directory),
                cache_file_name("cached_cert_", &domains, directory),
            ] {
                let mode = std::fs::metadata(dir.path().join(&name)).expect("file").permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{name}");
            }
        }
    }
}
