//! HTTPS: the rustls configuration the server listens with, where its certificate comes from,
//! and the accept loop that serves the router over TLS.
//!
//! iOS installs only over HTTPS, so this is on the product's main path, not an option for the
//! paranoid. The policy is fixed, not configurable: TLS 1.3 and 1.2 only, and only suites with an
//! ephemeral (forward-secret) key exchange, which is what Apple's App Transport Security asks of
//! a server. The certificate sits behind a resolver so that it can be replaced while the server
//! runs, without dropping connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub mod acme;
pub mod local_ca;

/// How long a client may take to finish the TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a client may take to send a request's headers (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The cryptography every TLS object of the server uses. Both aws-lc-rs and ring end up in the
/// dependency tree, so the provider is always named, never taken from a process default.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(is_forward_secret);
    Arc::new(provider)
}

/// TLS 1.3 suites always use an ephemeral key exchange; TLS 1.2 ones must be ECDHE or DHE.
fn is_forward_secret(suite: &SupportedCipherSuite) -> bool {
    match suite {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(suite) => {
            matches!(suite.kx, rustls::crypto::KeyExchangeAlgorithm::ECDHE | rustls::crypto::KeyExchangeAlgorithm::DHE)
        }
    }
}

/// The cipher suites the server offers, by name (for `doctor` and the start-up banner).
pub fn offered_suites() -> Vec<CipherSuite> {
    crypto_provider().cipher_suites.iter().map(SupportedCipherSuite::suite).collect()
}

/// A certificate and key read from PEM files, with the paths kept for reloading.
#[derive(Debug)]
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl CertificateFiles {
    /// Names the PEM files: the certificate chain (leaf first) and its private key.
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        CertificateFiles { cert, key }
    }

    /// Reads and checks both files; errors say which file is wrong and how.
    pub fn load(&self) -> Result<CertifiedKey> {
        load_certified_key(&self.cert, &self.key)
    }
}

/// Reads a PEM certificate chain and its key, and checks that they belong together.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey> {
    let cert_pem = std::fs::read(cert_path)
        .with_context(|| format!("cannot read the certificate file {} (--tls-cert)", cert_path.display()))?;
    let key_pem = std::fs::read(key_path)
        .with_context(|| format!("cannot read the private key file {} (--tls-key)", key_path.display()))?;
    certified_key_from_pem(&cert_pem, &key_pem).with_context(|| {
        format!("the certificate {} and key {} cannot be used", cert_path.display(), key_path.display())
    })
}

/// Parses a PEM certificate chain (leaf first) and a PEM private key and checks that the key is
/// the certificate's.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate file is not valid PEM")?;
    if chain.is_empty() {
        bail!("the certificate file holds no certificate; it must start with -----BEGIN CERTIFICATE-----");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| {
        anyhow::anyhow!(
            "the key file holds no usable private key ({error}); it must be an unencrypted PEM key \
             (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
        )
    })?;
    CertifiedKey::from_der(chain, key, &crypto_provider()).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => {
            anyhow::anyhow!("the private key does not belong to the first certificate in the file (the leaf)")
        }
        other => anyhow::anyhow!("the private key cannot be used: {other}"),
    })
}

/// Hands every handshake the current certificate; [`CertificateResolver::replace`] swaps it
/// for new connections while existing ones keep theirs.
#[derive(Debug)]
pub struct CertificateResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertificateResolver {
    /// Starts with `key`.
    pub fn new(key: CertifiedKey) -> Self {
        CertificateResolver { current: RwLock::new(Arc::new(key)) }
    }

    /// Uses `key` for every handshake from now on.
    pub fn replace(&self, key: CertifiedKey) {
        let key = Arc::new(key);
        match self.current.write() {
            Ok(mut current) => *current = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }

    fn current_key(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current_key())
    }
}

