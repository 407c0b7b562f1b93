//! Checks the signature on a device's Profile Service reply, and whether the signer is a device
//! that Apple certified.
//!
//! A reply is accepted only when a signer's signature verifies with the certificate it names
//! (so the plist is exactly what that key signed). Separately, the reply counts as *verified*
//! when that certificate chains, signature by signature, to Apple's roots through a CA that
//! issues device certificates ("Apple iPhone Device CA"): no developer certificate, which also
//! chains to Apple's root, can pass for a device. Validity dates are not held against the chain:
//! Apple's device hierarchy is old (its intermediates have expired while devices keep using
//! their identities), and what matters here is who issued the key, not when.
//!
//! The public-key cryptography is aws-lc-rs (already the TLS provider), with the legacy
//! algorithms devices use (1024-bit RSA, SHA-1) allowed for this check only.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use otaship_ipa::cms::{SignedData, Signer, SignerId};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// Apple's root of device identities and the intermediates under it (public certificates, as
/// provisioning profiles carry them).
const APPLE_DEVICE_ROOTS: &str = include_str!("apple-device-roots.pem");

/// The name of the CA that issues device identity certificates.
const APPLE_DEVICE_CA_NAME: &str = "Apple iPhone Device CA";

/// Longest chain followed from a signer to a root.
const MAX_CHAIN: usize = 5;

/// Why a reply is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplyRejected {
    /// No certificate in the reply matches its signer.
    #[error("the reply does not carry the certificate of the key that signed it")]
    NoSignerCertificate,
    /// The signature does not verify.
    #[error("the reply's signature does not match its content")]
    BadSignature,
    /// An algorithm otaship cannot check.
    #[error("the reply is signed with an algorithm otaship cannot check")]
    UnsupportedAlgorithm,
}

/// The certificates a verified device chains to.
#[derive(Debug, Clone)]
pub struct DeviceTrust {
    /// Self-signed roots (DER).
    roots: Vec<Vec<u8>>,
    /// Known intermediates, used when a reply omits them (DER).
    intermediates: Vec<Vec<u8>>,
    /// CAs trusted to issue device certificates directly (`--device-ca-cert`), for test labs
    /// and devices under a company's own CA.
    device_cas: Vec<Vec<u8>>,
}

impl DeviceTrust {
    /// Apple's device roots.
    pub fn apple() -> DeviceTrust {
        let mut trust = DeviceTrust { roots: Vec::new(), intermediates: Vec::new(), device_cas: Vec::new() };
        for certificate in CertificateDer::pem_slice_iter(APPLE_DEVICE_ROOTS.as_bytes()).flatten() {
            let der = certificate.to_vec();
            let self_signed = X509Certificate::from_der(&der).is_ok_and(|(_, parsed)| {
                parsed.tbs_certificate.subject.as_raw() == parsed.tbs_certificate.issuer.as_raw()
            });
            if self_signed {
                trust.roots.push(der);
            } else {
                trust.intermediates.push(der);
            }
        }
        trust
    }

    /// Also trusts the CAs in `pem` to issue device certificates.
    pub fn with_device_cas(mut self, pem: &[u8]) -> anyhow::Result<DeviceTrust> {
        let mut added = 0;
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let der = certificate.map_err(|error| anyhow::anyhow!("not a PEM certificate: {error}"))?.to_vec();
            X509Certificate::from_der(&der).map_err(|error| anyhow::anyhow!("not an X.509 certificate: {error}"))?;
            self.device_cas.push(der);
            added += 1;
        }
        if added == 0 {
            anyhow::bail!("it holds no certificate");
        }
        Ok(self)
    }
}

