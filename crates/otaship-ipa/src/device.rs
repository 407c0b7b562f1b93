//! Devices: the reply an iPhone sends to a Profile Service (its UDID and a few attributes, in a
//! CMS SignedData around a plist), the two forms of UDID, and whether a given device can install
//! a given build (its profiles, its `MinimumOSVersion`, its device families).
//!
//! Like the rest of the crate this is pure and bounded. Reading a reply checks its structure and
//! that the signed digest matches the plist (an altered reply is refused); the signature value
//! and the signer's certificate chain are public-key cryptography, which the caller verifies
//! with the [`cms::Signer`]s handed back.

use plist::Dictionary;
use serde::Serialize;

use crate::cms::{self, DigestCheck, SignedData};
use crate::error::{IpaError, Result};
use crate::limits::{Budget, Limits};
use crate::plist::parse_dictionary;
use crate::profile::{Profile, ProfileKind};

/// Largest reply read: real ones are 3-5 KB (a plist of a few strings and one or two
/// certificates).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A UDID in its canonical spelling, or `None` when `text` is not one.
///
/// Devices up to the A11 have 40 hexadecimal digits (written in lower case); later ones
/// `XXXXXXXX-XXXXXXXXXXXXXXXX` (8 and 16 digits, written in upper case). Apple compares them
/// without regard to case; canonical spellings make equal UDIDs equal strings.
pub fn normalize_udid(text: &str) -> Option<String> {
    let text = text.trim();
    let hex = |part: &str| part.bytes().all(|byte| byte.is_ascii_hexdigit());
    match text.split_once('-') {
        None if text.len() == 40 && hex(text) => Some(text.to_ascii_lowercase()),
        Some((head, tail)) if head.len() == 8 && tail.len() == 16 && hex(head) && hex(tail) => {
            Some(text.to_ascii_uppercase())
        }
        _ => None,
    }
}

/// What a device says about itself in a Profile Service reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceAttributes {
    /// `UDID`, canonical (see [`normalize_udid`]).
    pub udid: String,
    /// `PRODUCT`, the model identifier, e.g. `iPhone15,2`.
    pub product: Option<String>,
    /// `VERSION`: the OS *build*, e.g. `22A3354` (not `18.0`).
    pub os_build: Option<String>,
    /// `SERIAL`.
    pub serial: Option<String>,
    /// `DEVICE_NAME`, the name its owner gave it.
    pub device_name: Option<String>,
    /// `CHALLENGE`: what the profile asked it to echo.
    pub challenge: Option<String>,
}

/// A reply whose structure and digest are sound.
#[derive(Debug)]
pub struct DeviceReply {
    /// What the device sent.
    pub attributes: DeviceAttributes,
    /// The CMS it came in: the caller verifies signatures and the chain.
    pub signed: SignedData,
}

/// Longest attribute value kept: names and identifiers are short; a hostile reply is not
/// stored whole.
const MAX_ATTRIBUTE_CHARS: usize = 256;

/// Reads the body a device POSTs to a Profile Service URL.
///
/// Refused: anything that is not CMS SignedData (a bare plist is an unsigned reply), a digest
/// that does not match the plist (altered after signing), a signer without a digest to compare,
/// and a plist without a valid `UDID`.
pub fn read_device_reply(bytes: &[u8], limits: &Limits) -> Result<DeviceReply> {
    if bytes.len() > MAX_REPLY_BYTES {
        return Err(IpaError::DeviceReplyMalformed {
            detail: format!("it is {} bytes, more than the {MAX_REPLY_BYTES} a device sends", bytes.len()),
        });
    }
    if !cms::looks_like_cms(bytes) {
        return Err(IpaError::DeviceReplyUnsigned);
    }
    let signed = cms::parse_signed_data(bytes)
        .map_err(|error| IpaError::DeviceReplyMalformed { detail: format!("its CMS structure is invalid: {error}") })?;
    match signed.digest {
        DigestCheck::Valid => {}
        DigestCheck::Invalid => return Err(IpaError::DeviceReplyAltered),
        DigestCheck::Unverified if signed.signers.is_empty() => return Err(IpaError::DeviceReplyUnsigned),
        DigestCheck::Unverified => {
            // A signature straight over the content (no signed attributes) is still checkable;
            // an attribute set without a known digest is not.
            if signed.signers.iter().any(|signer| signer.signed_attributes.is_some()) {
                return Err(IpaError::DeviceReplyMalformed {
                    detail: "its signer uses a digest algorithm otaship does not know".to_owned(),
                });
            }
        }
    }
    let budget = Budget::new(limits.max_metadata_bytes);
    let dict = parse_dictionary(&signed.content, limits, &budget, "the device's reply")
        .map_err(|error| IpaError::DeviceReplyMalformed { detail: error.to_string() })?;
    let attributes = attributes_from(&dict)?;
    Ok(DeviceReply { attributes, signed })
}

