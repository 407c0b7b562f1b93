//! Everything the archive itself shows about whether a build can be installed over the air,
//! with stable codes. The codes and their causes follow the failure table of the OTA spec (§4).

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::info::{BundleInfo, Platform};
use crate::profile::{Profile, ProfileKind, SignatureState};

/// A reason the build will not install, or a note a tester needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable kebab-case code.
    pub code: &'static str,
    /// What is wrong and what to do, in plain words.
    pub message: String,
    /// The bundle concerned, relative to the archive root (`Payload/App.app/PlugIns/W.appex`),
    /// or `None` for the build as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
}

/// The verdict: `ok` is false when there is at least one problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installability {
    /// Whether nothing in the archive prevents installation.
    pub ok: bool,
    /// Reasons the build cannot be installed.
    pub problems: Vec<Finding>,
    /// Things that do not stop installation but that a tester or uploader should know.
    pub warnings: Vec<Finding>,
}

/// The days before expiry from which a profile counts as "expiring soon".
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// A nested bundle as the checks see it.
pub(crate) struct NestedBundle<'a> {
    pub path: &'a str,
    pub info: &'a BundleInfo,
    pub profile: Option<&'a Profile>,
}

/// What the checks need to know about the archive.
pub(crate) struct Facts<'a> {
    pub app_path: &'a str,
    pub info: &'a BundleInfo,
    pub profile: Option<&'a Profile>,
    pub has_code_signature: bool,
    pub app_store_metadata: bool,
    pub extensions: &'a [NestedBundle<'a>],
    pub icon_warning: Option<Finding>,
    pub now: OffsetDateTime,
}

pub(crate) fn assess(facts: &Facts<'_>) -> Installability {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let info = facts.info;

    if info.simulator || info.platform == Platform::IosSimulator {
        problems.push(finding(
            "simulator-build",
            "This is a Simulator build; it cannot run on a device. Archive for \"Any iOS Device (arm64)\" and export again.",
            None,
        ));
    } else if !info.platform.installs_over_the_air() {
        problems.push(finding(
            "platform-not-installable",
            &format!(
                "This app is built for {}, which cannot install apps from a web link; only iPhone, iPad and Apple Vision Pro can.",
                platform_name(info.platform)
            ),
            None,
        ));
    }
    if info.build.is_none() {
        problems.push(finding(
            "missing-bundle-version",
            "Info.plist has no CFBundleVersion; iOS refuses to install an app without a build number. Set it in Xcode and export again.",
            None,
        ));
    }
    if facts.app_store_metadata {
        problems.push(finding(
            "app-store-download",
            "This .ipa was downloaded from the App Store (it has iTunesMetadata.plist); it is encrypted for one Apple ID and cannot be installed from a link. Upload a build exported from Xcode.",
            None,
        ));
    }
    check_bundle(facts.app_path, info, facts.profile, facts.now, None, &mut problems, &mut warnings);
    if facts.profile.is_some() && !facts.has_code_signature {
        problems.push(finding(
            "missing-code-signature",
            "The app has a provisioning profile but no code signature (_CodeSignature/CodeResources); it was changed after signing. Sign it again and export.",
            None,
        ));
    }

    for extension in facts.extensions {
        let path = Some(extension.path);
        let prefix = format!("{}.", info.bundle_id);
        if !extension.info.bundle_id.starts_with(&prefix) {
            problems.push(finding(
                "extension-bundle-id-mismatch",
                &format!(
                    "The extension {} has the bundle id {}, which does not start with the app's {}; iOS refuses such an app. Rename the extension's bundle id.",
                    extension.path, extension.info.bundle_id, prefix
                ),
                path,
            ));
        }
        if facts.profile.is_some() {
            check_bundle(
                extension.path,
                extension.info,
                extension.profile,
                facts.now,
                facts.profile,
                &mut problems,
                &mut warnings,
            );
        }
    }

    if let Some(profile) = facts.profile
        && !profile.expired
    {
        match profile.kind {
            ProfileKind::Development | ProfileKind::AdHoc => warnings.push(finding(
                "developer-mode-required",
                "On iOS 16 and later, testers must turn on Developer Mode (Settings > Privacy & Security > Developer Mode, then restart) before this development or ad-hoc build opens.",
                None,
            )),
            ProfileKind::Enterprise => warnings.push(finding(
                "enterprise-trust-required",
                "After installing, testers must trust the developer under Settings > General > VPN & Device Management; on iOS 18 and later they must then restart the device.",
                None,
            )),
            _ => {}
        }
    }
    warnings.extend(facts.icon_warning.clone());
    Installability { ok: problems.is_empty(), problems, warnings }
}

