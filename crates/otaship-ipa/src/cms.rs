//! CMS (PKCS #7) SignedData, as Apple wraps provisioning profiles and device replies.
//!
//! This module extracts the signed content and checks each signer's `messageDigest` attribute
//! against it, which tells an intact profile from an altered one. It hands out what a caller
//! needs to verify each signature value and certificate chain ([`Signer`]), but does no public-key
//! cryptography itself: the crate stays free of it (the server does that part).

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::der::{self, DerError, Element, oid};

/// What the digest check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestCheck {
    /// Every signer's message digest matches the content.
    Valid,
    /// At least one signer's digest does not match: the content was altered after signing.
    Invalid,
    /// No signer carries a message digest to compare, or it uses an unknown digest algorithm.
    Unverified,
}

/// The parts of a SignedData this crate uses.
#[derive(Debug)]
pub struct SignedData {
    /// The encapsulated content (the plist), joined from its segments.
    pub content: Vec<u8>,
    /// The result of comparing each signer's message digest with the content.
    pub digest: DigestCheck,
    /// The DER certificates carried in the `certificates` field.
    pub certificates: Vec<Vec<u8>>,
    /// Each signer, with what a caller needs to check its signature value.
    pub signers: Vec<Signer>,
}

/// How a signer names its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerId {
    /// The certificate's issuer (the encoded Name, header included) and serial number (the
    /// INTEGER's content octets).
    IssuerAndSerial {
        /// DER of the issuer Name.
        issuer: Vec<u8>,
        /// Content octets of the serial number.
        serial: Vec<u8>,
    },
    /// The certificate's subject key identifier.
    KeyId(Vec<u8>),
}

/// One SignerInfo: whose signature it is, over what, by which algorithms.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Which certificate signed.
    pub id: SignerId,
    /// The digest algorithm's OID (content octets).
    pub digest_algorithm: Vec<u8>,
    /// The signed attributes as the signature covers them (DER, tagged as a SET), or `None`
    /// when the signature covers the content itself.
    pub signed_attributes: Option<Vec<u8>>,
    /// The signature algorithm's OID (content octets).
    pub signature_algorithm: Vec<u8>,
    /// The signature value.
    pub signature: Vec<u8>,
}

/// Whether `bytes` start like a DER/BER SEQUENCE (the first byte of every CMS message).
pub fn looks_like_cms(bytes: &[u8]) -> bool {
    bytes.first() == Some(&der::TAG_SEQUENCE)
}

/// Parses a ContentInfo holding SignedData with attached content.
pub fn parse_signed_data(bytes: &[u8]) -> Result<SignedData, DerError> {
    let (content_info, _) = der::parse(bytes)?;
    expect_tag(&content_info, der::TAG_SEQUENCE)?;
    let mut parts = content_info.children();
    let content_type = next(&mut parts)?;
    expect_tag(&content_type, der::TAG_OID)?;
    if content_type.content != oid::SIGNED_DATA {
        return Err(DerError("the CMS message is not SignedData"));
    }
    let explicit = next(&mut parts)?;
    expect_tag(&explicit, der::TAG_CONTEXT_0)?;
    let signed_data = next(&mut explicit.children())?;
    expect_tag(&signed_data, der::TAG_SEQUENCE)?;

    let mut fields = signed_data.children();
    let version = next(&mut fields)?;
    expect_tag(&version, der::TAG_INTEGER)?;
    let digest_algorithms = next(&mut fields)?;
    expect_tag(&digest_algorithms, der::TAG_SET)?;
    let encapsulated = next(&mut fields)?;
    expect_tag(&encapsulated, der::TAG_SEQUENCE)?;
    let mut encapsulated_parts = encapsulated.children();
    let _content_type = next(&mut encapsulated_parts)?;
    let content = match encapsulated_parts.next() {
        Some(wrapper) => {
            let wrapper = wrapper?;
            expect_tag(&wrapper, der::TAG_CONTEXT_0)?;
            next(&mut wrapper.children())?.octets()?
        }
        None => return Err(DerError("the CMS message has no attached content")),
    };

    let mut certificates = Vec::new();
    let mut signer_infos = None;
    for field in fields {
        let field = field?;
        match field.tag {
            der::TAG_CONTEXT_0 => {
                for certificate in field.children() {
                    let certificate = certificate?;
                    if certificate.tag == der::TAG_SEQUENCE {
                        certificates.push(certificate.raw.to_vec());
                    }
                }
            }
            der::TAG_CONTEXT_1 => {}
            der::TAG_SET => signer_infos = Some(field),
            _ => return Err(DerError("unexpected field in SignedData")),
        }
    }
    let signer_infos = signer_infos.ok_or(DerError("the CMS message has no signerInfos"))?;
    let digest = check_signers(&signer_infos, &content)?;
    let signers = signer_infos.children().map(|signer| read_signer(&signer?)).collect::<Result<Vec<_>, _>>()?;
    Ok(SignedData { content, digest, certificates, signers })
}