fn attributes_from(dict: &Dictionary) -> Result<DeviceAttributes> {
    let text = |key: &str| {
        dict.get(key)
            .and_then(plist::Value::as_string)
            .map(|value| value.trim().chars().filter(|c| !c.is_control()).take(MAX_ATTRIBUTE_CHARS).collect::<String>())
            .filter(|value| !value.is_empty())
    };
    let raw_udid =
        text("UDID").ok_or_else(|| IpaError::DeviceReplyIncomplete { detail: "it has no UDID".to_owned() })?;
    let udid = normalize_udid(&raw_udid).ok_or_else(|| IpaError::DeviceReplyIncomplete {
        detail: format!("its UDID {raw_udid:?} is neither 40 hexadecimal digits nor the 8-16 form"),
    })?;
    Ok(DeviceAttributes {
        udid,
        product: text("PRODUCT"),
        os_build: text("VERSION"),
        serial: text("SERIAL"),
        device_name: text("DEVICE_NAME"),
        challenge: text("CHALLENGE"),
    })
}

/// What is known of the device asking.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    /// Its UDID (any spelling).
    pub udid: &'a str,
    /// Its iOS version (`17.4`), when known.
    pub os_version: Option<&'a str>,
    /// Whether `os_version`'s minor part is exact; when it is an estimate (from a build
    /// number), only the major version is held against `MinimumOSVersion`.
    pub os_version_exact: bool,
    /// `iphone`, `ipad` or `ipod`, when known (from its model identifier).
    pub family: Option<&'a str>,
}

/// One bundle of a build (the app, or an extension) with its embedded profile.
#[derive(Debug, Clone, Copy)]
pub struct BundleProfile<'a> {
    /// How to name it to people: "the app", or the extension's bundle id.
    pub bundle: &'a str,
    /// Its embedded profile.
    pub profile: Option<&'a Profile>,
}

/// Whether the profiles let the device install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Listing {
    /// Every profile that lists devices lists this one.
    Listed,
    /// Some profile that lists devices does not list this one.
    NotListed {
        /// The bundles whose profile lacks it.
        missing_from: Vec<String>,
    },
    /// The build installs on any device (enterprise, or a profile for all devices).
    AnyDevice,
    /// The build does not install over the air at all (App Store, Developer ID, no profile);
    /// the install page already says why.
    NotDistributable,
}

/// Whether the device's iOS is recent enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum OsCheck {
    /// Recent enough (or the build names no minimum).
    Supported,
    /// Older than `MinimumOSVersion`.
    TooOld {
        /// `MinimumOSVersion`.
        required: String,
        /// What the device runs.
        running: String,
    },
    /// The device's version is not known.
    Unknown,
}

/// Whether and why a device can install a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Eligibility {
    /// What the profiles say.
    pub listing: Listing,
    /// What `MinimumOSVersion` says.
    pub os: OsCheck,
    /// The build runs only on iPad and the device is an iPhone or iPod.
    pub ipad_only_on_phone: bool,
    /// iOS 16 and later run development and ad-hoc builds only with Developer Mode on.
    pub needs_developer_mode: bool,
}

impl Eligibility {
    /// Whether nothing known stops the install.
    pub fn can_install(&self) -> bool {
        matches!(self.listing, Listing::Listed | Listing::AnyDevice)
            && !matches!(self.os, OsCheck::TooOld { .. })
            && !self.ipad_only_on_phone
    }
}