/// Verifies the reply's signatures; returns whether the signer is a device certified by a
/// trusted device CA. Every signer must verify (a reply has one).
pub fn verify_reply(signed: &SignedData, trust: &DeviceTrust) -> Result<bool, ReplyRejected> {
    if signed.signers.is_empty() {
        return Err(ReplyRejected::NoSignerCertificate);
    }
    let certificates = parse_all(&signed.certificates);
    let mut verified = true;
    for signer in &signed.signers {
        let certificate =
            certificates.iter().find(|cert| names(cert, &signer.id)).ok_or(ReplyRejected::NoSignerCertificate)?;
        check_signer(signer, &signed.content, certificate)?;
        verified &= chains_to_device_ca(certificate, &certificates, trust);
    }
    Ok(verified)
}

fn names(certificate: &X509Certificate<'_>, id: &SignerId) -> bool {
    match id {
        SignerId::IssuerAndSerial { issuer, serial } => {
            certificate.tbs_certificate.issuer.as_raw() == issuer.as_slice()
                && strip_leading_zeros(certificate.tbs_certificate.raw_serial()) == strip_leading_zeros(serial)
        }
        SignerId::KeyId(key_id) => certificate.extensions().iter().any(|extension| {
            matches!(
                extension.parsed_extension(),
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(identifier) if identifier.0 == key_id.as_slice()
            )
        }),
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&byte| byte != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn check_signer(signer: &Signer, content: &[u8], certificate: &X509Certificate<'_>) -> Result<(), ReplyRejected> {
    let digest = Digest::from_oid(&signer.digest_algorithm)
        .or_else(|| Digest::of_signature_oid(&signer.signature_algorithm))
        .ok_or(ReplyRejected::UnsupportedAlgorithm)?;
    let covered = signer.signed_attributes.as_deref().unwrap_or(content);
    verify(certificate.public_key(), digest, covered, &signer.signature).map_err(|error| match error {
        Failure::Unsupported => ReplyRejected::UnsupportedAlgorithm,
        Failure::Invalid => ReplyRejected::BadSignature,
    })
}

/// Whether `leaf` was issued by a trusted device CA: directly by a `--device-ca-cert`, or by a
/// CA named "Apple iPhone Device CA" that itself chains to an embedded Apple root.
fn chains_to_device_ca(leaf: &X509Certificate<'_>, carried: &[X509Certificate<'_>], trust: &DeviceTrust) -> bool {
    let device_cas = parse_all(&trust.device_cas);
    if device_cas.iter().any(|ca| issued_by(leaf, ca)) {
        return true;
    }
    let roots = parse_all(&trust.roots);
    let intermediates = parse_all(&trust.intermediates);
    let Some(device_ca) = carried.iter().chain(&intermediates).find(|ca| issued_by(leaf, ca)) else {
        return false;
    };
    if common_name(device_ca).as_deref() != Some(APPLE_DEVICE_CA_NAME) {
        return false;
    }
    let mut current = device_ca;
    for _ in 0..MAX_CHAIN {
        if roots.iter().any(|root| issued_by(current, root)) {
            return true;
        }
        let next = carried
            .iter()
            .chain(&intermediates)
            .find(|ca| ca.tbs_certificate.as_ref() != current.tbs_certificate.as_ref() && issued_by(current, ca));
        match next {
            Some(next) => current = next,
            None => return false,
        }
    }
    false
}

fn parse_all(list: &[Vec<u8>]) -> Vec<X509Certificate<'_>> {
    list.iter().filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert)).collect()
}

/// Whether `issuer` is named as `certificate`'s issuer and its key made `certificate`'s
/// signature.
fn issued_by(certificate: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    if certificate.tbs_certificate.issuer.as_raw() != issuer.tbs_certificate.subject.as_raw() {
        return false;
    }
    let Some(digest) = Digest::of_signature_oid(certificate.signature_algorithm.algorithm.as_bytes()) else {
        return false;
    };
    verify(issuer.public_key(), digest, certificate.tbs_certificate.as_ref(), &certificate.signature_value.data).is_ok()
}

fn common_name(certificate: &X509Certificate<'_>) -> Option<String> {
    certificate.subject().iter_common_name().next().and_then(|name| name.as_str().ok()).map(str::to_owned)
}

