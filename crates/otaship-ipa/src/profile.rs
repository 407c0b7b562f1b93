//! Provisioning profiles: `embedded.mobileprovision`, `.mobileprovision`, `.provisionprofile`.
//!
//! Reads the CMS-signed form (BER or DER) and bare XML or binary plists, classifies the profile
//! (development, ad-hoc, enterprise, app-store, developer-id) with the rules of the spec's §6.3,
//! and says whether its content still matches what was signed.

use plist::{Dictionary, Value};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::certificate::{self, CertificateSummary};
use crate::cms::{self, DigestCheck};
use crate::error::{IpaError, Result};
use crate::limits::{Budget, Limits};
use crate::plist::{Keys, parse_dictionary};

/// How a profile lets an app be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileKind {
    /// Listed devices, debugger allowed (`get-task-allow`).
    Development,
    /// Listed devices, release signing.
    AdHoc,
    /// Any device of the organisation (In-House).
    Enterprise,
    /// App Store and TestFlight only: never installable over the air.
    AppStore,
    /// macOS Developer ID: any Mac.
    DeveloperId,
}

impl ProfileKind {
    /// Whether devices must be listed in the profile.
    pub fn lists_devices(self) -> bool {
        matches!(self, ProfileKind::Development | ProfileKind::AdHoc)
    }
}

/// What is known of the profile's CMS signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureState {
    /// The signed digest matches the content.
    Valid,
    /// The content was altered after signing.
    Invalid,
    /// Signed, but without a digest this reader can compare.
    Unverified,
    /// A bare plist: not signed at all.
    None,
}

/// A provisioning profile, as `inspect` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// How it distributes.
    pub kind: ProfileKind,
    /// `Name`.
    pub name: Option<String>,
    /// `UUID`.
    pub uuid: Option<String>,
    /// `TeamName`.
    pub team_name: Option<String>,
    /// First of `TeamIdentifier`, else of `ApplicationIdentifierPrefix`.
    pub team_id: Option<String>,
    /// The `application-identifier` entitlement, e.g. `ABCDE12345.com.example.*`.
    pub app_id: Option<String>,
    /// `AppIDName`.
    pub app_id_name: Option<String>,
    /// `CreationDate`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
    /// `ExpirationDate`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Whether `expires_at` is in the past.
    pub expired: bool,
    /// `ProvisionedDevices`, as written in the profile.
    pub devices: Vec<String>,
    /// `ProvisionsAllDevices`.
    pub provisions_all_devices: bool,
    /// The `get-task-allow` entitlement (a debugger may attach: development signing).
    pub get_task_allow: bool,
    /// `Platform`, normalised: `ios`, `visionos`, `tvos`, `watchos`, `macos`.
    pub platforms: Vec<String>,
    /// The `aps-environment` entitlement, when present.
    pub aps_environment: Option<String>,
    /// Whether the content matches its signature.
    pub signature: SignatureState,
    /// The certificates allowed to sign apps with this profile.
    pub certificates: Vec<CertificateSummary>,
}

impl Profile {
    /// Whether the `application-identifier` covers `bundle_id` (exactly or by a `*` wildcard).
    /// `None` when the profile has no application identifier.
    pub fn covers_bundle_id(&self, bundle_id: &str) -> Option<bool> {
        let app_id = self.app_id.as_deref()?;
        let pattern = app_id.split_once('.').map_or(app_id, |(_, rest)| rest);
        Some(match pattern.strip_suffix('*') {
            Some(prefix) => bundle_id.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
            None => pattern.eq_ignore_ascii_case(bundle_id),
        })
    }

    /// Whether `udid` is in `ProvisionedDevices` (case-insensitive, as iOS compares).
    pub fn includes_device(&self, udid: &str) -> bool {
        let udid = udid.trim();
        self.devices.iter().any(|device| device.eq_ignore_ascii_case(udid))
    }

    /// Whether every certificate it names has expired (so no valid signature can exist).
    pub fn all_certificates_expired(&self, now: OffsetDateTime) -> bool {
        !self.certificates.is_empty() && self.certificates.iter().all(|cert| cert.expires_at <= now)
    }
}

/// Reads a profile from its bytes. `what` names it in errors.
pub fn read_profile(bytes: &[u8], limits: &Limits, now: OffsetDateTime, what: &str) -> Result<Profile> {
    read_profile_within(bytes, limits, &Budget::new(limits.max_metadata_bytes), now, what)
}

/// Reads a profile, spending from an inspection's shared budget.
pub(crate) fn read_profile_within(
    bytes: &[u8],
    limits: &Limits,
    budget: &Budget,
    now: OffsetDateTime,
    what: &str,
) -> Result<Profile> {
    let malformed = |detail: &str| IpaError::MalformedProfile { what: what.to_owned(), detail: detail.to_owned() };
    if bytes.len() as u64 > limits.max_profile_bytes {
        return Err(IpaError::EntryTooLarge {
            name: what.to_owned(),
            what: "a provisioning profile",
            limit: limits.max_profile_bytes,
        });
    }
    if bytes.iter().all(|byte| byte.is_ascii_whitespace()) {
        return Err(malformed("the file is empty"));
    }
    let (content, signature) = if cms::looks_like_cms(bytes) {
        let signed = cms::parse_signed_data(bytes)
            .map_err(|error| malformed(&format!("its CMS signature envelope is damaged: {error}")))?;
        let state = match signed.digest {
            DigestCheck::Valid => SignatureState::Valid,
            DigestCheck::Invalid => SignatureState::Invalid,
            DigestCheck::Unverified => SignatureState::Unverified,
        };
        (signed.content, state)
    } else {
        (bytes.to_vec(), SignatureState::None)
    };
    let dict = match parse_dictionary(&content, limits, budget, what) {
        Err(IpaError::MalformedPlist { .. }) if content.windows(6).any(|window| window == b"<data>") => {
            // Apple's own parser skips characters outside the base64 alphabet in <data>, so
            // profiles with damaged certificate blobs still install; read them as it does.
            parse_dictionary(&lenient_base64_data(&content), limits, budget, what)?
        }
        other => other?,
    };
    profile_from_dict(&dict, signature, now, what)
}