/// Judges whether `device` can install a build made of `bundles` (the app first, then its
/// extensions) that needs `min_os` and runs on `device_families` (`iphone`, `ipad`, ...).
pub fn eligibility(
    bundles: &[BundleProfile<'_>],
    min_os: Option<&str>,
    device_families: &[String],
    device: &Device<'_>,
) -> Eligibility {
    let listing = listing(bundles, device.udid);
    let os = match (min_os, device.os_version) {
        (None, _) => OsCheck::Supported,
        (Some(_), None) => OsCheck::Unknown,
        (Some(required), Some(running)) => {
            let too_old = if device.os_version_exact {
                version_less(running, required)
            } else {
                major(running) < major(required)
            };
            if too_old {
                OsCheck::TooOld { required: required.to_owned(), running: running.to_owned() }
            } else {
                OsCheck::Supported
            }
        }
    };
    let ipad_only = !device_families.is_empty()
        && device_families.iter().any(|family| family == "ipad")
        && !device_families.iter().any(|family| family == "iphone");
    let on_phone = matches!(device.family, Some("iphone" | "ipod"));
    let lists_devices =
        bundles.first().and_then(|bundle| bundle.profile).is_some_and(|profile| profile.kind.lists_devices());
    let runs_16 = device.os_version.is_none_or(|version| major(version) >= 16);
    Eligibility {
        listing,
        os,
        ipad_only_on_phone: ipad_only && on_phone,
        needs_developer_mode: lists_devices && runs_16,
    }
}

fn listing(bundles: &[BundleProfile<'_>], udid: &str) -> Listing {
    let Some(main) = bundles.first().and_then(|bundle| bundle.profile) else {
        return Listing::NotDistributable;
    };
    match main.kind {
        ProfileKind::AppStore | ProfileKind::DeveloperId => return Listing::NotDistributable,
        ProfileKind::Enterprise | ProfileKind::Development | ProfileKind::AdHoc => {}
    }
    let udid = normalize_udid(udid).unwrap_or_else(|| udid.trim().to_owned());
    let missing_from: Vec<String> = bundles
        .iter()
        .filter_map(|bundle| {
            let profile = bundle.profile?;
            let restricted = profile.kind.lists_devices() && !profile.provisions_all_devices;
            (restricted && !profile.includes_device(&udid)).then(|| bundle.bundle.to_owned())
        })
        .collect();
    if !missing_from.is_empty() {
        Listing::NotListed { missing_from }
    } else if bundles
        .iter()
        .filter_map(|bundle| bundle.profile)
        .any(|profile| profile.kind.lists_devices() && !profile.provisions_all_devices)
    {
        Listing::Listed
    } else {
        Listing::AnyDevice
    }
}

fn major(version: &str) -> u64 {
    version.split('.').next().and_then(|part| part.trim().parse().ok()).unwrap_or(0)
}

/// Whether dotted version `left` is lower than `right` (`9.3` < `10.0`; missing parts are 0).
pub fn version_less(left: &str, right: &str) -> bool {
    let parts = |text: &str| -> Vec<u64> { text.split('.').map(|part| part.trim().parse().unwrap_or(0)).collect() };
    let (left, right) = (parts(left), parts(right));
    for index in 0..left.len().max(right.len()) {
        let (a, b) = (left.get(index).copied().unwrap_or(0), right.get(index).copied().unwrap_or(0));
        if a != b {
            return a < b;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_udid_forms_are_accepted_in_any_case() {
        let old = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678";
        assert_eq!(normalize_udid(old).as_deref(), Some("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"));
        assert_eq!(normalize_udid(" 00008030-001544522e60802e\n").as_deref(), Some("00008030-001544522E60802E"));
        for bad in [
            "",
            "00008030001544522E60802E",
            "00008030-001544522E60802",
            "g1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
            "0000803-0001544522E60802E",
            "00008030-00154452-2E60802E",
        ] {
            assert_eq!(normalize_udid(bad), None, "{bad}");
        }
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_less("9.3", "10.0"));
        assert!(version_less("17.4", "17.4.1"));
        assert!(!version_less("17.4.0", "17.4"));
        assert!(!version_less("18", "17.9"));
    }
}
