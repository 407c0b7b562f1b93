//! Devices: enrolling iPhones and iPads through Apple's Profile Service, remembering which
//! device a browser belongs to, and judging whether a device can install a build.
//!
//! It owns the enrollment profile (a plist, signed with the server's identity: `cms_sign`), the
//! check of a device's signed reply (`verify`), the names people know devices by (`models`),
//! and the signed cookie with which a browser that enrolled names its device on install pages.
//! The installer never needs that cookie: it only changes what the install page says.

pub mod cms_sign;
pub mod models;
pub mod verify;

use std::sync::Arc;

use anyhow::{Context, Result};
use aws_lc_rs::hmac;
use otaship_ipa::device::{BundleProfile, Device, Eligibility, eligibility};
use otaship_ipa::profile::Profile;
use plist::{Dictionary, Value};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

use crate::db::{BuildRow, Db, DeviceRow};
use crate::tokens;

/// The cookie that names the browser's device.
pub const DEVICE_COOKIE: &str = "otaship_device";
/// How long a browser remembers its device (the most browsers keep a cookie).
pub const DEVICE_COOKIE_LIFETIME: time::Duration = time::Duration::days(400);
/// How long an enrollment profile's challenge is accepted. iOS discards a downloaded profile
/// that is not installed within about 8 minutes; an hour leaves room for a slow first time.
pub const CHALLENGE_LIFETIME: time::Duration = time::Duration::HOUR;

const COOKIE_KEY_SECRET: &str = "device-cookie-key";
const SIGNING_SECRET: &str = "profile-signing";

/// What the device routes share: the cookie key, the device CAs trusted as "verified", and the
/// identity that signs profiles when the server holds no TLS key of its own.
pub struct Devices {
    cookie_key: hmac::Key,
    /// Whose device certificates count as verified.
    pub trust: verify::DeviceTrust,
    fallback_identity: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Devices").finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, Deserialize)]
struct IdentitySecret {
    certificate: String,
    key: String,
}

impl Devices {
    /// Loads (or, on first start, creates and shares through the database) the cookie key and
    /// the fallback signing identity; `device_ca_pem` adds CAs trusted to issue device
    /// certificates.
    pub async fn open(db: &Db, device_ca_pem: Option<&[u8]>) -> Result<Devices> {
        let cookie_key = db.secret_or_insert(COOKIE_KEY_SECRET, &tokens::random_hex(32)).await?;
        let stored = match db.secret(SIGNING_SECRET).await? {
            Some(stored) => stored,
            None => {
                let (certificate, key) = new_signing_identity()?;
                db.secret_or_insert(SIGNING_SECRET, &serde_json::to_string(&IdentitySecret { certificate, key })?)
                    .await?
            }
        };
        let identity: IdentitySecret =
            serde_json::from_str(&stored).context("the profile-signing identity stored in the database is damaged")?;
        let fallback_identity =
            crate::tls::certified_key_from_pem(identity.certificate.as_bytes(), identity.key.as_bytes())
                .context("the profile-signing identity stored in the database cannot be used")?;
        let mut trust = verify::DeviceTrust::apple();
        if let Some(pem) = device_ca_pem {
            trust = trust.with_device_cas(pem).context("--device-ca-cert cannot be used")?;
        }
        Ok(Devices {
            cookie_key: hmac::Key::new(hmac::HMAC_SHA256, cookie_key.as_bytes()),
            trust,
            fallback_identity: Arc::new(fallback_identity),
        })
    }

    /// The cookie value naming `device_id`: the id and a MAC over it.
    pub fn cookie_value(&self, device_id: &str) -> String {
        let tag = hmac::sign(&self.cookie_key, cookie_message(device_id).as_bytes());
        format!("{device_id}.{}", tokens::hex(tag.as_ref()))
    }

    /// The device id a cookie value names, when its MAC is this server's.
    pub fn device_id_from_cookie<'a>(&self, value: &'a str) -> Option<&'a str> {
        let (device_id, tag) = value.split_once('.')?;
        let tag = from_hex(tag)?;
        hmac::verify(&self.cookie_key, cookie_message(device_id).as_bytes(), &tag).ok()?;
        Some(device_id)
    }

    /// The identity that signs enrollment profiles: the server's TLS certificate and key when
    /// it holds them (a device that trusts the server then shows the profile as verified), else
    /// otaship's own self-signed one (the profile installs, marked "Not Verified").
    pub fn signing_identity(&self, tls: Option<&crate::tls::Tls>) -> Arc<CertifiedKey> {
        tls.and_then(crate::tls::Tls::identity).unwrap_or_else(|| Arc::clone(&self.fallback_identity))
    }
}

fn cookie_message(device_id: &str) -> String {
    format!("otaship device cookie v1:{device_id}")
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok()).collect()
}

/// A self-signed ECDSA identity for signing profiles, as PEM (certificate, key).
fn new_signing_identity() -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "otaship profile signing");
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::DAY;
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let certificate = params.self_signed(&key)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

