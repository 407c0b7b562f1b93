//! Real-world fixtures from `shared/fixtures/third-party/`, each checked against values written
//! here by hand from the provenance document `SOURCES.md` (an independent cross-check: none of
//! these values was copied from the reader's output).
//!
//! Where this file knowingly departs from a line of `SOURCES.md`, a comment says why.

#![expect(clippy::expect_used)]

use std::collections::BTreeSet;

use otaship_ipa::{
    FileSource, InspectOptions, Limits, Platform, Profile, ProfileKind, SignatureState, inspect_ipa, read_profile,
};
use time::OffsetDateTime;
use time::macros::datetime;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/third-party/");

/// Every fixture profile has expired by then (the last ones, from sentry-cli, in July 2026).
const NOW: OffsetDateTime = datetime!(2026-11-21 0:00 UTC);

struct ExpectedProfile {
    kind: ProfileKind,
    name: Option<&'static str>,
    uuid: Option<&'static str>,
    team_id: Option<&'static str>,
    team_name: Option<&'static str>,
    app_id: Option<&'static str>,
    app_id_name: Option<&'static str>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    expired: bool,
    devices: usize,
    provisions_all_devices: bool,
    get_task_allow: bool,
    platforms: &'static [&'static str],
    aps_environment: Option<&'static str>,
    signature: SignatureState,
    /// Certificates that could be summarised (sanitised `<data>` blobs are not certificates).
    certificates: usize,
}

struct ExpectedExtension {
    path: &'static str,
    bundle_id: &'static str,
    kind: &'static str,
    profile: Option<ExpectedProfile>,
    /// Problem codes whose `bundle` is this extension.
    problems: &'static [&'static str],
}

struct ExpectedIpa {
    file: &'static str,
    size: u64,
    app_path: &'static str,
    bundle_id: &'static str,
    name: Option<&'static str>,
    version: Option<&'static str>,
    build: Option<&'static str>,
    min_os: Option<&'static str>,
    executable: Option<&'static str>,
    platform: Platform,
    families: &'static [&'static str],
    /// (entry, width, height, crushed)
    icon: Option<(&'static str, u32, u32, bool)>,
    profile: Option<ExpectedProfile>,
    extensions: &'static [ExpectedExtension],
    /// Problem codes of the main app (findings without a bundle).
    problems: &'static [&'static str],
    warnings: &'static [&'static str],
}

