//! The local certificate authority, otaship's default way to HTTPS that an iPhone accepts.
//!
//! On first start it creates a private root CA and a server certificate the root signs for every
//! name and address the machine answers on. Testers trust the root once, through the
//! `.mobileconfig` the plain-HTTP helper serves; after that, every certificate the CA signs is
//! trusted, so the server certificate can be replaced (new addresses, renewal) without asking
//! testers for anything. The CA is kept in the database ([`shared_ca`]), so that every instance
//! on it signs with the one root testers trusted; `<data-dir>/tls/` holds a copy of it and this
//! instance's server certificate. Private key files are mode 0600.
//!
//! Apple's rules for the server certificate (spec §3.2): names in subjectAltName, EKU
//! serverAuth, SHA-256, P-256, at most 825 days (we issue 397, under every rule Apple has had).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

/// Lifetime of the server certificate.
pub const SERVER_CERT_LIFETIME: Duration = Duration::from_secs(397 * 24 * 60 * 60);
/// A server certificate with less than this left is replaced.
pub const RENEW_BEFORE: Duration = Duration::from_secs(60 * 24 * 60 * 60);
/// Lifetime of the root: long, because every tester has to trust a new root by hand.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";

/// The names and addresses a server certificate must cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerNames {
    /// DNS names (host name, `localhost`, `--host` names), lower case.
    pub dns: BTreeSet<String>,
    /// IP addresses.
    pub ips: BTreeSet<IpAddr>,
}

impl ServerNames {
    /// The machine's names: its host name, `localhost`, every interface address (loopback
    /// included, for the server's own checks), and `extra_hosts`.
    pub fn of_this_machine(extra_hosts: &[String]) -> ServerNames {
        let mut dns = BTreeSet::from(["localhost".to_owned()]);
        if let Some(host) = gethostname::gethostname().to_str().map(str::to_ascii_lowercase)
            && is_dns_name(&host)
        {
            dns.insert(host);
        }
        let mut ips = BTreeSet::new();
        for host in extra_hosts {
            match host.parse::<IpAddr>() {
                Ok(ip) => {
                    ips.insert(ip);
                }
                Err(_) => {
                    dns.insert(host.to_ascii_lowercase());
                }
            }
        }
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => ips.extend(interfaces.into_iter().map(|interface| interface.ip())),
            Err(error) => tracing::warn!(%error, "cannot list the network addresses for the server certificate"),
        }
        // Link-local IPv6 addresses carry a zone and are never typed into a phone.
        ips.retain(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80));
        ServerNames { dns, ips }
    }

    /// The non-loopback addresses, best first (IPv4 before IPv6): what a phone can reach.
    pub fn reachable_ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.ips.iter().copied().filter(|ip| !ip.is_loopback()).collect();
        ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
        ips
    }
}

/// Whether `name` can be a DNS name in a certificate (letters, digits, hyphens, dots).
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

