//! TLS as iOS sees it: connect, take whatever certificate chain the server sends, then judge it
//! by Apple's rules (spec §3.2): TLS 1.2 or later with forward secrecy, a chain to a root the
//! device trusts, the host name in subjectAltName, EKU serverAuth, RSA ≥ 2048 or ECC ≥ 256 bits,
//! SHA-2 signatures, at most 398 days for public CAs and 825 for private ones.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{Finding, Options};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Apple's limit for certificates from public CAs (issued after 2020-09-01).
const PUBLIC_MAX_DAYS: i64 = 398;
/// Apple's limit for certificates from private (user-installed) CAs.
const PRIVATE_MAX_DAYS: i64 = 825;
/// A certificate expiring sooner than this is worth a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// What the TLS check saw, besides its findings.
#[derive(Debug, Clone, Default)]
pub struct TlsSeen {
    /// The chain as sent, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// E.g. `TLSv1_3`.
    pub version: Option<String>,
    /// E.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: Option<String>,
}

/// Connects to `host:port` (or the `--resolve` address) and judges its TLS.
pub async fn check(host: &str, port: u16, options: &Options) -> (Vec<Finding>, TlsSeen) {
    let mut findings = Vec::new();
    let mut seen = TlsSeen::default();
    let address = match options.resolved(host, port) {
        Some(address) => address.to_string(),
        None => format!("{}:{port}", bracket_ipv6(host)),
    };
    let Ok(server_name) = ServerName::try_from(host.to_owned()) else {
        findings.push(Finding::error(
            "url-bad-host",
            format!("{host:?} is not a host name or address"),
            "Use a URL whose host is a DNS name or an IP address.",
        ));
        return (findings, seen);
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let recorder = Arc::new(ChainRecorder { chain: Mutex::new(Vec::new()), provider: provider.clone() });
    let config = match rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    {
        Ok(builder) => builder.dangerous().with_custom_certificate_verifier(recorder.clone()).with_no_client_auth(),
        Err(error) => {
            findings.push(Finding::error("doctor-internal", format!("TLS setup failed: {error}"), ""));
            return (findings, seen);
        }
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            findings.push(Finding::error(
                "connect-failed",
                format!("Cannot connect to {address}: {error}."),
                "Check that the server runs, listens on that address and port, and that no firewall blocks it; \
                 the iPhone must reach this host too.",
            ));
            return (findings, seen);
        }
        Err(_) => {
            findings.push(Finding::error(
                "connect-timeout",
                format!("Connecting to {address} took longer than {CONNECT_TIMEOUT:?}."),
                "A firewall may drop the connection, or the address is not reachable from here.",
            ));
            return (findings, seen);
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name.clone(), stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            findings.push(Finding::error(
                "tls-handshake-failed",
                format!("The TLS handshake with {address} failed: {error}."),
                "iOS needs TLS 1.2 or later with an ECDHE cipher suite (AES-GCM or ChaCha20); a server that offers \
                 only TLS 1.0/1.1, RSA key exchange or plain HTTP on this port fails the same way.",
            ));
            return (findings, seen);
        }
        Err(_) => {
            findings.push(Finding::error(
                "tls-handshake-timeout",
                format!("The TLS handshake with {address} did not finish in {CONNECT_TIMEOUT:?}."),
                "Is the port speaking TLS? A plain-HTTP server on an https:// URL stalls like this.",
            ));
            return (findings, seen);
        }
    };
    let (_, connection) = tls.get_ref();
    seen.version = connection.protocol_version().map(|version| format!("{version:?}"));
    seen.cipher_suite = connection.negotiated_cipher_suite().map(|suite| format!("{:?}", suite.suite()));
    seen.chain = match recorder.chain.lock() {
        Ok(chain) => chain.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    findings.push(Finding::info(
        "tls-negotiated",
        format!(
            "{} with {}",
            seen.version.as_deref().unwrap_or("unknown version"),
            seen.cipher_suite.as_deref().unwrap_or("an unknown suite")
        ),
    ));
    findings.extend(judge_chain(&seen.chain, &server_name, options, &provider));
    (findings, seen)
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

/// Judges a chain (leaf first) for `server_name` by iOS's rules.
pub fn judge_chain(
    chain: &[CertificateDer<'static>],
    server_name: &ServerName<'static>,
    options: &Options,
    provider: &Arc<CryptoProvider>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some((leaf_der, intermediates)) = chain.split_first() else {
        findings.push(Finding::error(
            "tls-no-certificate",
            "The server sent no certificate.",
            "Configure a certificate.",
        ));
        return findings;
    };
    let Ok((_, leaf)) = X509Certificate::from_der(leaf_der) else {
        findings.push(Finding::error(
            "tls-certificate-unreadable",
            "The server's certificate cannot be parsed.",
            "Replace it with a standard X.509 certificate.",
        ));
        return findings;
    };
    let now = UnixTime::now();
    let public = verifier(webpki_roots(), provider);
    let private = {
        let mut roots = RootCertStore::empty();
        let (_, _) = roots.add_parsable_certificates(options.extra_roots.iter().cloned());
        verifier(roots, provider)
    };
    let verdict = |verifier: &Option<Arc<WebPkiServerVerifier>>| {
        verifier.as_ref().map(|verifier| verifier.verify_server_cert(leaf_der, intermediates, server_name, &[], now))
    };
    let public_verdict = verdict(&public);
    let private_verdict = verdict(&private);
    let trusted_by = match (&public_verdict, &private_verdict) {
        (Some(Ok(_)), _) => Some(Trust::Public),
        (_, Some(Ok(_))) => Some(Trust::Private),
        _ => None,
    };
    if trusted_by.is_none() {
        // Say why, from the most specific verdict available.
        let error = match (&private_verdict, &public_verdict) {
            (Some(Err(error)), _) | (_, Some(Err(error))) => Some(error.clone()),
            _ => None,
        };
        findings.push(untrusted_finding(error, &leaf, intermediates.is_empty(), !options.extra_roots.is_empty()));
    }

    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let now_seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let days_left = (not_after - now_seconds) / 86_400;
    if not_after >= now_seconds && days_left < EXPIRY_WARNING_DAYS {
        findings.push(Finding::warning(
            "tls-expires-soon",
            format!("The certificate expires in {days_left} day(s)."),
            "Renew it now; installs fail with \"Cannot connect\" the moment it expires.",
        ));
    }
    let lifetime_days = (not_after - not_before) / 86_400;
    let limit = if trusted_by == Some(Trust::Public) { PUBLIC_MAX_DAYS } else { PRIVATE_MAX_DAYS };
    if lifetime_days > limit {
        findings.push(Finding::error(
            "tls-validity-too-long",
            format!(
                "The certificate is valid for {lifetime_days} days; iOS accepts at most {limit} for this kind of CA."
            ),
            "Issue a certificate with a shorter validity (otaship's local CA issues 397 days).",
        ));
    }
    match leaf.extended_key_usage() {
        Ok(Some(usage)) if usage.value.server_auth || usage.value.any => {}
        Ok(Some(_)) => findings.push(Finding::error(
            "tls-no-server-auth",
            "The certificate's extended key usage does not include serverAuth.",
            "Issue it with the TLS Web Server Authentication EKU (id-kp-serverAuth), which iOS requires.",
        )),
        Ok(None) => findings.push(Finding::error(
            "tls-no-server-auth",
            "The certificate has no extended key usage extension; iOS requires serverAuth in it.",
            "Issue it with extendedKeyUsage = serverAuth.",
        )),
        Err(_) => findings.push(Finding::error(
            "tls-certificate-unreadable",
            "The certificate's extended key usage cannot be read.",
            "Issue a standard certificate with extendedKeyUsage = serverAuth.",
        )),
    }
    if leaf.subject_alternative_name().ok().flatten().is_none() {
        findings.push(Finding::error(
            "tls-no-subject-alt-name",
            "The certificate has no subjectAltName; iOS ignores the common name.",
            "Issue it with the host name (or IP address) in subjectAltName.",
        ));
    }
    // The root itself is trusted by fiat; everything the server sends below it is checked.
    for (position, der) in chain.iter().enumerate() {
        let Ok((_, certificate)) = X509Certificate::from_der(der) else { continue };
        let is_root = position > 0 && certificate.subject() == certificate.issuer();
        let what = if position == 0 { "The certificate".to_owned() } else { format!("Chain certificate {position}") };
        if let Some(weak) = weak_key(&certificate) {
            findings.push(Finding::error(
                "tls-weak-key",
                format!("{what} has a {weak}; iOS requires RSA of 2048 bits or more, or ECC of 256 bits or more."),
                "Issue it with a stronger key (ECDSA P-256 or RSA 2048+).",
            ));
        }
        if !is_root && uses_sha1(&certificate) {
            findings.push(Finding::error(
                "tls-sha1-signature",
                format!("{what} is signed with SHA-1, which iOS does not trust."),
                "Reissue it with a SHA-256 (or stronger) signature.",
            ));
        }
    }
    if findings.iter().all(|finding| finding.severity == crate::Severity::Info) {
        let by = match trusted_by {
            Some(Trust::Public) => "a public CA",
            _ => "the given CA",
        };
        findings.push(Finding::info(
            "tls-ok",
            format!("The certificate is trusted through {by}, names the host, and follows Apple's rules; {days_left} days left."),
        ));
    }
    findings
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    Public,
    Private,
}

fn untrusted_finding(
    error: Option<rustls::Error>,
    leaf: &X509Certificate<'_>,
    sent_leaf_only: bool,
    have_extra_roots: bool,
) -> Finding {
    use rustls::CertificateError;
    let self_signed = leaf.subject() == leaf.issuer() && leaf.verify_signature(None).is_ok();
    match error {
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
        | Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => Finding::error(
            "tls-name-mismatch",
            "The certificate does not name this host in its subjectAltName.",
            "Issue a certificate that lists the exact host name (or IP address) of the URL, or use the name it lists.",
        ),
        Some(rustls::Error::InvalidCertificate(CertificateError::Expired))
        | Some(rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })) => Finding::error(
            "tls-expired",
            "The certificate has expired.",
            "Renew it; with --tls acme or the local CA otaship renews by itself.",
        ),
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidYet))
        | Some(rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })) => Finding::error(
            "tls-not-yet-valid",
            "The certificate is not valid yet.",
            "Check the server's clock, or wait until its start date.",
        ),
        _ if self_signed => Finding::error(
            "tls-self-signed-leaf",
            "The server's certificate is self-signed. iOS can never trust a self-signed server certificate, \
             not even after installing it.",
            "Use a certificate signed by a CA: otaship's local CA (the default), ACME, or your company's CA.",
        ),
        _ if sent_leaf_only && !have_extra_roots => Finding::error(
            "tls-untrusted",
            "The certificate does not chain to a public root. Either its CA is private, or the server does not \
             send the intermediate certificates.",
            "Serve the full chain (leaf, then intermediates); for a private CA, install its root on the devices \
             and pass it to the doctor with --ca.",
        ),
        _ if sent_leaf_only => Finding::error(
            "tls-missing-intermediate",
            "The server sends only its own certificate, and it does not chain to a trusted root without the \
             intermediate certificates.",
            "Configure the full chain: the leaf followed by every intermediate (for otaship, put them after the \
             leaf in --tls-cert).",
        ),
        _ => Finding::error(
            "tls-untrusted",
            "The certificate chain does not lead to a root the devices trust.",
            "Use a publicly trusted certificate (ACME), or install the private CA's root on each device and turn on \
             full trust under Settings > General > About > Certificate Trust Settings.",
        ),
    }
}