/// The checks that apply to the main app and to each extension alike.
fn check_bundle(
    path: &str,
    info: &BundleInfo,
    profile: Option<&Profile>,
    now: OffsetDateTime,
    main_profile: Option<&Profile>,
    problems: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) {
    let bundle = main_profile.map(|_| path);
    let subject = if main_profile.is_some() { format!("The extension {path}") } else { "The app".to_owned() };
    let Some(profile) = profile else {
        problems.push(finding(
            "unsigned",
            &format!(
                "{subject} has no embedded.mobileprovision, so it is not signed for devices. Export it from Xcode with the Ad Hoc, Development or Enterprise method."
            ),
            bundle,
        ));
        return;
    };
    if profile.kind == ProfileKind::AppStore {
        problems.push(finding(
            "app-store-profile",
            &format!(
                "{subject} is signed with an App Store profile, which installs only through the App Store or TestFlight. Export with the Ad Hoc, Development or Enterprise method."
            ),
            bundle,
        ));
    }
    if profile.signature == SignatureState::Invalid {
        problems.push(finding(
            "profile-tampered",
            &format!(
                "The provisioning profile of {} was altered after Apple signed it; iOS will refuse it. Download the profile again and re-sign.",
                path
            ),
            bundle,
        ));
    }
    match profile.expires_at {
        Some(expiry) if expiry <= now => problems.push(finding(
            "profile-expired",
            &format!(
                "{subject}'s provisioning profile expired on {}; iOS will not install or launch it. Renew the profile and export again.",
                date(expiry)
            ),
            bundle,
        )),
        Some(expiry) if expiry - now <= Duration::days(EXPIRY_WARNING_DAYS) => warnings.push(finding(
            "profile-expires-soon",
            &format!(
                "{subject}'s provisioning profile expires on {}; after that the app stops launching. Renew it soon.",
                date(expiry)
            ),
            bundle,
        )),
        _ => {}
    }
    // An expired profile already says it all; an expired certificate matters on its own when
    // the profile is still current.
    if !profile.expired && profile.all_certificates_expired(now) {
        problems.push(finding(
            "certificate-expired",
            &format!(
                "Every signing certificate in {}'s profile has expired; the app cannot be installed. Renew the certificate and profile, then sign again.",
                path
            ),
            bundle,
        ));
    }
    if profile.covers_bundle_id(&info.bundle_id) == Some(false) {
        problems.push(finding(
            "bundle-id-not-in-profile",
            &format!(
                "{subject}'s bundle id {} is not covered by its profile's application identifier {}. Sign it with a profile for this bundle id.",
                info.bundle_id,
                profile.app_id.as_deref().unwrap_or("")
            ),
            bundle,
        ));
    }
    if profile.kind.lists_devices() && profile.devices.is_empty() {
        problems.push(finding(
            "profile-has-no-devices",
            &format!(
                "{subject}'s {} profile lists no devices, so no device can install it. Register the testers' devices and regenerate the profile.",
                kind_name(profile.kind)
            ),
            bundle,
        ));
    }
    let platform_allowed = match info.platform {
        Platform::Ios | Platform::IosSimulator => "ios",
        Platform::Visionos => "visionos",
        Platform::Tvos => "tvos",
        Platform::Watchos => "watchos",
        Platform::Macos => "macos",
    };
    // Watch apps run on the watch but are provisioned with the iOS profile family.
    let allowed = profile.platforms.is_empty()
        || profile.platforms.iter().any(|platform| platform == platform_allowed)
        || (info.platform == Platform::Watchos && profile.platforms.iter().any(|platform| platform == "ios"))
        || (info.platform == Platform::Visionos && profile.platforms.iter().any(|platform| platform == "ios"));
    if !allowed {
        problems.push(finding(
            "profile-wrong-platform",
            &format!(
                "{subject} is for {} but its profile is for {}. Sign it with a profile for the right platform.",
                platform_name(info.platform),
                profile.platforms.join(", ")
            ),
            bundle,
        ));
    }
    if let Some(main_team) = main_profile.and_then(|main| main.team_id.as_deref())
        && let Some(team) = profile.team_id.as_deref()
        && main_team != team
    {
        problems.push(finding(
            "extension-team-mismatch",
            &format!(
                "{subject} is signed by team {team} but the app by team {main_team}; every bundle must be signed by the same team."
            ),
            bundle,
        ));
    }
}

fn finding(code: &'static str, message: &str, bundle: Option<&str>) -> Finding {
    Finding { code, message: message.to_owned(), bundle: bundle.map(str::to_owned) }
}

fn date(at: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", at.year(), u8::from(at.month()), at.day())
}

fn kind_name(kind: ProfileKind) -> &'static str {
    match kind {
        ProfileKind::Development => "development",
        ProfileKind::AdHoc => "ad-hoc",
        ProfileKind::Enterprise => "enterprise",
        ProfileKind::AppStore => "App Store",
        ProfileKind::DeveloperId => "Developer ID",
    }
}

fn platform_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Ios => "iOS",
        Platform::IosSimulator => "the iOS Simulator",
        Platform::Tvos => "tvOS",
        Platform::Watchos => "watchOS",
        Platform::Visionos => "visionOS",
        Platform::Macos => "macOS",
    }
}