/// The CA and its current server certificate, as stored in the data directory.
pub struct LocalCa {
    dir: PathBuf,
    ca_pem: String,
    ca_der: Vec<u8>,
    ca_key: KeyPair,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LocalCa").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA from `dir`, creating it on first start (no database: unit tests).
    #[cfg(test)]
    fn open_or_create(dir: &Path) -> Result<LocalCa> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (ca_pem, key_pem) = match read_ca_files(dir)? {
            Some(pems) => pems,
            None => new_ca_pems()?,
        };
        LocalCa::from_pems(dir, ca_pem, &key_pem)
    }

    /// The CA from its PEM texts; `dir` keeps a copy of them (written when missing or
    /// different) and the server certificate.
    fn from_pems(dir: &Path, ca_pem: String, key_pem: &str) -> Result<LocalCa> {
        let ca_key = KeyPair::from_pem(key_pem).context("the local CA key is damaged; restore it")?;
        let ca_der = rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map(|der| der.to_vec())
            .context("the local CA certificate is damaged; restore it")?;
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if std::fs::read_to_string(&key_path).ok().as_deref() != Some(key_pem) {
            write_private(&key_path, key_pem.as_bytes())?;
        }
        if std::fs::read_to_string(&cert_path).ok().as_deref() != Some(ca_pem.as_str()) {
            write_public(&cert_path, ca_pem.as_bytes())?;
            // A server certificate of another CA must not be served with this one.
            std::fs::remove_file(dir.join(SERVER_CERT)).ok();
        }
        Ok(LocalCa { dir: dir.to_owned(), ca_pem, ca_der, ca_key })
    }

    /// The root certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The root certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// Returns a server certificate for `names`: the stored one while it covers them and has
    /// more than [`RENEW_BEFORE`] left, else a new one. The flag says whether it is new.
    pub fn server_certificate(&self, names: &ServerNames) -> Result<(CertifiedKey, bool)> {
        let cert_path = self.dir.join(SERVER_CERT);
        let key_path = self.dir.join(SERVER_KEY);
        if let Ok(pem) = std::fs::read(&cert_path)
            && stored_certificate_fits(&pem, names)
            && let Ok(key) = super::load_certified_key(&cert_path, &key_path)
        {
            return Ok((key, false));
        }
        let (cert_pem, key_pem) = self.issue_server_certificate(names)?;
        write_private(&key_path, key_pem.as_bytes())?;
        write_public(&cert_path, cert_pem.as_bytes())?;
        let key = super::certified_key_from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
        Ok((key, true))
    }

    /// Signs a server certificate for `names`; returns the chain (leaf, then root) and the key.
    fn issue_server_certificate(&self, names: &ServerNames) -> Result<(String, String)> {
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem, &self.ca_key)
            .context("the local CA certificate cannot sign (it is damaged)")?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, names.dns.iter().find(|name| *name != "localhost").map_or("localhost", |n| n));
        subject.push(DnType::OrganizationName, "otaship");
        params.distinguished_name = subject;
        for name in &names.dns {
            params.subject_alt_names.push(SanType::DnsName(
                name.clone().try_into().with_context(|| format!("{name:?} cannot be a certificate name"))?,
            ));
        }
        params.subject_alt_names.extend(names.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        // An hour back, for phones whose clocks run a little behind.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + SERVER_CERT_LIFETIME;
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("cannot create a key")?;
        let cert = params.signed_by(&key, &issuer).context("cannot sign the server certificate")?;
        Ok((format!("{}{}", cert.pem(), self.ca_pem), key.serialize_pem()))
    }

    /// The root as an iOS configuration profile (a `com.apple.security.root` payload), which
    /// Safari hands to Settings for installation.
    pub fn mobileconfig(&self) -> Result<Vec<u8>> {
        use plist::{Dictionary, Value};
        let fingerprint = crate::tokens::hex(&sha2_digest(&self.ca_der));
        let uuid = |salt: &str| {
            let digest = crate::tokens::hex(&sha2_digest(format!("{salt}{fingerprint}").as_bytes()));
            format!(
                "{}-{}-4{}-8{}-{}",
                &digest[0..8],
                &digest[8..12],
                &digest[13..16],
                &digest[17..20],
                &digest[20..32]
            )
            .to_ascii_uppercase()
        };
        let name = self.common_name();
        let mut payload = Dictionary::new();
        payload.insert("PayloadType".into(), "com.apple.security.root".into());
        payload.insert("PayloadVersion".into(), 1.into());
        payload.insert("PayloadIdentifier".into(), format!("dev.otaship.ca.{}.root", &fingerprint[..16]).into());
        payload.insert("PayloadUUID".into(), uuid("root").into());
        payload.insert("PayloadDisplayName".into(), name.clone().into());
        payload.insert("PayloadCertificateFileName".into(), "otaship-ca.crt".into());
        payload.insert("PayloadContent".into(), Value::Data(self.ca_der.clone()));
        let mut profile = Dictionary::new();
        profile.insert("PayloadContent".into(), Value::Array(vec![Value::Dictionary(payload)]));
        profile.insert("PayloadDisplayName".into(), name.clone().into());
        profile.insert(
            "PayloadDescription".into(),
            "Lets this iPhone or iPad trust the otaship server that distributes test builds. \
             After installing, turn on full trust under Settings > General > About > Certificate Trust Settings."
                .into(),
        );
        profile.insert("PayloadIdentifier".into(), format!("dev.otaship.ca.{}", &fingerprint[..16]).into());
        profile.insert("PayloadOrganization".into(), "otaship".into());
        profile.insert("PayloadType".into(), "Configuration".into());
        profile.insert("PayloadUUID".into(), uuid("profile").into());
        profile.insert("PayloadVersion".into(), 1.into());
        profile.insert("PayloadRemovalDisallowed".into(), false.into());
        let mut out = Vec::new();
        Value::Dictionary(profile).to_writer_xml(&mut out).context("cannot write the configuration profile")?;
        Ok(out)
    }

    /// The root's common name, e.g. `otaship local CA (build-mac)`.
    pub fn common_name(&self) -> String {
        x509_parser::parse_x509_certificate(&self.ca_der)
            .ok()
            .and_then(|(_, cert)| {
                cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned)
            })
            .unwrap_or_else(|| "otaship local CA".to_owned())
    }

    /// SHA-256 of the root, as colon-separated hex (what Settings shows to compare).
    pub fn fingerprint(&self) -> String {
        sha2_digest(&self.ca_der).iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
    }
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn create_ca() -> Result<(String, KeyPair)> {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    // The random suffix tells two CAs of one machine apart in Settings.
    let suffix = crate::tokens::random_hex(3);
    subject.push(DnType::CommonName, format!("otaship local CA ({host}) {suffix}"));
    subject.push(DnType::OrganizationName, "otaship");
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + CA_LIFETIME;
    params.serial_number = Some(random_serial()?);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("cannot create the CA key")?;
    let cert = params.self_signed(&key).context("cannot create the CA certificate")?;
    Ok((cert.pem(), key))
}

