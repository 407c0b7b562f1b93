//! Reads untrusted iOS app archives (`.ipa`) and provisioning profiles.
//!
//! This crate is pure: no async, no network, no files written. Everything it reads comes
//! through a [`Source`] under explicit [`Limits`], so that it can be fuzzed and so that a
//! hostile archive costs bounded memory and time. It reads the zip central directory and only
//! the entries it needs (the main app's `Info.plist`, provisioning profiles, one icon, and the
//! `Info.plist` of each extension), never the whole file.
//!
//! ```no_run
//! use otaship_ipa::{inspect_ipa, FileSource, InspectOptions};
//! let file = std::fs::File::open("App.ipa")?;
//! let inspection = inspect_ipa(&FileSource::new(file)?, &InspectOptions::default())?;
//! println!("{} {}", inspection.report.bundle_id, inspection.report.installable.ok);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "builder")]
pub mod builder;
pub mod certificate;
pub mod cms;
pub mod der;
mod error;
pub mod info;
pub mod installable;
mod limits;
pub mod plist;
pub mod png;
pub mod profile;
mod source;
pub mod zip;

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use error::{IpaError, Result};
pub use info::{BundleInfo, Platform};
pub use installable::{Finding, Installability};
pub use limits::Limits;
pub use profile::{Profile, ProfileKind, SignatureState, read_profile};
pub use source::{CountingSource, FileSource, Source};

use installable::{Facts, NestedBundle};
use zip::Archive;

/// How to inspect: the limits, and the moment against which expiry is judged.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Bounds on the work done.
    pub limits: Limits,
    /// "Now", for expiry checks (a parameter so that results are reproducible).
    pub now: OffsetDateTime,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions { limits: Limits::default(), now: OffsetDateTime::now_utc() }
    }
}

/// The result of inspecting an `.ipa`: the report and the icon as a standard PNG.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// What `inspect --json` prints.
    pub report: IpaReport,
    /// The chosen icon as a standard (uncrushed) PNG.
    pub icon_png: Option<Vec<u8>>,
}

/// What an `.ipa` says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct IpaReport {
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
    /// The platform the app was built for.
    pub platform: Platform,
    /// `UIDeviceFamily`, named (`iphone`, `ipad`, `tv`, `watch`, `mac`, `vision`).
    pub device_families: Vec<String>,
    /// Bytes of the file.
    pub size: u64,
    /// SHA-256 of the whole file in hex, when it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The chosen icon.
    pub icon: Option<IconInfo>,
    /// The main app's embedded provisioning profile.
    pub profile: Option<Profile>,
    /// App extensions, watch apps and App Clips, with their own profiles.
    pub extensions: Vec<ExtensionReport>,
    /// Whether the archive can be installed over the air, and why not.
    pub installable: Installability,
    /// The main app's folder in the archive, e.g. `Payload/App.app`.
    pub app_path: String,
    /// `CFBundleExecutable`.
    pub executable: Option<String>,
}

/// The icon that was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IconInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether the archive stores it as a crushed CgBI PNG.
    pub crushed: bool,
    /// Its path in the archive.
    pub entry: String,
}

/// A bundle nested in the app.
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionReport {
    /// Its `CFBundleIdentifier`.
    pub bundle_id: String,
    /// Its folder in the archive.
    pub path: String,
    /// `app-extension`, `watch-app` or `app-clip`.
    pub kind: &'static str,
    /// Its embedded provisioning profile.
    pub profile: Option<Profile>,
}

