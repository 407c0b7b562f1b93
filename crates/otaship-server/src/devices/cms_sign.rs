//! Signs a `.mobileconfig`: a CMS SignedData in DER with the profile attached, signed with the
//! server's identity (its TLS certificate and key) and carrying its certificate chain, which is
//! what makes iOS show the profile as verified when it trusts that chain.
//!
//! The encoding is written here (DER is a few rules) and signed through rustls's signing-key
//! interface, so that any key the server holds for TLS (local CA, operator's files, ACME) signs
//! without being exported.

use rustls::SignatureScheme;
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256, Sha384};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a profile could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The identity has no certificate, or its first one cannot be parsed.
    #[error("the signing certificate cannot be read")]
    Certificate,
    /// The key is of a kind CMS signing here does not use (Ed25519, say).
    #[error("the signing key's type cannot sign profiles")]
    KeyType,
    /// The key refused to sign.
    #[error("signing failed: {0}")]
    Signing(rustls::Error),
}

const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const OID_CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
const OID_SIGNING_TIME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];

/// Signs `content` with `identity`, attaching it: the result is what devices receive.
pub fn sign_attached(content: &[u8], identity: &CertifiedKey, now: OffsetDateTime) -> Result<Vec<u8>, SignError> {
    let leaf = identity.cert.first().ok_or(SignError::Certificate)?;
    let (_, parsed) = X509Certificate::from_der(leaf).map_err(|_| SignError::Certificate)?;
    let signer = identity
        .key
        .choose_scheme(&[
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::RSA_PKCS1_SHA256,
        ])
        .ok_or(SignError::KeyType)?;
    let (digest_oid, digest, signature_algorithm) = match signer.scheme() {
        SignatureScheme::ECDSA_NISTP256_SHA256 => {
            (OID_SHA256, Sha256::digest(content).to_vec(), algorithm(OID_ECDSA_SHA256, false))
        }
        SignatureScheme::ECDSA_NISTP384_SHA384 => {
            (OID_SHA384, Sha384::digest(content).to_vec(), algorithm(OID_ECDSA_SHA384, false))
        }
        SignatureScheme::RSA_PKCS1_SHA256 => (OID_SHA256, Sha256::digest(content).to_vec(), algorithm(OID_RSA, true)),
        _ => return Err(SignError::KeyType),
    };
    let digest_algorithm = algorithm(digest_oid, true);

    let mut attributes = [
        attribute(OID_CONTENT_TYPE, &oid(OID_DATA)),
        attribute(OID_SIGNING_TIME, &utc_time(now)),
        attribute(OID_MESSAGE_DIGEST, &tlv(0x04, &digest)),
    ];
    // DER orders the members of a SET OF by their encodings.
    attributes.sort();
    let attributes = attributes.concat();
    let signature = signer.sign(&tlv(0x31, &attributes)).map_err(SignError::Signing)?;

    let signer_info = tlv(
        0x30,
        &[
            integer(&[1]),
            tlv(
                0x30,
                &[parsed.tbs_certificate.issuer.as_raw().to_vec(), integer(parsed.tbs_certificate.raw_serial())]
                    .concat(),
            ),
            digest_algorithm.clone(),
            tlv(0xa0, &attributes),
            signature_algorithm,
            tlv(0x04, &signature),
        ]
        .concat(),
    );
    let certificates: Vec<u8> = identity.cert.iter().flat_map(|certificate| certificate.as_ref().to_vec()).collect();
    let signed_data = tlv(
        0x30,
        &[
            integer(&[1]),
            tlv(0x31, &digest_algorithm),
            tlv(0x30, &[oid(OID_DATA), tlv(0xa0, &tlv(0x04, content))].concat()),
            tlv(0xa0, &certificates),
            tlv(0x31, &signer_info),
        ]
        .concat(),
    );
    Ok(tlv(0x30, &[oid(OID_SIGNED_DATA), tlv(0xa0, &signed_data)].concat()))
}

/// One DER element: tag, definite length, content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|&&byte| byte == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn oid(content: &[u8]) -> Vec<u8> {
    tlv(0x06, content)
}

/// An INTEGER from big-endian magnitude octets, with the sign octet DER needs.
fn integer(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude.iter().position(|&byte| byte != 0).unwrap_or(magnitude.len().saturating_sub(1));
    let trimmed = magnitude.get(start..).unwrap_or(&[]);
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|&byte| byte & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

/// An AlgorithmIdentifier, with NULL parameters where the algorithm's definition asks for them
/// (RSA and the SHA-2 digests) and none where it forbids them (ECDSA).
fn algorithm(identifier: &[u8], null_parameters: bool) -> Vec<u8> {
    let mut content = oid(identifier);
    if null_parameters {
        content.extend_from_slice(&[0x05, 0x00]);
    }
    tlv(0x30, &content)
}

fn attribute(kind: &[u8], value: &[u8]) -> Vec<u8> {
    tlv(0x30, &[oid(kind), tlv(0x31, value)].concat())
}

/// UTCTime, as CMS requires for dates from 1950 to 2049.
fn utc_time(at: OffsetDateTime) -> Vec<u8> {
    let at = at.to_offset(time::UtcOffset::UTC);
    let text = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        at.year().rem_euclid(100),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    tlv(0x17, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers_follow_der() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 0x02, 1, 2]);
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(tlv(0x04, &[0u8; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(integer(&[1]), vec![0x02, 0x01, 0x01]);
        assert_eq!(integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[0, 0, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(integer(&[0]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn a_signed_profile_reads_back_with_a_matching_digest_and_signer() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let certificate = rcgen::CertificateParams::new(vec!["ota.test".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let identity = crate::tls::certified_key_from_pem(certificate.pem().as_bytes(), key.serialize_pem().as_bytes())
            .expect("identity");
        let content = b"<plist>profile</plist>".repeat(20);
        let signed = sign_attached(&content, &identity, OffsetDateTime::now_utc()).expect("signed");
        let parsed = otaship_ipa::cms::parse_signed_data(&signed).expect("parses");
        assert_eq!(parsed.content, content);
        assert_eq!(parsed.digest, otaship_ipa::cms::DigestCheck::Valid);
        assert_eq!(parsed.certificates.len(), 1);
        // The signature verifies with the certificate, through the same code that checks devices.
        let trust = super::super::verify::DeviceTrust::apple();
        assert_eq!(super::super::verify::verify_reply(&parsed, &trust), Ok(false));
    }
}