enum ProfileOutcome {
    Read(ExpectedProfile),
    Error(&'static str),
}

struct ExpectedProfileFile {
    file: &'static str,
    outcome: ProfileOutcome,
}

const IOS: &[&str] = &["ios"];
const IOS_VISION: &[&str] = &["ios", "visionos"];
const MACOS: &[&str] = &["macos"];
const NO_PLATFORM: &[&str] = &[];
const IPHONE: &[&str] = &["iphone"];
const IPAD: &[&str] = &["ipad"];
const UNIVERSAL: &[&str] = &["iphone", "ipad"];
const EXPIRED: &[&str] = &["profile-expired"];
const APP_STORE_EXPIRED: &[&str] = &["app-store-profile", "profile-expired"];
const NONE: &[&str] = &[];

// ---------------------------------------------------------------------------------------------
// ipa/
// ---------------------------------------------------------------------------------------------

/// Archives that are not an installable `.ipa`, with the error code.
const IPA_ERRORS: &[(&str, &str)] = &[
    // .app at the zip root, no Payload/.
    ("IPAParser-Flat.ipa", "ipa-no-payload"),
    // Everything is under ContainsWatchApp/Payload/...: no top-level Payload/.
    ("fastlane-ContainsWatchApp.ipa", "ipa-no-payload"),
    // Only an empty Payload/ directory.
    ("fastlane-no-app-bundle.ipa", "ipa-no-app-bundle"),
    // A 15-byte text file.
    ("fastlane-not-an-ipa.ipa", "not-a-zip"),
    // A valid zip holding only NotAnApp.txt.
    ("isign-NotAnApp.ipa", "ipa-no-payload"),
];

const IPAS: &[ExpectedIpa] = &[
    ExpectedIpa {
        file: "IPAParser-Example.ipa",
        size: 334_603,
        app_path: "Payload/Example.app",
        bundle_id: "com.coollazy.example",
        name: Some("Example"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("15.6"),
        executable: Some("Example"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        icon: Some(("Payload/Example.app/AppIcon76x76@2x~ipad.png", 152, 152, true)),
        profile: None,
        extensions: &[],
        // No embedded.mobileprovision and no _CodeSignature/.
        problems: &["unsigned"],
        warnings: NONE,
    },
    ExpectedIpa {
        file: "app-info-embedded.ipa",
        size: 42_894,
        app_path: "Payload/Demo.app",
        bundle_id: "com.icyleaf.test.Demo",
        name: Some("Demo"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("14.3"),
        executable: Some("Demo"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Enterprise,
            name: Some("iOS Team Inhouse Provisioning Profile: com.icyleaf.test.Demo"),
            uuid: Some("1f67e425-350e-434c-9077-9e0791347bbf"),
            team_id: Some("72LA85G59H"),
            team_name: Some("Niceliving Beijing Technology Co. Ltd."),
            app_id: Some("72LA85G59H.com.icyleaf.test.Demo"),
            app_id_name: Some("temp test"),
            created_at: datetime!(2021-01-15 06:40:53 UTC),
            expires_at: datetime!(2022-01-15 06:40:53 UTC),
            expired: true,
            devices: 0,
            provisions_all_devices: true,
            get_task_allow: false,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 2,
        }),
        // SOURCES.md lists `PlugIns/` but does not describe its content; these values were read
        // from PlugIns/Notification.appex with python3 zipfile/plistlib and openssl cms.
        extensions: &[ExpectedExtension {
            path: "Payload/Demo.app/PlugIns/Notification.appex",
            bundle_id: "com.icyleaf.test.Demo.Notification",
            kind: "app-extension",
            profile: Some(ExpectedProfile {
                kind: ProfileKind::Enterprise,
                name: Some("iOS Team Inhouse Provisioning Profile: com.icyleaf.test.Demo.Notification"),
                uuid: Some("8be76b92-e15e-4551-b71a-97bdb130e365"),
                team_id: Some("72LA85G59H"),
                team_name: Some("Niceliving Beijing Technology Co. Ltd."),
                app_id: Some("72LA85G59H.com.icyleaf.test.Demo.Notification"),
                app_id_name: Some("XC com icyleaf test Demo Notification"),
                created_at: datetime!(2021-01-15 06:42:34 UTC),
                expires_at: datetime!(2022-01-15 06:42:34 UTC),
                expired: true,
                devices: 0,
                provisions_all_devices: true,
                get_task_allow: false,
                platforms: IOS,
                aps_environment: None,
                signature: SignatureState::Valid,
                certificates: 2,
            }),
            problems: EXPIRED,
        }],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "app-info-ipad.ipa",
        size: 188_692,
        app_path: "Payload/bundle.app",
        bundle_id: "com.icyleaf.bundle",
        name: Some("bundle"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("9.3"),
        executable: Some("bundle"),
        platform: Platform::Ios,
        families: IPAD,
        // 83.5 pt @2x = 167 px beats 76 pt @2x = 152 px.
        icon: Some(("Payload/bundle.app/AppIcon83.5x83.5@2x~ipad.png", 167, 167, true)),
        profile: Some(ExpectedProfile {
            kind: ProfileKind::AppStore,
            name: Some("XC: *"),
            uuid: Some("38679c6c-63e4-4dd4-af9e-f6fd4ff539f9"),
            team_id: Some("5PJA6N5A3B"),
            team_name: Some("QYER Inc"),
            app_id: Some("5PJA6N5A3B.*"),
            app_id_name: Some("XC Wildcard"),
            created_at: datetime!(2016-05-12 10:54:21 UTC),
            expires_at: datetime!(2017-04-12 09:37:18 UTC),
            expired: true,
            devices: 0,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 1,
        }),
        extensions: &[],
        problems: APP_STORE_EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "app-info-iphone.ipa",
        size: 42_699,
        app_path: "Payload/AppInfoDemo.app",
        bundle_id: "com.icyleaf.AppInfoDemo",
        name: Some("AppInfoDemo"),
        version: Some("1.2.3"),
        build: Some("5"),
        min_os: Some("9.3"),
        executable: Some("AppInfoDemo"),
        platform: Platform::Ios,
        families: IPHONE,
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("iOS Team Provisioning Profile: *"),
            uuid: Some("3e5c38a0-3031-4624-9c2d-c508df973b15"),
            team_id: Some("5PJA6N5A3B"),
            team_name: Some("QYER Inc"),
            app_id: Some("5PJA6N5A3B.*"),
            app_id_name: Some("XC Wildcard"),
            created_at: datetime!(2016-07-27 09:44:49 UTC),
            expires_at: datetime!(2017-07-27 09:44:49 UTC),
            expired: true,
            devices: 100,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 13,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "app-metadata-valid_adhoc.ipa",
        size: 25_284,
        app_path: "Payload/Test.app",
        bundle_id: "de.codenauts.icebird.lite.beta",
        name: Some("Test"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("6.0"),
        executable: Some("Test"),
        platform: Platform::Ios,
        families: IPHONE,
        // Only launch images (Default*.png); no icon is named.
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::AdHoc,
            name: Some("Icebird Lite Adhoc"),
            uuid: Some("57A48C5F-CDB0-4BC9-81DD-F503B5B03C1F"),
            team_id: Some("729BK3N8CK"),
            team_name: None,
            app_id: Some("729BK3N8CK.de.codenauts.icebird.lite.beta"),
            app_id_name: None,
            created_at: datetime!(2012-09-26 19:49:50 UTC),
            expires_at: datetime!(2013-03-07 19:49:50 UTC),
            expired: true,
            devices: 47,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: NO_PLATFORM,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 1,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "bitrise-ipa_analyzer-ios-simple-objc.ipa",
        size: 49_425,
        app_path: "Payload/ios-simple-objc.app",
        bundle_id: "Bitrise.ios-simple-objc",
        name: Some("ios-simple-objc"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("8.1"),
        executable: Some("ios-simple-objc"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("BitriseBot-Wildcard"),
            uuid: Some("548cd560-c511-4540-8b6b-cbec4a22f49d"),
            team_id: Some("72SA8V3WYL"),
            team_name: Some("BITFALL FEJLESZTO KORLATOLT FELELOSSEGU TARSASAG"),
            app_id: Some("72SA8V3WYL.*"),
            app_id_name: Some("Xcode iOS Wildcard App ID"),
            created_at: datetime!(2017-02-17 09:33:57 UTC),
            expires_at: datetime!(2018-02-17 09:33:57 UTC),
            expired: true,
            devices: 1,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 1,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "fastlane-deliver-Example1.ipa",
        size: 2_056_240,
        app_path: "Payload/iTanky.app",
        bundle_id: "at.felixkrause.iTanky",
        name: Some("iTanky"),
        version: Some("1.0"),
        build: Some("1.0"),
        min_os: Some("5.0"),
        executable: Some("iTanky"),
        platform: Platform::Ios,
        families: IPHONE,
        // The plist names Icon.png and Icon@2x.png; only Icon@2x.png exists (57 pt @2x).
        icon: Some(("Payload/iTanky.app/Icon@2x.png", 114, 114, true)),
        profile: Some(ExpectedProfile {
            kind: ProfileKind::AdHoc,
            name: Some("iTanky Ad Hoc Krause New 2"),
            uuid: Some("5A17EAE9-99D4-453C-A41D-C3524E3DFD0D"),
            team_id: Some("A83XXT7P9C"),
            team_name: None,
            app_id: Some("A83XXT7P9C.at.felixkrause.iTanky"),
            app_id_name: None,
            created_at: datetime!(2012-03-09 08:45:45 UTC),
            expires_at: datetime!(2012-07-23 08:45:45 UTC),
            expired: true,
            devices: 24,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: NO_PLATFORM,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 1,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "fastlane-gym-cocoapods-ExampleProductName.ipa",
        size: 264_695,
        app_path: "Payload/ExampleProductName.app",
        bundle_id: "net.sunapps.9",
        name: Some("ExampleProductName"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("9.0"),
        executable: Some("ExampleProductName"),
        platform: Platform::Ios,
        families: IPHONE,
        // 16 ordinary PNGs from a CocoaPods bundle, but no icon is named.
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::AppStore,
            name: Some("9 SunPreviewer AppStore"),
            uuid: Some("675dcbd2-06a8-4a38-91a9-33ad0faf22b1"),
            team_id: Some("5A997XSHK2"),
            team_name: Some("SunApps GmbH"),
            app_id: Some("5A997XSHK2.net.sunapps.9"),
            app_id_name: Some("SunApp Setup"),
            created_at: datetime!(2015-07-24 20:06:19 UTC),
            expires_at: datetime!(2016-02-10 23:44:20 UTC),
            expired: true,
            devices: 0,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: IOS,
            aps_environment: Some("production"),
            signature: SignatureState::Valid,
            certificates: 1,
        }),
        extensions: &[],
        problems: APP_STORE_EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "fastlane-very capable app.ipa",
        size: 20_080,
        app_path: "Payload/very capable app.app",
        bundle_id: "org.fastlane.very-capable-app",
        name: Some("very capable app"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("11.2"),
        executable: Some("very capable app"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("org.fastlane.very-capable-app Development"),
            uuid: Some("12345678-1234-1234-1234-123456789012"),
            team_id: Some("TestFixture"),
            team_name: Some("TestFixture"),
            app_id: Some("TestFixture.org.fastlane.very-capable-app"),
            app_id_name: Some("very-capable-app"),
            created_at: datetime!(2018-04-07 01:27:21 UTC),
            expires_at: datetime!(2019-04-07 01:27:21 UTC),
            expired: true,
            devices: 1,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS,
            aps_environment: Some("development"),
            // SOURCES.md: "CMS/PKCS#7 DER signed"; the envelope is in fact BER (indefinite
            // lengths, 30 80 ...), and openssl verifies its content digest.
            signature: SignatureState::Valid,
            certificates: 1,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "ipa-server-ipa.ipa",
        size: 104_191,
        app_path: "Payload/Test.app",
        bundle_id: "com.ineva.test-rtmp.Test",
        name: Some("Test"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("13.1"),
        executable: Some("Test"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        // AppIcon60x60 is named but exists only in Assets.car.
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("iOS Team Provisioning Profile: com.ineva.test-rtmp.Test"),
            uuid: Some("f4ec4d8a-8a0e-493c-add9-8ba1c4b8d638"),
            team_id: Some("GC6FQHF5NF"),
            team_name: Some("Qin Junru"),
            app_id: Some("GC6FQHF5NF.com.ineva.test-rtmp.Test"),
            app_id_name: Some("XC com ineva test-rtmp Test"),
            created_at: datetime!(2021-05-09 06:59:38 UTC),
            expires_at: datetime!(2022-05-09 06:59:38 UTC),
            expired: true,
            devices: 35,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 2,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: &["icon-in-asset-catalog"],
    },
    ExpectedIpa {
        file: "lagunitas-Sample.ipa",
        size: 77_808,
        app_path: "Payload/Sample.app",
        bundle_id: "com.samsoffes.Sample",
        name: Some("Sample"),
        version: Some("2.2"),
        build: Some("13"),
        min_os: Some("7.0"),
        executable: Some("Sample"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        icon: Some(("Payload/Sample.app/AppIcon76x76@2x~ipad.png", 152, 152, true)),
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("iOS Team Provisioning Profile: *"),
            uuid: Some("4229B359-3287-4BE3-8960-318BEE5E0865"),
            // TeamIdentifier differs from the application-identifier prefix in this profile.
            team_id: Some("UP9C8XM22A"),
            team_name: Some("Nothing Magical Inc."),
            app_id: Some("P6E47NYN2M.*"),
            app_id_name: Some("Xcode: Wildcard AppID"),
            created_at: datetime!(2013-10-30 17:23:25 UTC),
            expires_at: datetime!(2014-10-30 17:23:25 UTC),
            expired: true,
            devices: 33,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: NO_PLATFORM,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 3,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "pliney-test.ipa",
        size: 30_222,
        app_path: "Payload/pliney-test.app",
        bundle_id: "computer.versus.pliney-test",
        name: Some("pliney-test"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("8.2"),
        executable: Some("pliney-test"),
        platform: Platform::Ios,
        families: IPHONE,
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("Pliney Test Profile"),
            uuid: Some("7d5b92ff-8e79-4291-832d-30652ce3c81e"),
            team_id: Some("UL736KYQR9"),
            team_name: Some("Eric Monti"),
            app_id: Some("UL736KYQR9.computer.versus.pliney-test"),
            app_id_name: Some("Pliney Test App"),
            created_at: datetime!(2015-04-21 21:18:13 UTC),
            expires_at: datetime!(2016-04-20 21:18:13 UTC),
            expired: true,
            devices: 1,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: NO_PLATFORM,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 2,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "run_loop-CalSmoke.ipa",
        size: 1_153_357,
        app_path: "Payload/CalSmoke.app",
        bundle_id: "sh.calaba.CalSmoke",
        name: Some("CalSmoke"),
        version: Some("0.20.4"),
        build: Some("0.20.4"),
        min_os: Some("8.0"),
        executable: Some("CalSmoke"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        // 60 pt @3x = 180 px beats 83.5 pt @2x = 167 px.
        icon: Some(("Payload/CalSmoke.app/AppIcon60x60@3x.png", 180, 180, true)),
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("iOS Team Provisioning Profile: *"),
            uuid: Some("0d3e70b1-5786-4c3d-b8b1-bcc48d293865"),
            team_id: Some("FYD86LA7RE"),
            team_name: Some("Karl Krukow"),
            app_id: Some("FYD86LA7RE.*"),
            app_id_name: Some("CalabashWildcard"),
            created_at: datetime!(2017-01-24 01:02:18 UTC),
            expires_at: datetime!(2018-01-24 01:02:18 UTC),
            expired: true,
            devices: 39,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 3,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "sentry-cli-ipa.ipa",
        size: 24_735,
        app_path: "Payload/DemoApp.app",
        bundle_id: "com.emerge.DemoApp",
        name: Some("DemoApp"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("18.5"),
        executable: Some("DemoApp"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::AdHoc,
            name: Some("iOS Team Ad Hoc Provisioning Profile: com.emerge.DemoApp"),
            uuid: Some("f79bfc9e-6608-4988-a9b7-d12592f25aca"),
            team_id: Some("62J2XHNK9T"),
            team_name: Some("Emerge Tools, Inc."),
            app_id: Some("62J2XHNK9T.com.emerge.DemoApp"),
            app_id_name: Some("XC com emerge DemoApp"),
            created_at: datetime!(2025-07-15 20:40:25 UTC),
            expires_at: datetime!(2026-07-10 16:40:44 UTC),
            // Valid until July 2026, so expired at NOW.
            expired: true,
            devices: 93,
            provisions_all_devices: false,
            get_task_allow: false,
            // [iOS, xrOS, visionOS]: xrOS and visionOS are one platform.
            platforms: IOS_VISION,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 4,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "sentry-cli-ipa_with_asset.ipa",
        size: 855_448,
        app_path: "Payload/DemoApp.app",
        bundle_id: "com.emerge.DemoApp",
        name: Some("DemoApp"),
        version: Some("1.0"),
        build: Some("1"),
        min_os: Some("15.0"),
        executable: Some("DemoApp"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        icon: Some(("Payload/DemoApp.app/AppIcon76x76@2x~ipad.png", 152, 152, true)),
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("iOS Team Provisioning Profile: *"),
            uuid: Some("64659d94-f274-4f92-b47e-c8e9811acecd"),
            team_id: Some("62J2XHNK9T"),
            team_name: Some("Emerge Tools, Inc."),
            app_id: Some("62J2XHNK9T.*"),
            app_id_name: Some("XC Wildcard"),
            created_at: datetime!(2025-07-30 19:28:33 UTC),
            expires_at: datetime!(2026-07-30 19:28:33 UTC),
            expired: true,
            devices: 95,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS_VISION,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 12,
        }),
        // Frameworks/ are not extensions.
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "shipmate-Go Tomato iPad only.ipa",
        size: 1_909_355,
        app_path: "Payload/Go Tomato.app",
        bundle_id: "com.mecklem.Go-Tomato",
        name: Some("Go Tomato"),
        version: Some("1.0"),
        build: Some("2014.0.46"),
        min_os: Some("7.0"),
        executable: Some("Go Tomato"),
        platform: Platform::Ios,
        families: IPAD,
        // Names carry no size: the larger file, Icon@2x.png (57 pt @2x), wins over Icon.png.
        icon: Some(("Payload/Go Tomato.app/Icon@2x.png", 114, 114, true)),
        profile: Some(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("iOS Team Provisioning Profile: *"),
            uuid: Some("7C35BE3A-34FE-4342-AD05-D3FF9B2EBBF6"),
            team_id: Some("NPDJNN4PJX"),
            team_name: Some("Timothy Mecklem"),
            app_id: Some("NPDJNN4PJX.*"),
            app_id_name: Some("Xcode iOS Wildcard App ID"),
            created_at: datetime!(2014-02-25 16:41:02 UTC),
            expires_at: datetime!(2015-02-25 16:41:02 UTC),
            expired: true,
            devices: 12,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: NO_PLATFORM,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 1,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "shipmate-Go-Tomato-Ad-Hoc-27.ipa",
        size: 1_945_459,
        app_path: "Payload/Go Tomato.app",
        bundle_id: "com.mecklem.Go-Tomato",
        name: Some("Go Tomato"),
        version: Some("1.0"),
        build: Some("1.0.27"),
        min_os: Some("6.1"),
        executable: Some("Go Tomato"),
        platform: Platform::Ios,
        families: IPHONE,
        icon: Some(("Payload/Go Tomato.app/Icon@2x.png", 114, 114, true)),
        profile: Some(ExpectedProfile {
            kind: ProfileKind::AdHoc,
            name: Some("Go Tomato Ad Hoc Distribution"),
            uuid: Some("7D810DF2-E48F-42A5-A5EF-C075C3C6E6D7"),
            team_id: Some("NPDJNN4PJX"),
            team_name: Some("Timothy Mecklem"),
            app_id: Some("NPDJNN4PJX.com.mecklem.Go-Tomato"),
            app_id_name: Some("Go Tomato"),
            created_at: datetime!(2013-07-01 14:52:50 UTC),
            expires_at: datetime!(2014-05-05 14:52:50 UTC),
            expired: true,
            devices: 10,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: NO_PLATFORM,
            aps_environment: Some("production"),
            signature: SignatureState::Valid,
            certificates: 1,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
    ExpectedIpa {
        file: "shipmate-Tribes-101.ipa",
        size: 683_449,
        app_path: "Payload/Tribes.app",
        bundle_id: "com.mecklem.tribes",
        name: Some("Tribes"),
        // No CFBundleShortVersionString.
        version: None,
        build: Some("2.0.101"),
        min_os: Some("6.1"),
        executable: Some("Tribes"),
        platform: Platform::Ios,
        families: UNIVERSAL,
        icon: None,
        profile: Some(ExpectedProfile {
            kind: ProfileKind::AdHoc,
            name: Some("Tribes Ad Hoc"),
            uuid: Some("70010897-FFE7-4D57-A413-1994EC58EDC8"),
            team_id: Some("NPDJNN4PJX"),
            team_name: Some("Timothy Mecklem"),
            app_id: Some("NPDJNN4PJX.com.mecklem.tribes"),
            app_id_name: Some("Tribes"),
            created_at: datetime!(2013-05-06 00:07:10 UTC),
            expires_at: datetime!(2014-05-05 00:07:10 UTC),
            expired: true,
            devices: 5,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: NO_PLATFORM,
            aps_environment: Some("production"),
            signature: SignatureState::Valid,
            certificates: 1,
        }),
        extensions: &[],
        problems: EXPIRED,
        warnings: NONE,
    },
];

// ---------------------------------------------------------------------------------------------
// mobileprovision/
// ---------------------------------------------------------------------------------------------

/// The synthetic icyleaf profile: bare bplist, bare XML and CMS-wrapped variants share it.
const fn icyleaf_synthetic(signature: SignatureState) -> ExpectedProfile {
    ExpectedProfile {
        kind: ProfileKind::Enterprise,
        name: Some("com.icyleaf.ios"),
        uuid: Some("12345678-5af4-4b93-b7e1-ca71e35562e1"),
        team_id: Some("1234567890"),
        team_name: Some("icyleaf"),
        app_id: Some("1234567890.com.icyleaf.ios"),
        app_id_name: Some("ios"),
        created_at: datetime!(2019-06-20 11:47:07 UTC),
        expires_at: datetime!(2020-06-19 11:47:07 UTC),
        expired: true,
        devices: 0,
        provisions_all_devices: true,
        get_task_allow: false,
        platforms: IOS,
        aps_environment: Some("production"),
        signature,
        // SOURCES.md counts 1 DeveloperCertificates entry, but it is a sanitised blob
        // ("SampleDCC..."), not a certificate.
        certificates: 0,
    }
}

/// The WKR87TTKML "Full" profiles of icyleaf/app-info differ in a few fields.
#[expect(clippy::too_many_arguments)]
const fn niceliving(
    kind: ProfileKind,
    name: &'static str,
    uuid: &'static str,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    devices: usize,
    get_task_allow: bool,
    platforms: &'static [&'static str],
    aps_environment: Option<&'static str>,
) -> ExpectedProfile {
    ExpectedProfile {
        kind,
        name: Some(name),
        uuid: Some(uuid),
        team_id: Some("WKR87TTKML"),
        team_name: Some("Niceliving (Beijing) Technology Co., Ltd."),
        app_id: Some("WKR87TTKML.com.icyleaf.appinfo.test"),
        app_id_name: Some("test by wangshen"),
        created_at,
        expires_at,
        expired: true,
        devices,
        provisions_all_devices: false,
        get_task_allow,
        platforms,
        aps_environment,
        signature: SignatureState::Valid,
        certificates: 1,
    }
}

const PROFILES: &[ExpectedProfileFile] = &[
    ExpectedProfileFile {
        file: "PyMobileProvision-sw-src.mobileprovision",
        outcome: ProfileOutcome::Read(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("iOS Team Provisioning Profile: xyz.shede333.testFirst"),
            uuid: Some("5e3f9cc7-59d2-4cef-902b-97ba409e5874"),
            team_id: Some("RR23U62KET"),
            team_name: Some("ShaoWei Wang"),
            app_id: Some("RR23U62KET.xyz.shede333.testFirst"),
            app_id_name: Some("XC xyz shede333 testFirst"),
            created_at: datetime!(2019-11-19 09:27:50 UTC),
            expires_at: datetime!(2019-11-26 09:27:50 UTC),
            expired: true,
            devices: 1,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 2,
        }),
    },
    ExpectedProfileFile {
        file: "app-info-NotificationService-appex-embedded.mobileprovision",
        outcome: ProfileOutcome::Read(ExpectedProfile {
            kind: ProfileKind::AdHoc,
            name: Some("match AdHoc com.haohaozhu.shaijia.NotificationService"),
            uuid: Some("5e4d4106-8f31-436b-92ed-d4ec68f80e4f"),
            team_id: Some("WKR87TTKML"),
            team_name: Some("Niceliving (Beijing) Technology Co., Ltd."),
            app_id: Some("WKR87TTKML.com.haohaozhu.shaijia.NotificationService"),
            app_id_name: Some("shaijia NotificationService"),
            created_at: datetime!(2020-12-28 10:07:31 UTC),
            expires_at: datetime!(2021-10-26 03:12:17 UTC),
            expired: true,
            devices: 90,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: IOS,
            aps_environment: Some("production"),
            signature: SignatureState::Valid,
            certificates: 1,
        }),
    },
    ExpectedProfileFile {
        // A bare binary plist: not signed at all.
        file: "app-info-bplist.mobileprovision",
        outcome: ProfileOutcome::Read(icyleaf_synthetic(SignatureState::None)),
    },
    ExpectedProfileFile {
        file: "app-info-invalid_empty.mobileprovision",
        outcome: ProfileOutcome::Error("profile-malformed"),
    },
    ExpectedProfileFile {
        // Only `<?xml ...?>`: a property list that ends before its root object.
        file: "app-info-invalid_missing_plist_block.mobileprovision",
        outcome: ProfileOutcome::Error("plist-malformed"),
    },
    ExpectedProfileFile {
        // XML declaration, DOCTYPE and `<plist version="1.0">`, then nothing.
        file: "app-info-invalid_missing_plist_tag.mobileprovision",
        outcome: ProfileOutcome::Error("plist-malformed"),
    },
    ExpectedProfileFile {
        file: "app-info-ios_adhoc.mobileprovision",
        outcome: ProfileOutcome::Read(niceliving(
            ProfileKind::AdHoc,
            "iOS Full AdHoc",
            "7d02c76e-f937-40e9-bdac-a5a389612352",
            datetime!(2020-07-21 08:44:54 UTC),
            datetime!(2020-10-24 08:40:28 UTC),
            1,
            false,
            IOS,
            Some("production"),
        )),
    },
    ExpectedProfileFile {
        file: "app-info-ios_appstore.mobileprovision",
        outcome: ProfileOutcome::Read(niceliving(
            ProfileKind::AppStore,
            "iOS Full AppStore",
            "cff15ed3-7c89-4c6d-b6fd-0a9c57675a14",
            datetime!(2020-07-21 08:45:25 UTC),
            datetime!(2020-10-24 08:40:28 UTC),
            0,
            false,
            IOS,
            Some("production"),
        )),
    },
    ExpectedProfileFile {
        file: "app-info-ios_development.mobileprovision",
        outcome: ProfileOutcome::Read(niceliving(
            ProfileKind::Development,
            "iOS Full Development",
            "9b42a96b-b520-40ef-9748-eee6e7c40f0b",
            datetime!(2020-07-21 08:43:27 UTC),
            datetime!(2021-07-21 08:43:27 UTC),
            1,
            true,
            IOS,
            Some("development"),
        )),
    },
    ExpectedProfileFile {
        // macOS: the application identifier is under com.apple.application-identifier, and the
        // push entitlement is com.apple.developer.aps-environment, which is read as aps_environment.
        file: "app-info-macos_appstore.provisionprofile",
        outcome: ProfileOutcome::Read(niceliving(
            ProfileKind::AppStore,
            "macOS Full appstore",
            "c74f4e8b-c078-4ec2-84de-ab31755eea53",
            datetime!(2020-07-21 08:46:19 UTC),
            datetime!(2020-10-24 08:40:28 UTC),
            0,
            false,
            MACOS,
            Some("production"),
        )),
    },
    ExpectedProfileFile {
        // SOURCES.md's heuristic says "ad-hoc" (devices, no get-task-allow) and its own note says
        // that is a trap: macOS has no ad-hoc distribution, a device list means development.
        file: "app-info-macos_development.provisionprofile",
        outcome: ProfileOutcome::Read(niceliving(
            ProfileKind::Development,
            "macOS Full development",
            "6768abe5-58b6-4d6f-8427-b8271e0b2655",
            datetime!(2020-07-21 08:44:02 UTC),
            datetime!(2021-07-21 08:44:02 UTC),
            1,
            false,
            MACOS,
            Some("development"),
        )),
    },
    ExpectedProfileFile {
        // A bare XML plist whose DeveloperCertificates <data> is not valid base64 (1953
        // characters). Apple's CFPropertyList decodes <data> leniently (it skips characters
        // outside the alphabet and drops a trailing partial group), so Apple's tools read this
        // profile; so should the reader: the fields that matter are intact.
        file: "app-info-plist.mobileprovision",
        outcome: ProfileOutcome::Read(icyleaf_synthetic(SignatureState::None)),
    },
    ExpectedProfileFile {
        file: "app-info-profile.mobileprovision",
        outcome: ProfileOutcome::Read(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("iOS Team Provisioning Profile: com.icyleaf.iOS"),
            uuid: Some("5a7e37d2-052c-40f1-bf02-f493f28f2e3e"),
            team_id: Some("KJSWUGJ39S"),
            team_name: Some("Shen Wang"),
            app_id: Some("KJSWUGJ39S.com.icyleaf.iOS"),
            app_id_name: Some("XC com icyleaf iOS"),
            created_at: datetime!(2019-09-16 08:11:28 UTC),
            expires_at: datetime!(2019-09-23 08:11:28 UTC),
            expired: true,
            devices: 1,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 2,
        }),
    },
    ExpectedProfileFile {
        // A real CMS envelope whose digest matches, around the same plist with invalid base64.
        file: "app-info-signed_plist.mobileprovision",
        outcome: ProfileOutcome::Read(icyleaf_synthetic(SignatureState::Valid)),
    },
    ExpectedProfileFile {
        file: "fastlane-AppStore_net.sunapps.9.watch.mobileprovision",
        outcome: ProfileOutcome::Read(ExpectedProfile {
            kind: ProfileKind::AppStore,
            name: Some("net.sunapps.9.watch AppStore"),
            uuid: Some("a287f946-0c82-434d-b034-d59682b15a42"),
            team_id: Some("5A997XSHK2"),
            team_name: Some("SunApps GmbH"),
            app_id: Some("5A997XSHK2.net.sunapps.9.watch"),
            app_id_name: Some("9 Test Watch"),
            created_at: datetime!(2015-08-11 17:37:28 UTC),
            expires_at: datetime!(2015-11-25 22:45:50 UTC),
            expired: true,
            devices: 0,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 1,
        }),
    },
    ExpectedProfileFile {
        file: "fastlane-AppStore_tools.fastlane.app.mobileprovision",
        outcome: ProfileOutcome::Read(ExpectedProfile {
            kind: ProfileKind::AppStore,
            name: Some("match AppStore tools.fastlane.app 1449198835"),
            uuid: Some("736590c3-dfe8-4c25-b2eb-2404b8e65fb8"),
            team_id: Some("439BBM9367"),
            team_name: Some("Felix Krause"),
            app_id: Some("439BBM9367.tools.fastlane.app"),
            app_id_name: Some("fastlane test app"),
            created_at: datetime!(2015-12-04 03:13:56 UTC),
            expires_at: datetime!(2016-12-03 03:02:08 UTC),
            expired: true,
            devices: 0,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: IOS,
            aps_environment: None,
            signature: SignatureState::Valid,
            certificates: 1,
        }),
    },
    ExpectedProfileFile {
        file: "fastlane-Fastlane_PR_Unit_Tests.mobileprovision",
        outcome: ProfileOutcome::Read(ExpectedProfile {
            kind: ProfileKind::AppStore,
            name: Some("Fastlane PR Unit Tests"),
            uuid: Some("c3e20987-ffea-4d11-b037-e8bf0a102561"),
            team_id: Some("VQVYM88YJ2"),
            team_name: Some("Jigx, Inc"),
            app_id: Some("VQVYM88YJ2.com.jigx.test.ios"),
            app_id_name: Some("Jigx Test"),
            created_at: datetime!(2023-06-29 15:40:09 UTC),
            expires_at: datetime!(2024-06-28 15:21:31 UTC),
            expired: true,
            devices: 0,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: IOS_VISION,
            aps_environment: Some("production"),
            signature: SignatureState::Valid,
            certificates: 1,
        }),
    },
    ExpectedProfileFile {
        // Bare XML without `<?xml ...?>` (starts with <!DOCTYPE), redacted certificate.
        file: "fastlane-downloaded_provisioning_profile.mobileprovision",
        outcome: ProfileOutcome::Read(ExpectedProfile {
            kind: ProfileKind::AppStore,
            name: Some("App Name"),
            uuid: Some("REDACRED"),
            team_id: Some("5A997XSHK2"),
            team_name: Some("SunApps GmbH"),
            app_id: Some("5A997XSHK2.net.sunapps.9"),
            app_id_name: Some("SunApp Setup"),
            created_at: datetime!(2015-02-21 15:57:07 UTC),
            expires_at: datetime!(2016-02-10 23:44:20 UTC),
            expired: true,
            devices: 0,
            provisions_all_devices: false,
            get_task_allow: false,
            platforms: NO_PLATFORM,
            aps_environment: Some("production"),
            signature: SignatureState::None,
            // <data>REDACTED</data> decodes, but is not a certificate.
            certificates: 0,
        }),
    },
    ExpectedProfileFile {
        file: "fastlane-jigx_test_development.mobileprovision",
        outcome: ProfileOutcome::Read(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("jigx test development"),
            uuid: Some("a7b42b59-2c16-4124-a0f2-0f28d00ad7ce"),
            team_id: Some("VQVYM88YJ2"),
            team_name: Some("Jigx, Inc"),
            app_id: Some("VQVYM88YJ2.com.jigx.test.ios"),
            app_id_name: Some("Jigx Test"),
            created_at: datetime!(2023-06-30 13:20:39 UTC),
            expires_at: datetime!(2024-06-29 13:20:39 UTC),
            expired: true,
            devices: 1,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS_VISION,
            aps_environment: Some("development"),
            signature: SignatureState::Valid,
            certificates: 1,
        }),
    },
    ExpectedProfileFile {
        file: "fastlane-test.mobileprovision",
        outcome: ProfileOutcome::Read(fastlane_test(IOS, SignatureState::Valid)),
    },
    ExpectedProfileFile {
        // The same profile with Platform edited to OSX without re-signing: digest mismatch.
        file: "fastlane-test.provisionprofile",
        outcome: ProfileOutcome::Read(fastlane_test(MACOS, SignatureState::Invalid)),
    },
    ExpectedProfileFile {
        file: "isign-test.mobileprovision",
        outcome: ProfileOutcome::Read(ExpectedProfile {
            kind: ProfileKind::Development,
            name: Some("RDC-Dev"),
            uuid: Some("f4d8aa37-45a7-4304-960c-1291e1a5a0f3"),
            team_id: Some("ISIGNTESTS"),
            team_name: Some("ISIGN OPEN SOURCE"),
            app_id: Some("ISIGNTESTS.*"),
            app_id_name: Some("isign tests"),
            created_at: datetime!(2016-11-28 22:57:49 UTC),
            expires_at: datetime!(2017-11-28 22:57:49 UTC),
            expired: true,
            devices: 2,
            provisions_all_devices: false,
            get_task_allow: true,
            platforms: IOS,
            aps_environment: None,
            // Signed by a self-made test certificate, but the content digest matches.
            signature: SignatureState::Valid,
            certificates: 1,
        }),
    },
];

const fn fastlane_test(platforms: &'static [&'static str], signature: SignatureState) -> ExpectedProfile {
    ExpectedProfile {
        kind: ProfileKind::AppStore,
        name: Some("tools.fastlane.app AppStore"),
        uuid: Some("98264c6b-5151-4349-8d0f-66691e48ae35"),
        team_id: Some("439BBM9367"),
        team_name: Some("Felix Krause"),
        app_id: Some("439BBM9367.tools.fastlane.app"),
        app_id_name: Some("fastlane test app"),
        created_at: datetime!(2015-11-08 21:09:03 UTC),
        expires_at: datetime!(2016-11-07 20:58:52 UTC),
        expired: true,
        devices: 0,
        provisions_all_devices: false,
        get_task_allow: false,
        platforms,
        aps_environment: None,
        signature,
        certificates: 1,
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

fn options() -> InspectOptions {
    InspectOptions { limits: Limits::default(), now: NOW }
}

fn path(dir: &str, file: &str) -> String {
    format!("{FIXTURES}{dir}/{file}")
}

fn check_profile(context: &str, actual: &Profile, expected: &ExpectedProfile) {
    assert_eq!(actual.kind, expected.kind, "{context}: kind");
    assert_eq!(actual.name.as_deref(), expected.name, "{context}: name");
    assert_eq!(actual.uuid.as_deref(), expected.uuid, "{context}: uuid");
    assert_eq!(actual.team_id.as_deref(), expected.team_id, "{context}: team_id");
    assert_eq!(actual.team_name.as_deref(), expected.team_name, "{context}: team_name");
    assert_eq!(actual.app_id.as_deref(), expected.app_id, "{context}: app_id");
    assert_eq!(actual.app_id_name.as_deref(), expected.app_id_name, "{context}: app_id_name");
    assert_eq!(actual.created_at, Some(expected.created_at), "{context}: created_at");
    assert_eq!(actual.expires_at, Some(expected.expires_at), "{context}: expires_at");
    assert_eq!(actual.expired, expected.expired, "{context}: expired");
    assert_eq!(actual.devices.len(), expected.devices, "{context}: device count");
    assert_eq!(actual.provisions_all_devices, expected.provisions_all_devices, "{context}: provisions_all_devices");
    assert_eq!(actual.get_task_allow, expected.get_task_allow, "{context}: get_task_allow");
    assert_eq!(actual.platforms, expected.platforms, "{context}: platforms");
    assert_eq!(actual.aps_environment.as_deref(), expected.aps_environment, "{context}: aps_environment");
    assert_eq!(actual.signature, expected.signature, "{context}: signature");
    assert_eq!(actual.certificates.len(), expected.certificates, "{context}: certificates");
}

fn codes<'a>(findings: impl IntoIterator<Item = &'a otaship_ipa::Finding>) -> BTreeSet<&'static str> {
    findings.into_iter().map(|finding| finding.code).collect()
}

fn set(codes: &[&'static str]) -> BTreeSet<&'static str> {
    codes.iter().copied().collect()
}

fn check_ipa(file: &str) {
    let expected =
        IPAS.iter().find(|expected| expected.file == file).unwrap_or_else(|| panic!("no expectation for ipa/{file}"));
    let source = FileSource::new(std::fs::File::open(path("ipa", file)).expect("open fixture")).expect("read fixture");
    let report = match inspect_ipa(&source, &options()) {
        Ok(inspection) => inspection.report,
        Err(error) => panic!("{file}: inspect failed with {}: {error}", error.code()),
    };

    assert_eq!(report.size, expected.size, "{file}: size");
    assert_eq!(report.app_path, expected.app_path, "{file}: app_path");
    assert_eq!(report.bundle_id, expected.bundle_id, "{file}: bundle_id");
    assert_eq!(report.name.as_deref(), expected.name, "{file}: name");
    assert_eq!(report.version.as_deref(), expected.version, "{file}: version");
    assert_eq!(report.build.as_deref(), expected.build, "{file}: build");
    assert_eq!(report.min_os.as_deref(), expected.min_os, "{file}: min_os");
    assert_eq!(report.executable.as_deref(), expected.executable, "{file}: executable");
    assert_eq!(report.platform, expected.platform, "{file}: platform");
    assert_eq!(report.device_families, expected.families, "{file}: device_families");

    let icon = report.icon.as_ref().map(|icon| (icon.entry.as_str(), icon.width, icon.height, icon.crushed));
    assert_eq!(icon, expected.icon, "{file}: icon (entry, width, height, crushed)");

    match (&report.profile, &expected.profile) {
        (Some(actual), Some(wanted)) => check_profile(&format!("{file} embedded profile"), actual, wanted),
        (None, None) => {}
        (actual, _) => {
            panic!("{file}: embedded profile present = {}, expected {}", actual.is_some(), expected.profile.is_some())
        }
    }

    assert_eq!(
        report.extensions.len(),
        expected.extensions.len(),
        "{file}: extensions {:?}",
        report.extensions.iter().map(|extension| &extension.path).collect::<Vec<_>>()
    );
    for (actual, wanted) in report.extensions.iter().zip(expected.extensions) {
        let context = format!("{file} extension {}", wanted.path);
        assert_eq!(actual.path, wanted.path, "{context}: path");
        assert_eq!(actual.bundle_id, wanted.bundle_id, "{context}: bundle_id");
        assert_eq!(actual.kind, wanted.kind, "{context}: kind");
        match (&actual.profile, &wanted.profile) {
            (Some(actual), Some(wanted)) => check_profile(&format!("{context} profile"), actual, wanted),
            (None, None) => {}
            (actual, _) => panic!("{context}: profile present = {}", actual.is_some()),
        }
        let problems =
            codes(report.installable.problems.iter().filter(|finding| finding.bundle.as_deref() == Some(wanted.path)));
        assert_eq!(problems, set(wanted.problems), "{context}: problems");
    }

    let main_problems = codes(report.installable.problems.iter().filter(|finding| finding.bundle.is_none()));
    assert_eq!(main_problems, set(expected.problems), "{file}: problems {:#?}", report.installable.problems);
    let all_problems = codes(&report.installable.problems);
    let expected_all: BTreeSet<&str> = expected
        .problems
        .iter()
        .chain(expected.extensions.iter().flat_map(|extension| extension.problems))
        .copied()
        .collect();
    assert_eq!(all_problems, expected_all, "{file}: every problem");
    assert_eq!(report.installable.ok, report.installable.problems.is_empty(), "{file}: ok agrees with problems");
    assert_eq!(
        codes(&report.installable.warnings),
        set(expected.warnings),
        "{file}: warnings {:#?}",
        report.installable.warnings
    );
}

fn check_ipa_error(file: &str) {
    let (_, code) =
        IPA_ERRORS.iter().find(|(name, _)| *name == file).unwrap_or_else(|| panic!("no expected error for ipa/{file}"));
    let source = FileSource::new(std::fs::File::open(path("ipa", file)).expect("open fixture")).expect("read fixture");
    match inspect_ipa(&source, &options()) {
        Ok(inspection) => panic!("{file}: expected error {code}, got a report for {}", inspection.report.bundle_id),
        Err(error) => assert_eq!(error.code(), *code, "{file}: error code ({error})"),
    }
}

fn check_profile_file(file: &str) {
    let expected = PROFILES
        .iter()
        .find(|expected| expected.file == file)
        .unwrap_or_else(|| panic!("no expectation for mobileprovision/{file}"));
    let bytes = std::fs::read(path("mobileprovision", file)).expect("read fixture");
    let result = read_profile(&bytes, &Limits::default(), NOW, file);
    match (&expected.outcome, result) {
        (ProfileOutcome::Read(wanted), Ok(profile)) => check_profile(file, &profile, wanted),
        (ProfileOutcome::Read(_), Err(error)) => {
            panic!("{file}: expected a profile, got {}: {error}", error.code())
        }
        (ProfileOutcome::Error(code), Ok(profile)) => {
            panic!("{file}: expected error {code}, got a profile named {:?}", profile.name)
        }
        (ProfileOutcome::Error(code), Err(error)) => {
            assert_eq!(error.code(), *code, "{file}: error code ({error})")
        }
    }
}

macro_rules! ipa_tests {
    ($($test:ident => $file:literal,)*) => {
        $(#[test]
        fn $test() {
            check_ipa($file);
        })*
    };
}

macro_rules! ipa_error_tests {
    ($($test:ident => $file:literal,)*) => {
        $(#[test]
        fn $test() {
            check_ipa_error($file);
        })*
    };
}

macro_rules! profile_tests {
    ($($test:ident => $file:literal,)*) => {
        $(#[test]
        fn $test() {
            check_profile_file($file);
        })*
    };
}

ipa_tests! {
    ipa_ipaparser_example => "IPAParser-Example.ipa",
    ipa_app_info_embedded => "app-info-embedded.ipa",
    ipa_app_info_ipad => "app-info-ipad.ipa",
    ipa_app_info_iphone => "app-info-iphone.ipa",
    ipa_app_metadata_valid_adhoc => "app-metadata-valid_adhoc.ipa",
    ipa_bitrise_ios_simple_objc => "bitrise-ipa_analyzer-ios-simple-objc.ipa",
    ipa_fastlane_deliver_example1 => "fastlane-deliver-Example1.ipa",
    ipa_fastlane_gym_cocoapods => "fastlane-gym-cocoapods-ExampleProductName.ipa",
    ipa_fastlane_very_capable_app => "fastlane-very capable app.ipa",
    ipa_ipa_server => "ipa-server-ipa.ipa",
    ipa_lagunitas_sample => "lagunitas-Sample.ipa",
    ipa_pliney_test => "pliney-test.ipa",
    ipa_run_loop_calsmoke => "run_loop-CalSmoke.ipa",
    ipa_sentry_cli_ipa => "sentry-cli-ipa.ipa",
    ipa_sentry_cli_ipa_with_asset => "sentry-cli-ipa_with_asset.ipa",
    ipa_shipmate_go_tomato_ipad_only => "shipmate-Go Tomato iPad only.ipa",
    ipa_shipmate_go_tomato_ad_hoc_27 => "shipmate-Go-Tomato-Ad-Hoc-27.ipa",
    ipa_shipmate_tribes_101 => "shipmate-Tribes-101.ipa",
}

ipa_error_tests! {
    ipa_error_ipaparser_flat => "IPAParser-Flat.ipa",
    ipa_error_fastlane_contains_watch_app => "fastlane-ContainsWatchApp.ipa",
    ipa_error_fastlane_no_app_bundle => "fastlane-no-app-bundle.ipa",
    ipa_error_fastlane_not_an_ipa => "fastlane-not-an-ipa.ipa",
    ipa_error_isign_not_an_app => "isign-NotAnApp.ipa",
}

profile_tests! {
    profile_pymobileprovision_sw_src => "PyMobileProvision-sw-src.mobileprovision",
    profile_app_info_notification_service => "app-info-NotificationService-appex-embedded.mobileprovision",
    profile_app_info_bplist => "app-info-bplist.mobileprovision",
    profile_app_info_invalid_empty => "app-info-invalid_empty.mobileprovision",
    profile_app_info_invalid_missing_plist_block => "app-info-invalid_missing_plist_block.mobileprovision",
    profile_app_info_invalid_missing_plist_tag => "app-info-invalid_missing_plist_tag.mobileprovision",
    profile_app_info_ios_adhoc => "app-info-ios_adhoc.mobileprovision",
    profile_app_info_ios_appstore => "app-info-ios_appstore.mobileprovision",
    profile_app_info_ios_development => "app-info-ios_development.mobileprovision",
    profile_app_info_macos_appstore => "app-info-macos_appstore.provisionprofile",
    profile_app_info_macos_development => "app-info-macos_development.provisionprofile",
    profile_app_info_plist => "app-info-plist.mobileprovision",
    profile_app_info_profile => "app-info-profile.mobileprovision",
    profile_app_info_signed_plist => "app-info-signed_plist.mobileprovision",
    profile_fastlane_appstore_sunapps_watch => "fastlane-AppStore_net.sunapps.9.watch.mobileprovision",
    profile_fastlane_appstore_tools_fastlane_app => "fastlane-AppStore_tools.fastlane.app.mobileprovision",
    profile_fastlane_pr_unit_tests => "fastlane-Fastlane_PR_Unit_Tests.mobileprovision",
    profile_fastlane_downloaded => "fastlane-downloaded_provisioning_profile.mobileprovision",
    profile_fastlane_jigx_test_development => "fastlane-jigx_test_development.mobileprovision",
    profile_fastlane_test_mobileprovision => "fastlane-test.mobileprovision",
    profile_fastlane_test_provisionprofile => "fastlane-test.provisionprofile",
    profile_isign_test => "isign-test.mobileprovision",
}

fn listed(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(format!("{FIXTURES}{dir}"))
        .expect("list fixtures")
        .map(|entry| entry.expect("directory entry").file_name().into_string().expect("UTF-8 name"))
        .collect()
}

#[test]
fn every_fixture_has_an_expectation() {
    let ipas: BTreeSet<String> = IPAS
        .iter()
        .map(|expected| expected.file)
        .chain(IPA_ERRORS.iter().map(|(file, _)| *file))
        .map(str::to_owned)
        .collect();
    assert_eq!(ipas.len(), IPAS.len() + IPA_ERRORS.len(), "an ipa is listed twice");
    assert_eq!(listed("ipa"), ipas, "ipa/ and the expectations differ");

    let profiles: BTreeSet<String> = PROFILES.iter().map(|expected| expected.file.to_owned()).collect();
    assert_eq!(profiles.len(), PROFILES.len(), "a profile is listed twice");
    assert_eq!(listed("mobileprovision"), profiles, "mobileprovision/ and the expectations differ");
}

/// Every file named in a table also has its own `#[test]` (the macros above), so that a
/// failure names the file; this keeps the two in step.
#[test]
fn every_expectation_has_a_test() {
    let source = include_str!("fixtures.rs");
    for file in IPAS
        .iter()
        .map(|expected| expected.file)
        .chain(IPA_ERRORS.iter().map(|(file, _)| *file))
        .chain(PROFILES.iter().map(|expected| expected.file))
    {
        assert!(source.contains(&format!("=> \"{file}\",")), "{file} has an expectation but no #[test]");
    }
}