/// Inspects an `.ipa`.
pub fn inspect_ipa<S: Source + ?Sized>(source: &S, options: &InspectOptions) -> Result<Inspection> {
    let limits = &options.limits;
    let archive = Archive::open(source, limits)?;
    let app = locate_app(&archive)?;
    let info_name = format!("{app}/Info.plist");
    let info_entry = archive.find(info_name.as_bytes()).ok_or(IpaError::NoAppBundle)?;
    let info_bytes = archive.read(info_entry.index, limits.max_plist_bytes, "an Info.plist")?;
    let info_dict = plist::parse_dictionary(&info_bytes, limits, &info_name)?;
    let info = info::bundle_info(&info_dict, &info_name)?;
    let profile = read_embedded_profile(&archive, &app, options)?;
    let has_code_signature = archive.find(format!("{app}/_CodeSignature/CodeResources").as_bytes()).is_some();
    let app_store_metadata = archive.find(b"iTunesMetadata.plist").is_some();

    let mut nested = Vec::new();
    for (path, kind) in nested_bundles(&archive, &app).into_iter().take(limits.max_extensions) {
        let what = format!("{path}/Info.plist");
        let Some(entry) = archive.find(what.as_bytes()) else {
            continue;
        };
        let bytes = archive.read(entry.index, limits.max_plist_bytes, "an Info.plist")?;
        let dict = plist::parse_dictionary(&bytes, limits, &what)?;
        let nested_info = info::bundle_info(&dict, &what)?;
        let nested_profile = read_embedded_profile(&archive, &path, options)?;
        nested.push((path, kind, nested_info, nested_profile));
    }

    let (icon, icon_png, icon_warning) = choose_icon(&archive, &app, &info, limits);
    let bundles: Vec<NestedBundle<'_>> =
        nested.iter().map(|(path, _, info, profile)| NestedBundle { path, info, profile: profile.as_ref() }).collect();
    let installable = installable::assess(&Facts {
        app_path: &app,
        info: &info,
        profile: profile.as_ref(),
        has_code_signature,
        app_store_metadata,
        extensions: &bundles,
        icon_warning,
        now: options.now,
    });
    let extensions = nested
        .into_iter()
        .map(|(path, kind, info, profile)| ExtensionReport { bundle_id: info.bundle_id, path, kind, profile })
        .collect();
    let report = IpaReport {
        bundle_id: info.bundle_id,
        name: info.name,
        version: info.version,
        build: info.build,
        min_os: info.min_os,
        platform: info.platform,
        device_families: info.device_families,
        size: source.len(),
        sha256: None,
        icon,
        profile,
        extensions,
        installable,
        app_path: app,
        executable: info.executable,
    };
    Ok(Inspection { report, icon_png })
}