fn weak_key(certificate: &X509Certificate<'_>) -> Option<String> {
    use x509_parser::public_key::PublicKey;
    match certificate.public_key().parsed().ok()? {
        PublicKey::RSA(rsa) if rsa.key_size() < 2048 => Some(format!("{}-bit RSA key", rsa.key_size())),
        PublicKey::EC(point) if point.key_size() < 256 => Some(format!("{}-bit ECC key", point.key_size())),
        _ => None,
    }
}

fn uses_sha1(certificate: &X509Certificate<'_>) -> bool {
    let oid = certificate.signature_algorithm.algorithm.to_id_string();
    matches!(
        oid.as_str(),
        "1.2.840.113549.1.1.5" // sha1WithRSAEncryption
            | "1.2.840.10045.4.1" // ecdsa-with-SHA1
            | "1.2.840.10040.4.3" // dsa-with-sha1
    )
}

fn webpki_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

fn verifier(roots: RootCertStore, provider: &Arc<CryptoProvider>) -> Option<Arc<WebPkiServerVerifier>> {
    if roots.is_empty() {
        return None;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().ok()
}

/// Accepts any certificate during the handshake and keeps the chain, so that it can be judged
/// afterwards with every reason spelled out (a failed handshake would hide them).
#[derive(Debug)]
struct ChainRecorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|der| der.clone().into_owned()));
        match self.chain.lock() {
            Ok(mut recorded) => *recorded = chain,
            Err(poisoned) => *poisoned.into_inner() = chain,
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