/// A digest algorithm of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    fn from_oid(oid: &[u8]) -> Option<Digest> {
        use otaship_ipa::der::oid;
        match oid {
            oid::SHA1 => Some(Digest::Sha1),
            oid::SHA256 => Some(Digest::Sha256),
            oid::SHA384 => Some(Digest::Sha384),
            oid::SHA512 => Some(Digest::Sha512),
            _ => None,
        }
    }

    /// The digest of a combined signature algorithm (`sha256WithRSAEncryption`,
    /// `ecdsa-with-SHA256`, ...).
    fn of_signature_oid(oid: &[u8]) -> Option<Digest> {
        const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
        const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
        const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
        if oid == ECDSA_SHA1 {
            return Some(Digest::Sha1);
        }
        let (prefix, last) = oid.split_at(oid.len().checked_sub(1)?);
        match (prefix, last) {
            (PKCS1, [5]) => Some(Digest::Sha1),
            (PKCS1, [11]) | (ECDSA_SHA2, [2]) => Some(Digest::Sha256),
            (PKCS1, [12]) | (ECDSA_SHA2, [3]) => Some(Digest::Sha384),
            (PKCS1, [13]) | (ECDSA_SHA2, [4]) => Some(Digest::Sha512),
            _ => None,
        }
    }
}

enum Failure {
    Unsupported,
    Invalid,
}

/// rsaEncryption 1.2.840.113549.1.1.1
const RSA_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey 1.2.840.10045.2.1
const EC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 1.2.840.10045.3.1.7
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 1.3.132.0.34
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

fn verify(key: &SubjectPublicKeyInfo<'_>, digest: Digest, message: &[u8], signature: &[u8]) -> Result<(), Failure> {
    let key_type = key.algorithm.algorithm.as_bytes();
    let algorithm: &'static dyn VerificationAlgorithm = if key_type == RSA_KEY {
        match digest {
            Digest::Sha1 => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Digest::Sha256 => &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            Digest::Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Digest::Sha512 => &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        }
    } else if key_type == EC_KEY {
        let curve = key.algorithm.parameters.as_ref().and_then(|parameters| parameters.as_oid().ok());
        match (curve.as_ref().map(|oid| oid.as_bytes()), digest) {
            (Some(P256), Digest::Sha1) => &signature::ECDSA_P256_SHA1_ASN1,
            (Some(P256), Digest::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
            (Some(P256), Digest::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
            (Some(P256), Digest::Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
            (Some(P384), Digest::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
            (Some(P384), Digest::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
            (Some(P384), Digest::Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
            _ => return Err(Failure::Unsupported),
        }
    } else {
        return Err(Failure::Unsupported);
    };
    UnparsedPublicKey::new(algorithm, &key.subject_public_key.data)
        .verify(message, signature)
        .map_err(|_| Failure::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apples_roots_are_embedded() {
        let trust = DeviceTrust::apple();
        assert_eq!(trust.roots.len(), 1);
        assert_eq!(trust.intermediates.len(), 2);
        // Both intermediates are Apple Root CA's: their signatures verify with the root's key.
        let roots = parse_all(&trust.roots);
        for intermediate in parse_all(&trust.intermediates) {
            assert!(issued_by(&intermediate, &roots[0]), "{}", intermediate.subject());
        }
    }

    #[test]
    fn combined_signature_algorithms_name_their_digest() {
        assert_eq!(
            Digest::of_signature_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]),
            Some(Digest::Sha256)
        );
        assert_eq!(
            Digest::of_signature_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]),
            Some(Digest::Sha1)
        );
        assert_eq!(Digest::of_signature_oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]), Some(Digest::Sha256));
        assert_eq!(Digest::of_signature_oid(RSA_KEY), None);
        assert_eq!(Digest::of_signature_oid(&[]), None);
    }
}