/// Rewrites every `<data>` element of an XML plist to plain base64: characters outside the
/// alphabet are dropped and the padding is repaired, as CoreFoundation decodes it.
fn lenient_base64_data(xml: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = find(rest, b"<data>") {
        let body_start = start + b"<data>".len();
        let Some(length) = find(&rest[body_start..], b"</data>") else {
            break;
        };
        out.extend_from_slice(&rest[..body_start]);
        let mut body: Vec<u8> = rest[body_start..body_start + length]
            .iter()
            .copied()
            .filter(|byte| byte.is_ascii_alphanumeric() || *byte == b'+' || *byte == b'/')
            .collect();
        match body.len() % 4 {
            1 => {
                body.pop();
            }
            2 => body.extend_from_slice(b"=="),
            3 => body.push(b'='),
            _ => {}
        }
        out.extend_from_slice(&body);
        rest = &rest[body_start + length..];
    }
    out.extend_from_slice(rest);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn profile_from_dict(dict: &Dictionary, signature: SignatureState, now: OffsetDateTime, what: &str) -> Result<Profile> {
    let keys = Keys { dict, what };
    let entitlements = keys.optional_dict("Entitlements")?;
    let entitlement_keys = entitlements.map(|dict| Keys { dict, what });
    let entitlement_string = |key: &'static str| -> Result<Option<String>> {
        match &entitlement_keys {
            Some(keys) => Ok(keys.optional_string(key)?.map(str::to_owned)),
            None => Ok(None),
        }
    };
    let get_task_allow = match &entitlement_keys {
        Some(keys) => {
            keys.optional_bool("get-task-allow")?.unwrap_or(false)
                || keys.optional_bool("com.apple.security.get-task-allow")?.unwrap_or(false)
        }
        None => false,
    };
    let app_id = match entitlement_string("application-identifier")? {
        Some(id) => Some(id),
        None => entitlement_string("com.apple.application-identifier")?,
    };
    if dict.get("ProvisionedDevices").is_none()
        && dict.get("ExpirationDate").is_none()
        && dict.get("UUID").is_none()
        && entitlements.is_none()
    {
        return Err(IpaError::MalformedProfile {
            what: what.to_owned(),
            detail: "it has none of the keys of a provisioning profile".to_owned(),
        });
    }
    let devices: Vec<String> = keys.string_array("ProvisionedDevices")?.into_iter().map(str::to_owned).collect();
    let has_device_list = dict.get("ProvisionedDevices").is_some();
    let provisions_all_devices = keys.optional_bool("ProvisionsAllDevices")?.unwrap_or(false);
    let platforms = normalise_platforms(&keys.string_array("Platform")?);
    let is_macos =
        platforms.iter().any(|platform| platform == "macos") && !platforms.iter().any(|platform| platform == "ios");
    let kind = if has_device_list {
        // macOS has no ad-hoc distribution: a device list there always means development.
        if get_task_allow || is_macos { ProfileKind::Development } else { ProfileKind::AdHoc }
    } else if provisions_all_devices {
        if is_macos { ProfileKind::DeveloperId } else { ProfileKind::Enterprise }
    } else {
        ProfileKind::AppStore
    };
    let date = |key: &'static str| -> Result<Option<OffsetDateTime>> {
        match dict.get(key) {
            None => Ok(None),
            Some(Value::Date(date)) => Ok(Some(OffsetDateTime::from(std::time::SystemTime::from(*date)))),
            Some(_) => Err(keys.wrong_type(key, "a date")),
        }
    };
    let expires_at = date("ExpirationDate")?;
    let team_id = keys
        .string_array("TeamIdentifier")?
        .first()
        .or(keys.string_array("ApplicationIdentifierPrefix")?.first())
        .map(|id| (*id).to_owned());
    let certificates = keys
        .optional_array("DeveloperCertificates")?
        .unwrap_or_default()
        .iter()
        .filter_map(|value| value.as_data())
        .filter_map(|der| certificate::summarize(der).ok())
        .collect();
    Ok(Profile {
        kind,
        name: keys.optional_string("Name")?.map(str::to_owned),
        uuid: keys.optional_string("UUID")?.map(str::to_owned),
        team_name: keys.optional_string("TeamName")?.map(str::to_owned),
        team_id,
        app_id,
        app_id_name: keys.optional_string("AppIDName")?.map(str::to_owned),
        created_at: date("CreationDate")?,
        expired: expires_at.is_some_and(|at| at <= now),
        expires_at,
        devices,
        provisions_all_devices,
        get_task_allow,
        platforms,
        aps_environment: match entitlement_string("aps-environment")? {
            Some(value) => Some(value),
            // macOS names the same entitlement differently.
            None => entitlement_string("com.apple.developer.aps-environment")?,
        },
        signature,
        certificates,
    })
}

fn normalise_platforms(raw: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for platform in raw {
        let name = match platform.to_ascii_lowercase().as_str() {
            "ios" => "ios".to_owned(),
            "xros" | "visionos" => "visionos".to_owned(),
            "osx" | "macos" => "macos".to_owned(),
            "tvos" => "tvos".to_owned(),
            "watchos" => "watchos".to_owned(),
            other => other.to_owned(),
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}
