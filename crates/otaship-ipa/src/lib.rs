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
pub mod device;
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
pub use limits::{Budget, Limits};
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
    let budget = Budget::new(limits.max_metadata_bytes);
    let archive = Archive::open(source, limits)?;
    let app = locate_app(&archive)?;
    let info = read_bundle_info(&archive, &app, limits, &budget)?.ok_or(IpaError::NoAppBundle)?;
    let profile = read_embedded_profile(&archive, &app, options, &budget)?;
    let has_code_signature = archive.find(format!("{app}/_CodeSignature/CodeResources").as_bytes()).is_some();
    let app_store_metadata = archive.find(b"iTunesMetadata.plist").is_some();

    let mut nested = Vec::new();
    for (path, kind) in nested_bundles(&archive, &app, limits.max_extensions)? {
        let Some(nested_info) = read_bundle_info(&archive, &path, limits, &budget)? else {
            continue;
        };
        let nested_profile = read_embedded_profile(&archive, &path, options, &budget)?;
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
    let mut seen = std::collections::HashSet::new();
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
        if folder.len() > 4 && folder.ends_with(b".app") && seen.insert(folder) {
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
fn nested_bundles<S: Source + ?Sized>(
    archive: &Archive<'_, S>,
    app: &str,
    limit: usize,
) -> Result<Vec<(String, &'static str)>> {
    let prefix = format!("{app}/");
    let mut found: Vec<(String, &'static str)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
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
        if seen.insert(path.clone()) {
            if found.len() == limit {
                return Err(IpaError::TooManyExtensions { limit });
            }
            found.push((path, kind));
        }
    }
    Ok(found)
}

/// Reads `bundle/Info.plist`, if the bundle has one, spending from the inspection's budget.
fn read_bundle_info<S: Source + ?Sized>(
    archive: &Archive<'_, S>,
    bundle: &str,
    limits: &Limits,
    budget: &Budget,
) -> Result<Option<BundleInfo>> {
    let name = format!("{bundle}/Info.plist");
    let Some(entry) = archive.find(name.as_bytes()) else {
        return Ok(None);
    };
    let bytes = archive.read(entry.index, limits.max_plist_bytes, "an Info.plist")?;
    budget.spend(bytes.len() as u64)?;
    let dict = plist::parse_dictionary(&bytes, limits, budget, &name)?;
    info::bundle_info(&dict, &name).map(Some)
}

fn read_embedded_profile<S: Source + ?Sized>(
    archive: &Archive<'_, S>,
    bundle: &str,
    options: &InspectOptions,
    budget: &Budget,
) -> Result<Option<Profile>> {
    let name = format!("{bundle}/embedded.mobileprovision");
    let Some(entry) = archive.find(name.as_bytes()) else {
        return Ok(None);
    };
    let bytes = archive.read(entry.index, options.limits.max_profile_bytes, "a provisioning profile")?;
    budget.spend(bytes.len() as u64)?;
    profile::read_profile_within(&bytes, &options.limits, budget, options.now, &name).map(Some)
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
    let bases: std::collections::HashSet<&str> =
        info.icon_files.iter().map(|base| base.strip_suffix(".png").unwrap_or(base)).collect();
    let mut candidates: Vec<(u32, u64, usize, String)> = Vec::new();
    for entry in archive.entries() {
        let Some(file) = entry.name.strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        if file.contains(&b'/') || entry.size > limits.max_icon_bytes {
            continue;
        }
        let file = zip::display_name(file);
        if let Some((base, scale)) = icon_variant(&file)
            && bases.contains(base)
        {
            candidates.push((icon_pixels(base, scale), entry.size, entry.index, format!("{prefix}{file}")));
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

/// Splits an icon file name into its base and scale: `AppIcon60x60@3x.png` → (`AppIcon60x60`,
/// 3), `AppIcon76x76@2x~ipad.png` → (`AppIcon76x76`, 2), `Icon.png` → (`Icon`, 1).
fn icon_variant(file: &str) -> Option<(&str, u32)> {
    let stem = file.strip_suffix(".png").or_else(|| file.strip_suffix(".PNG"))?;
    let stem = stem.strip_suffix("~ipad").or_else(|| stem.strip_suffix("~iphone")).unwrap_or(stem);
    Some(match stem.strip_suffix("@2x") {
        Some(base) => (base, 2),
        None => match stem.strip_suffix("@3x") {
            Some(base) => (base, 3),
            None => (stem, 1),
        },
    })
}

/// The estimated width in pixels of an icon: the points in its base name ("AppIcon83.5x83.5")
/// times its scale; 0 for legacy names without a size ("Icon").
fn icon_pixels(base: &str, scale: u32) -> u32 {
    // The size is the run of digits and dots just before an "x" at the end of the name. Only
    // ASCII bytes are looked at, so any name (non-ASCII included) is safe to slice.
    let Some(head) = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.').strip_suffix('x') else {
        return 0;
    };
    let digits = head.bytes().rev().take_while(|byte| byte.is_ascii_digit() || *byte == b'.').count();
    let points = head[head.len() - digits..].parse::<f64>().unwrap_or(0.0);
    (points * f64::from(scale)).round().clamp(0.0, 1_000_000.0) as u32
}

#[cfg(test)]
mod tests {
    use super::{icon_pixels, icon_variant};

    #[test]
    fn icon_names_are_matched_and_sized() {
        fn size(file: &str) -> Option<(&str, u32)> {
            icon_variant(file).map(|(base, scale)| (base, icon_pixels(base, scale)))
        }
        assert_eq!(size("AppIcon60x60@3x.png"), Some(("AppIcon60x60", 180)));
        assert_eq!(size("AppIcon83.5x83.5@2x~ipad.png"), Some(("AppIcon83.5x83.5", 167)));
        assert_eq!(size("AppIcon76x76~ipad.png"), Some(("AppIcon76x76", 76)));
        assert_eq!(size("Icon@2x.png"), Some(("Icon", 0)));
        assert_eq!(size("AppIcon60x60@2x.jpg"), None);
        // Non-ASCII names never split a character (this used to panic).
        assert_eq!(size("AppIconé60x60.png"), Some(("AppIconé60x60", 60)));
        assert_eq!(size("é.x.png"), Some(("é.x", 0)));
    }
}