fn read_signer(signer: &Element<'_>) -> Result<Signer, DerError> {
    let mut parts = signer.children();
    let _version = next(&mut parts)?;
    let id_element = next(&mut parts)?;
    let id = match id_element.tag {
        der::TAG_SEQUENCE => {
            let mut fields = id_element.children();
            let issuer = next(&mut fields)?;
            expect_tag(&issuer, der::TAG_SEQUENCE)?;
            let serial = next(&mut fields)?;
            expect_tag(&serial, der::TAG_INTEGER)?;
            SignerId::IssuerAndSerial { issuer: issuer.raw.to_vec(), serial: serial.content.to_vec() }
        }
        // [0] IMPLICIT SubjectKeyIdentifier (an OCTET STRING), primitive.
        0x80 => SignerId::KeyId(id_element.content.to_vec()),
        _ => return Err(DerError("unexpected signer identifier")),
    };
    let digest_algorithm = algorithm_oid(&next(&mut parts)?)?;
    let mut element = next(&mut parts)?;
    let signed_attributes = if element.tag == der::TAG_CONTEXT_0 {
        // The signature covers the DER encoding of the attributes with the SET tag. A BER
        // (indefinite-length) encoding cannot be what was signed, so it is not passed on.
        let raw = element.raw;
        if raw.get(1) == Some(&0x80) {
            return Err(DerError("the signed attributes are not DER-encoded"));
        }
        let mut covered = raw.to_vec();
        if let Some(tag) = covered.first_mut() {
            *tag = der::TAG_SET;
        }
        element = next(&mut parts)?;
        Some(covered)
    } else {
        None
    };
    let signature_algorithm = algorithm_oid(&element)?;
    let signature = next(&mut parts)?.octets()?;
    Ok(Signer { id, digest_algorithm, signed_attributes, signature_algorithm, signature })
}

fn algorithm_oid(element: &Element<'_>) -> Result<Vec<u8>, DerError> {
    expect_tag(element, der::TAG_SEQUENCE)?;
    let oid = next(&mut element.children())?;
    expect_tag(&oid, der::TAG_OID)?;
    Ok(oid.content.to_vec())
}

/// Real messages have one signer; more than a few is hostile (each costs a hash).
const MAX_SIGNERS: usize = 8;

fn check_signers(signer_infos: &Element<'_>, content: &[u8]) -> Result<DigestCheck, DerError> {
    let mut result = None;
    let mut computed: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for (count, signer) in signer_infos.children().enumerate() {
        if count >= MAX_SIGNERS {
            return Err(DerError("too many signers"));
        }
        let signer = signer?;
        expect_tag(&signer, der::TAG_SEQUENCE)?;
        let mut parts = signer.children();
        let _version = next(&mut parts)?;
        let _signer_id = next(&mut parts)?;
        let algorithm = next(&mut parts)?;
        expect_tag(&algorithm, der::TAG_SEQUENCE)?;
        let algorithm_oid = next(&mut algorithm.children())?;
        expect_tag(&algorithm_oid, der::TAG_OID)?;
        let signed_attributes = match parts.next() {
            Some(element) => {
                let element = element?;
                (element.tag == der::TAG_CONTEXT_0).then_some(element)
            }
            None => None,
        };
        let expected = match signed_attributes {
            Some(attributes) => message_digest(&attributes)?,
            None => None,
        };
        let actual = match expected {
            None => None,
            Some(_) => match computed.iter().find(|(oid, _)| *oid == algorithm_oid.content) {
                Some((_, value)) => Some(value.clone()),
                None => {
                    let value = digest(algorithm_oid.content, content);
                    if let Some(value) = &value {
                        computed.push((algorithm_oid.content, value.clone()));
                    }
                    value
                }
            },
        };
        let check = match (expected, actual) {
            (Some(expected), Some(actual)) if expected == actual => DigestCheck::Valid,
            (Some(_), Some(_)) => DigestCheck::Invalid,
            _ => DigestCheck::Unverified,
        };
        result = Some(match (result, check) {
            (_, DigestCheck::Invalid) | (Some(DigestCheck::Invalid), _) => DigestCheck::Invalid,
            (_, DigestCheck::Unverified) | (Some(DigestCheck::Unverified), _) => DigestCheck::Unverified,
            _ => DigestCheck::Valid,
        });
    }
    Ok(result.unwrap_or(DigestCheck::Unverified))
}

fn message_digest(attributes: &Element<'_>) -> Result<Option<Vec<u8>>, DerError> {
    for attribute in attributes.children() {
        let attribute = attribute?;
        let mut parts = attribute.children();
        let kind = next(&mut parts)?;
        if kind.tag == der::TAG_OID && kind.content == oid::MESSAGE_DIGEST {
            let values = next(&mut parts)?;
            let value = next(&mut values.children())?;
            return Ok(Some(value.octets()?));
        }
    }
    Ok(None)
}

fn digest(algorithm: &[u8], content: &[u8]) -> Option<Vec<u8>> {
    match algorithm {
        oid::SHA1 => Some(Sha1::digest(content).to_vec()),
        oid::SHA256 => Some(Sha256::digest(content).to_vec()),
        oid::SHA384 => Some(Sha384::digest(content).to_vec()),
        oid::SHA512 => Some(Sha512::digest(content).to_vec()),
        _ => None,
    }
}

fn next<'a>(children: &mut der::Children<'a>) -> Result<Element<'a>, DerError> {
    children.next().unwrap_or(Err(DerError("a required field is missing")))
}

fn expect_tag(element: &Element<'_>, tag: u8) -> Result<(), DerError> {
    if element.tag == tag { Ok(()) } else { Err(DerError("unexpected ASN.1 structure")) }
}