/// The Profile Service profile that asks a device for its attributes: the device POSTs them,
/// signed, to `callback_url`, echoing `challenge`.
pub fn enrollment_profile(callback_url: &str, challenge: &str, host: &str) -> Result<Vec<u8>, plist::Error> {
    let mut content = Dictionary::new();
    content.insert("URL".into(), callback_url.into());
    content.insert(
        "DeviceAttributes".into(),
        Value::Array(["UDID", "PRODUCT", "VERSION", "SERIAL", "DEVICE_NAME"].into_iter().map(Value::from).collect()),
    );
    content.insert("Challenge".into(), challenge.into());
    let mut profile = Dictionary::new();
    profile.insert("PayloadContent".into(), Value::Dictionary(content));
    profile.insert("PayloadDisplayName".into(), format!("Register this device with {host}").into());
    profile.insert(
        "PayloadDescription".into(),
        format!(
            "Sends this device's UDID, model, iOS version, serial number and name to {host}, so that its install \
             pages can tell whether a build will install. Nothing is installed and nothing stays on the device."
        )
        .into(),
    );
    profile.insert("PayloadOrganization".into(), host.into());
    profile.insert("PayloadIdentifier".into(), format!("otaship.device-enrollment.{}", reverse_dns(host)).into());
    profile.insert("PayloadType".into(), "Profile Service".into());
    profile.insert("PayloadUUID".into(), random_uuid().into());
    profile.insert("PayloadVersion".into(), Value::Integer(1.into()));
    let mut out = Vec::new();
    Value::Dictionary(profile).to_writer_xml(&mut out)?;
    Ok(out)
}

/// `ota.example.com` -> `com.example.ota`; an address or odd name keeps only safe characters.
fn reverse_dns(host: &str) -> String {
    let safe: String =
        host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect();
    safe.split('.').filter(|part| !part.is_empty()).rev().collect::<Vec<_>>().join(".")
}

/// A random (version 4) UUID in upper case, as profiles carry them.
fn random_uuid() -> String {
    let hex = tokens::random_hex(16).to_ascii_uppercase();
    let variant = ["8", "9", "A", "B"][usize::from(hex.as_bytes()[16] % 4)];
    format!("{}-{}-4{}-{}{}-{}", &hex[..8], &hex[8..12], &hex[13..16], variant, &hex[17..20], &hex[20..32])
}

/// The parts of a stored inspection report that decide whether a device can install.
#[derive(Debug, Deserialize)]
struct StoredReport {
    min_os: Option<String>,
    #[serde(default)]
    device_families: Vec<String>,
    profile: Option<Profile>,
    #[serde(default)]
    extensions: Vec<StoredExtension>,
}

#[derive(Debug, Deserialize)]
struct StoredExtension {
    bundle_id: String,
    profile: Option<Profile>,
}

/// Whether `device` can install `build`.
pub fn assess(build: &BuildRow, device: &DeviceRow) -> Result<Eligibility, serde_json::Error> {
    let report: StoredReport = serde_json::from_str(&build.report)?;
    let mut bundles = vec![BundleProfile { bundle: "the app", profile: report.profile.as_ref() }];
    bundles.extend(
        report
            .extensions
            .iter()
            .map(|extension| BundleProfile { bundle: &extension.bundle_id, profile: extension.profile.as_ref() }),
    );
    let (os_version, exact) = os_version(device);
    let family = device.product.as_deref().and_then(models::family).map(|family| match family {
        "iPhone" => "iphone",
        "iPad" => "ipad",
        "iPod touch" => "ipod",
        _ => "other",
    });
    Ok(eligibility(
        &bundles,
        report.min_os.as_deref(),
        &report.device_families,
        &Device { udid: &device.udid, os_version: os_version.as_deref(), os_version_exact: exact, family },
    ))
}

/// The device's iOS version and whether it is exact: what its Safari reported, else what its
/// OS build tells (the major version exactly, the minor only roughly).
pub fn os_version(device: &DeviceRow) -> (Option<String>, bool) {
    if let Some(version) = &device.os_version {
        return (Some(version.clone()), true);
    }
    match device.os_build.as_deref().and_then(models::os_version_of_build) {
        Some(estimate) => (Some(estimate.to_string()), estimate.minor_exact),
        None => (None, false),
    }
}

/// The iOS version in an iPhone or iPad Safari user agent (`iPhone OS 17_4_1 like Mac OS X`),
/// kept only when it agrees with the device's OS build: Safari on iOS 26 freezes the version it
/// reports, and a user agent is easy to change.
pub fn safari_os_version(user_agent: &str, device: &DeviceRow) -> Option<String> {
    let start = user_agent.find(" OS ")? + 4;
    let rest = user_agent.get(start..)?;
    let end = rest.find(" like Mac OS X")?;
    let version = rest.get(..end)?.replace('_', ".");
    if version.is_empty() || version.len() > 12 || !version.bytes().all(|byte| byte.is_ascii_digit() || byte == b'.') {
        return None;
    }
    let major: u32 = version.split('.').next()?.parse().ok()?;
    let build_major = device.os_build.as_deref().and_then(models::os_version_of_build)?.major;
    (major == build_major).then_some(version)
}

/// How a device is named to people: the name an uploader gave it, else the one it reported,
/// else its model.
pub fn display_name(device: &DeviceRow) -> String {
    device.name.clone().or_else(|| device.device_name.clone()).unwrap_or_else(|| model_name(device))
}

/// The device's model in words (`iPhone 15 Pro`), else its identifier, else "iPhone or iPad".
pub fn model_name(device: &DeviceRow) -> String {
    match device.product.as_deref() {
        Some(product) => models::marketing_name(product).map_or_else(|| product.to_owned(), str::to_owned),
        None => "iPhone or iPad".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_in_upper_case() {
        let uuid = random_uuid();
        let groups: Vec<&str> = uuid.split('-').collect();
        assert_eq!(groups.iter().map(|group| group.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12]);
        assert!(groups[2].starts_with('4') && "89AB".contains(&groups[3][..1]), "{uuid}");
        assert_eq!(uuid, uuid.to_ascii_uppercase());
        assert_ne!(random_uuid(), uuid);
    }

    #[test]
    fn hosts_become_reverse_dns() {
        assert_eq!(reverse_dns("ota.example.com"), "com.example.ota");
        assert_eq!(reverse_dns("192.168.1.20"), "20.1.168.192");
        assert_eq!(reverse_dns("[::1]"), "---1-");
    }
}