fn random_serial() -> Result<rcgen::SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness for a serial number: {error}"))?;
    // Positive and non-zero, as RFC 5280 asks.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// Whether a stored server certificate covers exactly `names` and has time left.
fn stored_certificate_fits(pem: &[u8], names: &ServerNames) -> bool {
    let Ok(der) = rustls_pki_types::CertificateDer::from_pem_slice(pem) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let renew_at = OffsetDateTime::now_utc() + RENEW_BEFORE;
    if cert.validity().not_after.timestamp() <= renew_at.unix_timestamp() {
        return false;
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for name in &san.value.general_names {
        match name {
            x509_parser::extensions::GeneralName::DNSName(name) => {
                dns.insert((*name).to_owned());
            }
            x509_parser::extensions::GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => {
                    let octets: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
                    ips.insert(IpAddr::from(octets));
                }
                16 => {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(bytes);
                    ips.insert(IpAddr::from(octets));
                }
                _ => return false,
            },
            _ => {}
        }
    }
    dns == names.dns && ips == names.ips
}

/// The CA certificate and key PEMs in `dir`, if both are there.
fn read_ca_files(dir: &Path) -> Result<Option<(String, String)>> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if !cert_path.exists() && !key_path.exists() {
        return Ok(None);
    }
    let ca_pem = std::fs::read_to_string(&cert_path).with_context(|| {
        format!("cannot read the local CA certificate {}; restore it or remove {}", cert_path.display(), dir.display())
    })?;
    let key_pem = std::fs::read_to_string(&key_path).with_context(|| {
        format!("cannot read the local CA key {}; restore it or remove {}", key_path.display(), dir.display())
    })?;
    Ok(Some((ca_pem, key_pem)))
}

fn new_ca_pems() -> Result<(String, String)> {
    let (pem, key) = create_ca()?;
    tracing::info!("created the local certificate authority");
    Ok((pem, key.serialize_pem()))
}

/// The shared secret that holds the CA.
const CA_SECRET: &str = "local-ca";

#[derive(serde::Serialize, serde::Deserialize)]
struct CaSecret {
    certificate: String,
    key: String,
}

/// The CA every instance on this database shares: kept in the database (so that testers trust
/// one root whichever instance answers), with a copy in `<data-dir>/tls/`. On first start it is
/// the CA already in the data directory (an install from before the CA moved to the database),
/// else a new one; when instances start together, the first one stored wins.
pub async fn shared_ca(db: &crate::db::Db, data_dir: &Path) -> Result<LocalCa> {
    let dir = data_dir.join("tls");
    crate::config::create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stored = match db.secret(CA_SECRET).await? {
        Some(stored) => stored,
        None => {
            let (certificate, key) = match read_ca_files(&dir)? {
                Some(pems) => pems,
                None => new_ca_pems()?,
            };
            let value = serde_json::to_string(&CaSecret { certificate, key })?;
            db.secret_or_insert(CA_SECRET, &value).await?
        }
    };
    let secret: CaSecret = serde_json::from_str(&stored).context("the local CA stored in the database is damaged")?;
    LocalCa::from_pems(&dir, secret.certificate, &secret.key)
}

/// Writes a file only this user can read (a private key).
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, 0o600)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, 0o644)
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let Some(dir) = path.parent() else { bail!("{} has no parent directory", path.display()) };
    let temp = dir.join(format!(".{}.tmp", crate::tokens::random_hex(8)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| -> std::io::Result<()> {
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(error) = result {
        std::fs::remove_file(&temp).ok();
        return Err(error).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dns: &[&str], ips: &[&str]) -> ServerNames {
        ServerNames {
            dns: dns.iter().map(|name| (*name).to_owned()).collect(),
            ips: ips.iter().map(|ip| ip.parse().expect("ip")).collect(),
        }
    }

    #[test]
    fn the_server_certificate_is_kept_until_names_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = LocalCa::open_or_create(dir.path()).expect("CA");
        let first = names(&["localhost", "build-mac"], &["127.0.0.1", "192.168.1.20"]);
        let (_, created) = ca.server_certificate(&first).expect("certificate");
        assert!(created);
        let (_, created) = ca.server_certificate(&first).expect("certificate");
        assert!(!created, "the stored certificate still fits");
        let moved = names(&["localhost", "build-mac"], &["127.0.0.1", "10.0.0.7"]);
        let (_, created) = ca.server_certificate(&moved).expect("certificate");
        assert!(created, "a new address gets a new certificate");
        let again = LocalCa::open_or_create(dir.path()).expect("CA");
        assert_eq!(again.ca_der(), ca.ca_der(), "the root is created once");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [CA_KEY, SERVER_KEY] {
                let mode = std::fs::metadata(dir.path().join(key)).expect("key").permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }
    }

    #[test]
    fn dns_names_are_checked() {
        assert!(is_dns_name("build-mac.local"));
        assert!(!is_dns_name("-bad"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name("under_score"));
    }
}