/// How often certificate sources are checked for changes (new addresses, replaced files,
/// renewal).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// HTTPS as the server runs it: the rustls configuration, and what keeps its certificate
/// current.
pub struct Tls {
    /// The configuration every connection is accepted with.
    pub server_config: Arc<ServerConfig>,
    /// The local CA, in the default mode.
    pub local_ca: Option<Arc<local_ca::LocalCa>>,
    source: Source,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Tls").field("source", &self.source).finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Source {
    LocalCa { hosts: Vec<String>, certificate: Arc<CertificateResolver> },
    Files { files: CertificateFiles, seen: std::sync::Mutex<Option<FileStamp>>, certificate: Arc<CertificateResolver> },
    Acme(acme::Acme),
}

/// What tells that a certificate file changed: its length and modification time, for both.
type FileStamp = [(u64, Option<std::time::SystemTime>); 2];

fn stamp(files: &CertificateFiles) -> Option<FileStamp> {
    let one = |path: &Path| std::fs::metadata(path).ok().map(|meta| (meta.len(), meta.modified().ok()));
    Some([one(&files.cert)?, one(&files.key)?])
}

impl Tls {
    /// Sets up HTTPS as configured (creating the local CA on first start); `None` for `--tls off`.
    pub fn start(
        setting: &crate::TlsSetting,
        data_dir: &Path,
        local_ca: Option<local_ca::LocalCa>,
    ) -> Result<Option<Tls>> {
        match setting {
            crate::TlsSetting::Off => Ok(None),
            crate::TlsSetting::LocalCa { hosts } => {
                let ca = local_ca.context("the local CA must be loaded (local_ca::shared_ca) before HTTPS starts")?;
                let (key, _) = ca.server_certificate(&local_ca::ServerNames::of_this_machine(hosts))?;
                let certificate = Arc::new(CertificateResolver::new(key));
                Ok(Some(Tls {
                    server_config: server_config(certificate.clone(), false)?,
                    local_ca: Some(Arc::new(ca)),
                    source: Source::LocalCa { hosts: hosts.clone(), certificate },
                }))
            }
            crate::TlsSetting::Files { cert, key } => {
                let files = CertificateFiles::new(cert.clone(), key.clone());
                let seen = stamp(&files);
                let certificate = Arc::new(CertificateResolver::new(files.load()?));
                Ok(Some(Tls {
                    server_config: server_config(certificate.clone(), false)?,
                    local_ca: None,
                    source: Source::Files { files, seen: std::sync::Mutex::new(seen), certificate },
                }))
            }
            crate::TlsSetting::Acme { domains, email, directory, directory_ca } => {
                let acme = acme::Acme::new(&acme::AcmeSettings {
                    domains: domains.clone(),
                    email: email.clone(),
                    directory: directory.clone(),
                    directory_ca: directory_ca.clone(),
                    cache_dir: data_dir.join("tls").join("acme"),
                })?;
                Ok(Some(Tls {
                    server_config: server_config(acme.resolver(), true)?,
                    local_ca: None,
                    source: Source::Acme(acme),
                }))
            }
        }
    }

    /// The certificate chain and key the server presents now, to sign with (enrollment
    /// profiles); `None` while an ACME certificate has not been obtained yet.
    pub fn identity(&self) -> Option<Arc<CertifiedKey>> {
        match &self.source {
            Source::LocalCa { certificate, .. } | Source::Files { certificate, .. } => Some(certificate.current_key()),
            Source::Acme(acme) => acme.current(),
        }
    }

