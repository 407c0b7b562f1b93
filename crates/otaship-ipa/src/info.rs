//! The app's `Info.plist`: identity, versions, platform, device families and icon names.

use plist::{Dictionary, Value};
use serde::Serialize;

use crate::error::Result;
use crate::plist::Keys;

/// The platform an app was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// iPhone and iPad devices.
    Ios,
    /// The iOS Simulator: never installable on a device.
    IosSimulator,
    /// Apple TV.
    Tvos,
    /// Apple Watch.
    Watchos,
    /// Apple Vision Pro.
    Visionos,
    /// Mac.
    Macos,
}

impl Platform {
    /// Whether Safari on this platform can install an app from an `itms-services` link.
    pub fn installs_over_the_air(self) -> bool {
        matches!(self, Platform::Ios | Platform::Visionos)
    }
}

/// What `Info.plist` says of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleInfo {
    /// `CFBundleIdentifier`.
    pub bundle_id: String,
    /// `CFBundleDisplayName`, else `CFBundleName`, else `CFBundleExecutable`.
    pub name: Option<String>,
    /// `CFBundleShortVersionString`.
    pub version: Option<String>,
    /// `CFBundleVersion`.
    pub build: Option<String>,
    /// `MinimumOSVersion`.
    pub min_os: Option<String>,
    /// `CFBundleExecutable`.
    pub executable: Option<String>,
    /// The platform, from `DTPlatformName` or `CFBundleSupportedPlatforms`.
    pub platform: Platform,
    /// Built for a simulator (of any platform).
    pub simulator: bool,
    /// `UIDeviceFamily`, named.
    pub device_families: Vec<String>,
    /// Icon file base names from `CFBundleIcons`, `CFBundleIcons~ipad`, `CFBundleIconFiles`
    /// and `CFBundleIconFile`, in that order, without duplicates.
    pub icon_files: Vec<String>,
}

/// Reads the keys this crate uses; `CFBundleIdentifier` is required.
pub fn bundle_info(dict: &Dictionary, what: &str) -> Result<BundleInfo> {
    let keys = Keys { dict, what };
    let bundle_id = keys.required_string("CFBundleIdentifier")?.to_owned();
    let executable = keys.optional_string("CFBundleExecutable")?.map(str::to_owned);
    let name = [keys.optional_string("CFBundleDisplayName")?, keys.optional_string("CFBundleName")?]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|name| !name.is_empty())
        .map(str::to_owned)
        .or_else(|| executable.clone());
    let (platform, simulator) = platform(&keys)?;
    Ok(BundleInfo {
        bundle_id,
        name,
        version: keys.optional_string("CFBundleShortVersionString")?.map(str::to_owned),
        build: keys.optional_string("CFBundleVersion")?.map(str::to_owned),
        min_os: keys.optional_string("MinimumOSVersion")?.map(str::to_owned),
        executable,
        platform,
        simulator,
        device_families: device_families(&keys)?,
        icon_files: icon_files(&keys)?,
    })
}

fn platform(keys: &Keys<'_>) -> Result<(Platform, bool)> {
    let from_name = |name: &str| -> Option<(Platform, bool)> {
        Some(match name.to_ascii_lowercase().as_str() {
            "iphoneos" => (Platform::Ios, false),
            "iphonesimulator" => (Platform::IosSimulator, true),
            "appletvos" => (Platform::Tvos, false),
            "appletvsimulator" => (Platform::Tvos, true),
            "watchos" => (Platform::Watchos, false),
            "watchsimulator" => (Platform::Watchos, true),
            "xros" => (Platform::Visionos, false),
            "xrsimulator" => (Platform::Visionos, true),
            "macosx" | "macos" => (Platform::Macos, false),
            _ => return None,
        })
    };
    if let Some(found) = keys.optional_string("DTPlatformName")?.and_then(from_name) {
        return Ok(found);
    }
    if let Some(found) = keys.string_array("CFBundleSupportedPlatforms")?.into_iter().find_map(from_name) {
        return Ok(found);
    }
    Ok((Platform::Ios, false))
}

fn device_families(keys: &Keys<'_>) -> Result<Vec<String>> {
    let values: Vec<i64> = match keys.dict.get("UIDeviceFamily") {
        None => Vec::new(),
        Some(Value::Integer(number)) => number.as_signed().into_iter().collect(),
        // Some build tools write the family numbers as strings.
        Some(Value::String(text)) => text.trim().parse().ok().into_iter().collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Integer(number) => number.as_signed(),
                Value::String(text) => text.trim().parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| keys.wrong_type("UIDeviceFamily", "an array of integers"))?,
        Some(_) => return Err(keys.wrong_type("UIDeviceFamily", "an array of integers")),
    };
    let mut names = Vec::new();
    for value in values {
        let name = match value {
            1 => "iphone",
            2 => "ipad",
            3 => "tv",
            4 => "watch",
            6 => "mac",
            7 => "vision",
            _ => continue,
        };
        if !names.iter().any(|known: &String| known == name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Icon base names kept from a plist.
const MAX_ICON_NAMES: usize = 64;

fn icon_files(keys: &Keys<'_>) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        // Apps name a handful of icons; a hostile plist could name millions.
        if !name.is_empty() && names.len() < MAX_ICON_NAMES && !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
    };
    for key in ["CFBundleIcons", "CFBundleIcons~ipad"] {
        let Some(icons) = keys.optional_dict(key)? else {
            continue;
        };
        let icons = Keys { dict: icons, what: keys.what };
        if let Some(primary) = icons.optional_dict("CFBundlePrimaryIcon")? {
            let primary = Keys { dict: primary, what: keys.what };
            for name in primary.string_array("CFBundleIconFiles")? {
                add(name);
            }
            if let Some(name) = primary.optional_string("CFBundleIconFile")? {
                add(name);
            }
        }
    }
    for name in keys.string_array("CFBundleIconFiles")? {
        add(name);
    }
    if let Some(name) = keys.optional_string("CFBundleIconFile")? {
        add(name);
    }
    Ok(names)
}