/// SHA-256 of a whole source, in lower-case hex (reads every byte: opt-in).
pub fn sha256_hex<S: Source + ?Sized>(source: &S) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < source.len() {
        let n = (source.len() - offset).min(buffer.len() as u64) as usize;
        source.read_exact_at(offset, &mut buffer[..n])?;
        hasher.update(&buffer[..n]);
        offset += n as u64;
    }
    Ok(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Finds the one `Payload/<Name>.app` folder.
fn locate_app<S: Source + ?Sized>(archive: &Archive<'_, S>) -> Result<String> {
    let mut apps: Vec<&[u8]> = Vec::new();
    let mut has_payload = false;
    for entry in archive.entries() {
        let Some(rest) = entry.name.strip_prefix(b"Payload/") else {
            continue;
        };
        has_payload = true;
        let Some(slash) = rest.iter().position(|&byte| byte == b'/') else {
            continue;
        };
        let folder = &rest[..slash];
        if folder.len() > 4 && folder.ends_with(b".app") && !apps.contains(&folder) {
            apps.push(folder);
        }
    }
    match apps.as_slice() {
        [] if has_payload => Err(IpaError::NoAppBundle),
        [] => Err(IpaError::NoPayload),
        [app] => Ok(format!("Payload/{}", zip::display_name(app))),
        many => Err(IpaError::MultipleApps {
            count: many.len(),
            names: many.iter().map(|name| zip::display_name(name)).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// Folders of extensions, watch apps and App Clips inside `app`, in archive order.
fn nested_bundles<S: Source + ?Sized>(archive: &Archive<'_, S>, app: &str) -> Vec<(String, &'static str)> {
    let prefix = format!("{app}/");
    let mut found: Vec<(String, &'static str)> = Vec::new();
    for entry in archive.entries() {
        let Some(rest) = entry.name.strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        let Some(inner) = rest.strip_suffix(b"/Info.plist") else {
            continue;
        };
        let parts: Vec<&[u8]> = inner.split(|&byte| byte == b'/').collect();
        let kind = match parts.as_slice() {
            [b"PlugIns" | b"Extensions", bundle] if bundle.ends_with(b".appex") => "app-extension",
            [b"Watch", bundle] if bundle.ends_with(b".app") => "watch-app",
            [b"Watch", watch, b"PlugIns", bundle] if watch.ends_with(b".app") && bundle.ends_with(b".appex") => {
                "app-extension"
            }
            [b"AppClips", bundle] if bundle.ends_with(b".app") => "app-clip",
            _ => continue,
        };
        let path = format!("{prefix}{}", zip::display_name(inner));
        if !found.iter().any(|(known, _)| *known == path) {
            found.push((path, kind));
        }
    }
    found
}

fn read_embedded_profile<S: Source + ?Sized>(
    archive: &Archive<'_, S>,
    bundle: &str,
    options: &InspectOptions,
) -> Result<Option<Profile>> {
    let name = format!("{bundle}/embedded.mobileprovision");
    let Some(entry) = archive.find(name.as_bytes()) else {
        return Ok(None);
    };
    let bytes = archive.read(entry.index, options.limits.max_profile_bytes, "a provisioning profile")?;
    read_profile(&bytes, &options.limits, options.now, &name).map(Some)
}

/// Picks the largest icon the plist names, tries the best few candidates, and returns it
/// decoded; an unusable icon is a warning, never an error.
fn choose_icon<S: Source + ?Sized>(
    archive: &Archive<'_, S>,
    app: &str,
    info: &BundleInfo,
    limits: &Limits,
) -> (Option<IconInfo>, Option<Vec<u8>>, Option<Finding>) {
    let prefix = format!("{app}/");
    let mut candidates: Vec<(u32, u64, usize, String)> = Vec::new();
    for entry in archive.entries() {
        let Some(file) = entry.name.strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        if file.contains(&b'/') || entry.size > limits.max_icon_bytes {
            continue;
        }
        let file = zip::display_name(file);
        if let Some(pixels) = info.icon_files.iter().filter_map(|base| icon_pixels(base, &file)).max() {
            candidates.push((pixels, entry.size, entry.index, format!("{prefix}{file}")));
        }
    }
    candidates.sort_by_key(|candidate| std::cmp::Reverse((candidate.0, candidate.1)));
    let mut failure = None;
    for (_, _, index, name) in candidates.iter().take(3) {
        let decoded = archive
            .read(*index, limits.max_icon_bytes, "an icon")
            .map_err(|error| error.to_string())
            .and_then(|bytes| png::normalize(&bytes, limits.max_icon_dimension).map_err(|error| error.to_string()));
        match decoded {
            Ok(icon) => {
                let info =
                    IconInfo { width: icon.width, height: icon.height, crushed: icon.crushed, entry: name.clone() };
                return (Some(info), Some(icon.png), None);
            }
            Err(reason) => failure = Some(format!("{name}: {reason}")),
        }
    }
    let warning = if let Some(reason) = failure {
        Some(Finding {
            code: "icon-unreadable",
            message: format!("The app icon could not be read ({reason}); pages show a placeholder."),
            bundle: None,
        })
    } else if !info.icon_files.is_empty() || archive.find(format!("{prefix}Assets.car").as_bytes()).is_some() {
        Some(Finding {
            code: "icon-in-asset-catalog",
            message: "The app icon exists only inside Assets.car, which is not read; pages show a placeholder."
                .to_owned(),
            bundle: None,
        })
    } else {
        None
    };
    (None, None, warning)
}

/// If `file` is a PNG variant of the icon `base` (`AppIcon60x60` → `AppIcon60x60@3x.png`,
/// `AppIcon76x76@2x~ipad.png`), its estimated width in pixels; 0 when the name says no size.
fn icon_pixels(base: &str, file: &str) -> Option<u32> {
    let base = base.strip_suffix(".png").unwrap_or(base);
    let stem = file.strip_suffix(".png").or_else(|| file.strip_suffix(".PNG"))?;
    let rest = stem.strip_prefix(base)?;
    let rest = rest.strip_suffix("~ipad").or_else(|| rest.strip_suffix("~iphone")).unwrap_or(rest);
    let scale = match rest {
        "" => 1.0,
        "@2x" => 2.0,
        "@3x" => 3.0,
        _ => return None,
    };
    // "AppIcon83.5x83.5" → 83.5 points; legacy names ("Icon") carry no size.
    let points = base
        .trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
        .strip_suffix('x')
        .and_then(|head| {
            let start = head.rfind(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(0, |at| at + 1);
            head[start..].parse::<f64>().ok()
        })
        .unwrap_or(0.0);
    Some((points * scale).round() as u32)
}

#[cfg(test)]
mod tests {
    use super::icon_pixels;

    #[test]
    fn icon_names_are_matched_and_sized() {
        assert_eq!(icon_pixels("AppIcon60x60", "AppIcon60x60@3x.png"), Some(180));
        assert_eq!(icon_pixels("AppIcon83.5x83.5", "AppIcon83.5x83.5@2x~ipad.png"), Some(167));
        assert_eq!(icon_pixels("AppIcon76x76", "AppIcon76x76~ipad.png"), Some(76));
        assert_eq!(icon_pixels("Icon.png", "Icon@2x.png"), Some(0));
        assert_eq!(icon_pixels("AppIcon60x60", "AppIcon60x60Large.png"), None);
        assert_eq!(icon_pixels("AppIcon60x60", "AppIcon60x60@2x.jpg"), None);
    }
}