    /// Brings the served certificate up to date: a new one from the local CA when the machine's
    /// addresses changed or renewal is due, or the operator's files when they changed. A file
    /// that cannot be loaded (half written, say) keeps the old certificate in service.
    pub fn refresh(&self) {
        match &self.source {
            Source::LocalCa { hosts, certificate } => {
                let Some(ca) = &self.local_ca else { return };
                match ca.server_certificate(&local_ca::ServerNames::of_this_machine(hosts)) {
                    Ok((key, true)) => {
                        tracing::info!("issued a new server certificate from the local CA");
                        certificate.replace(key);
                    }
                    Ok((_, false)) => {}
                    Err(error) => tracing::error!(error = %format!("{error:#}"), "cannot renew the server certificate"),
                }
            }
            // The ACME client renews on its own schedule (see `maintain`).
            Source::Acme(_) => {}
            Source::Files { files, seen, certificate } => {
                let now = stamp(files);
                let mut seen = match seen.lock() {
                    Ok(seen) => seen,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if now.is_none() || now == *seen {
                    return;
                }
                match files.load() {
                    Ok(key) => {
                        tracing::info!("reloaded the TLS certificate from its files");
                        certificate.replace(key);
                        *seen = now;
                    }
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "the changed certificate files cannot be used yet; still serving the previous certificate");
                    }
                }
            }
        }
    }

    /// Calls [`Tls::refresh`] every `interval` until `stop` is cancelled.
    pub async fn maintain(self: Arc<Self>, interval: Duration, stop: tokio_util::sync::CancellationToken) {
        if let Source::Acme(acme) = &self.source {
            return acme.drive(stop).await;
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let tls = Arc::clone(&self);
                    // Key generation and file reads are blocking work.
                    if let Err(error) = tokio::task::spawn_blocking(move || tls.refresh()).await {
                        tracing::error!(%error, "certificate maintenance failed");
                    }
                }
                () = stop.cancelled() => return,
            }
        }
    }

    /// The default maintenance interval.
    pub fn maintenance_interval() -> Duration {
        MAINTENANCE_INTERVAL
    }
}

/// The server's TLS configuration: TLS 1.3 and 1.2, forward-secret suites, HTTP/2 and 1.1 (and
/// ACME's validation protocol when the certificate comes from ACME).
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>, acme_validation: bool) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("the TLS library refused the protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme_validation {
        config.alpn_protocols.push(acme::ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

/// Bytes one HTTP/2 stream may send before the server acknowledges them.
const H2_STREAM_WINDOW: u32 = 8 << 20;
/// Bytes all streams of a connection may send before the server acknowledges them.
const H2_CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest HTTP/2 frame a client may send.
const H2_MAX_FRAME: u32 = 1 << 20;

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then lets the requests in
/// flight finish (up to a grace period).
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    // HTTP/2's default 64 KiB flow-control windows make every upload (Safari and curl speak
    // HTTP/2 here) wait for a window update every 64 KiB: a 1 GiB upload took 20-30 s instead
    // of 3. Larger windows let a client keep the connection full; larger frames cost fewer
    // frame headers and wake-ups.
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written as headers then streamed bodies: without this, a small body on a
        // kept-alive connection waits for the client's delayed ACK (about 40 ms).
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        // The peer's address rides along in every request of the connection, as `axum::serve`
        // does with `into_make_service_with_connect_info` (rate limits, logs).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            if tls.get_ref().1.alpn_protocol() == Some(acme::ACME_TLS_ALPN) {
                // An ACME validator: the handshake was the whole exchange.
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still busy {SHUTDOWN_GRACE:?} after the shutdown signal");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_secret_suites_are_offered() {
        let suites = offered_suites();
        assert!(!suites.is_empty());
        for suite in &crypto_provider().cipher_suites {
            assert!(is_forward_secret(suite), "{:?}", suite.suite());
        }
        assert!(suites.contains(&CipherSuite::TLS13_AES_128_GCM_SHA256));
        assert!(suites.contains(&CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let first = rcgen::generate_simple_self_signed(vec!["a.test".into()]).expect("certificate");
        let second = rcgen::generate_simple_self_signed(vec!["b.test".into()]).expect("certificate");
        let error = certified_key_from_pem(first.cert.pem().as_bytes(), second.signing_key.serialize_pem().as_bytes())
            .expect_err("mismatch refused");
        assert!(error.to_string().contains("does not belong"), "{error}");
        assert!(
            certified_key_from_pem(first.cert.pem().as_bytes(), first.signing_key.serialize_pem().as_bytes()).is_ok()
        );
        let error = certified_key_from_pem(b"", first.signing_key.serialize_pem().as_bytes()).expect_err("empty");
        assert!(error.to_string().contains("no certificate"), "{error}");
        let error = certified_key_from_pem(first.cert.pem().as_bytes(), b"junk").expect_err("no key");
        assert!(error.to_string().contains("no usable private key"), "{error}");
    }
}
