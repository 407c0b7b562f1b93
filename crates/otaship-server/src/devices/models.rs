//! Turning what a device reports in Apple's Profile Service reply into words people know.
//!
//! An enrolling device sends its `PRODUCT` (a hardware identifier such as `iPhone15,2`) and its
//! `VERSION` (an OS build number such as `22A3354`). Neither means much to a person, so this
//! module maps identifiers to marketing names and families, and build numbers to an iOS/iPadOS
//! version. All lookups are pure and offline; anything unknown yields `None` so that callers
//! fall back to showing the raw value instead of a guess.

use std::fmt;

/// The marketing name of an Apple product identifier as devices report it in `PRODUCT`,
/// e.g. `"iPhone15,2"` -> `Some("iPhone 14 Pro")`,
/// `"iPad13,4"` -> `Some("iPad Pro 11-inch (3rd generation)")`.
///
/// The match is exact and case-sensitive (as Apple writes identifiers) after trimming
/// whitespace. `None` for an identifier not in the table; callers then show the identifier
/// itself. Names follow Apple's own "Identify your iPhone/iPad model" wording; entries that
/// could not be stated with certainty are left out rather than guessed.
pub fn marketing_name(product: &str) -> Option<&'static str> {
    let name = match product.trim() {
        // iPhone
        "iPhone1,1" => "iPhone",
        "iPhone1,2" => "iPhone 3G",
        "iPhone2,1" => "iPhone 3GS",
        "iPhone3,1" | "iPhone3,2" | "iPhone3,3" => "iPhone 4",
        "iPhone4,1" => "iPhone 4S",
        "iPhone5,1" | "iPhone5,2" => "iPhone 5",
        "iPhone5,3" | "iPhone5,4" => "iPhone 5c",
        "iPhone6,1" | "iPhone6,2" => "iPhone 5s",
        "iPhone7,1" => "iPhone 6 Plus",
        "iPhone7,2" => "iPhone 6",
        "iPhone8,1" => "iPhone 6s",
        "iPhone8,2" => "iPhone 6s Plus",
        "iPhone8,4" => "iPhone SE (1st generation)",
        "iPhone9,1" | "iPhone9,3" => "iPhone 7",
        "iPhone9,2" | "iPhone9,4" => "iPhone 7 Plus",
        "iPhone10,1" | "iPhone10,4" => "iPhone 8",
        "iPhone10,2" | "iPhone10,5" => "iPhone 8 Plus",
        "iPhone10,3" | "iPhone10,6" => "iPhone X",
        "iPhone11,2" => "iPhone XS",
        "iPhone11,4" | "iPhone11,6" => "iPhone XS Max",
        "iPhone11,8" => "iPhone XR",
        "iPhone12,1" => "iPhone 11",
        "iPhone12,3" => "iPhone 11 Pro",
        "iPhone12,5" => "iPhone 11 Pro Max",
        "iPhone12,8" => "iPhone SE (2nd generation)",
        "iPhone13,1" => "iPhone 12 mini",
        "iPhone13,2" => "iPhone 12",
        "iPhone13,3" => "iPhone 12 Pro",
        "iPhone13,4" => "iPhone 12 Pro Max",
        "iPhone14,2" => "iPhone 13 Pro",
        "iPhone14,3" => "iPhone 13 Pro Max",
        "iPhone14,4" => "iPhone 13 mini",
        "iPhone14,5" => "iPhone 13",
        "iPhone14,6" => "iPhone SE (3rd generation)",
        "iPhone14,7" => "iPhone 14",
        "iPhone14,8" => "iPhone 14 Plus",
        "iPhone15,2" => "iPhone 14 Pro",
        "iPhone15,3" => "iPhone 14 Pro Max",
        "iPhone15,4" => "iPhone 15",
        "iPhone15,5" => "iPhone 15 Plus",
        "iPhone16,1" => "iPhone 15 Pro",
        "iPhone16,2" => "iPhone 15 Pro Max",
        "iPhone17,1" => "iPhone 16 Pro",
        "iPhone17,2" => "iPhone 16 Pro Max",
        "iPhone17,3" => "iPhone 16",
        "iPhone17,4" => "iPhone 16 Plus",
        "iPhone17,5" => "iPhone 16e",
        "iPhone18,1" => "iPhone 17 Pro",
        "iPhone18,2" => "iPhone 17 Pro Max",
        "iPhone18,3" => "iPhone 17",
        "iPhone18,4" => "iPhone Air",

        // iPod touch (iPod6,1 and iPod8,1 were never used)
        "iPod1,1" => "iPod touch",
        "iPod2,1" => "iPod touch (2nd generation)",
        "iPod3,1" => "iPod touch (3rd generation)",
        "iPod4,1" => "iPod touch (4th generation)",
        "iPod5,1" => "iPod touch (5th generation)",
        "iPod7,1" => "iPod touch (6th generation)",
        "iPod9,1" => "iPod touch (7th generation)",

        // iPad: one name covers the Wi-Fi and cellular identifiers of a model
        "iPad1,1" => "iPad",
        "iPad2,1" | "iPad2,2" | "iPad2,3" | "iPad2,4" => "iPad 2",
        "iPad2,5" | "iPad2,6" | "iPad2,7" => "iPad mini",
        "iPad3,1" | "iPad3,2" | "iPad3,3" => "iPad (3rd generation)",
        "iPad3,4" | "iPad3,5" | "iPad3,6" => "iPad (4th generation)",
        "iPad4,1" | "iPad4,2" | "iPad4,3" => "iPad Air",
        "iPad4,4" | "iPad4,5" | "iPad4,6" => "iPad mini 2",
        "iPad4,7" | "iPad4,8" | "iPad4,9" => "iPad mini 3",
        "iPad5,1" | "iPad5,2" => "iPad mini 4",
        "iPad5,3" | "iPad5,4" => "iPad Air 2",
        "iPad6,3" | "iPad6,4" => "iPad Pro (9.7-inch)",
        "iPad6,7" | "iPad6,8" => "iPad Pro (12.9-inch)",
        "iPad6,11" | "iPad6,12" => "iPad (5th generation)",
        "iPad7,1" | "iPad7,2" => "iPad Pro (12.9-inch) (2nd generation)",
        "iPad7,3" | "iPad7,4" => "iPad Pro (10.5-inch)",
        "iPad7,5" | "iPad7,6" => "iPad (6th generation)",
        "iPad7,11" | "iPad7,12" => "iPad (7th generation)",
        "iPad8,1" | "iPad8,2" | "iPad8,3" | "iPad8,4" => "iPad Pro (11-inch)",
        "iPad8,5" | "iPad8,6" | "iPad8,7" | "iPad8,8" => "iPad Pro (12.9-inch) (3rd generation)",
        "iPad8,9" | "iPad8,10" => "iPad Pro (11-inch) (2nd generation)",
        "iPad8,11" | "iPad8,12" => "iPad Pro (12.9-inch) (4th generation)",
        "iPad11,1" | "iPad11,2" => "iPad mini (5th generation)",
        "iPad11,3" | "iPad11,4" => "iPad Air (3rd generation)",
        "iPad11,6" | "iPad11,7" => "iPad (8th generation)",
        "iPad12,1" | "iPad12,2" => "iPad (9th generation)",
        "iPad13,1" | "iPad13,2" => "iPad Air (4th generation)",
        "iPad13,4" | "iPad13,5" | "iPad13,6" | "iPad13,7" => "iPad Pro 11-inch (3rd generation)",
        "iPad13,8" | "iPad13,9" | "iPad13,10" | "iPad13,11" => "iPad Pro 12.9-inch (5th generation)",
        "iPad13,16" | "iPad13,17" => "iPad Air (5th generation)",
        "iPad13,18" | "iPad13,19" => "iPad (10th generation)",
        "iPad14,1" | "iPad14,2" => "iPad mini (6th generation)",
        "iPad14,3" | "iPad14,4" => "iPad Pro 11-inch (4th generation)",
        "iPad14,5" | "iPad14,6" => "iPad Pro 12.9-inch (6th generation)",
        "iPad14,8" | "iPad14,9" => "iPad Air 11-inch (M2)",
        "iPad14,10" | "iPad14,11" => "iPad Air 13-inch (M2)",
        "iPad15,3" | "iPad15,4" => "iPad Air 11-inch (M3)",
        "iPad15,5" | "iPad15,6" => "iPad Air 13-inch (M3)",
        "iPad15,7" | "iPad15,8" => "iPad (A16)",
        "iPad16,1" | "iPad16,2" => "iPad mini (A17 Pro)",
        "iPad16,3" | "iPad16,4" => "iPad Pro 11-inch (M4)",
        "iPad16,5" | "iPad16,6" => "iPad Pro 13-inch (M4)",

        _ => return None,
    };
    Some(name)
}

/// The device family of an identifier: "iPhone", "iPad", "iPod touch", "Apple Watch",
/// "Apple TV", "Apple Vision Pro" or "Mac", from its prefix (`iPhone`, `iPad`, `iPod`,
/// `Watch`, `AppleTV`, `RealityDevice`, `Mac`, `MacBookPro`, `iMac`...); `None` when unknown.
///
/// Unlike [`marketing_name`] this also knows identifiers newer than the table, since Apple
/// keeps the prefix of a family stable. The prefix is everything before the first digit and
/// must match exactly, so that e.g. `iPadX1,1` or a bare `iPhone` is not taken for a device.
pub fn family(product: &str) -> Option<&'static str> {
    let product = product.trim();
    let digits_at = product.find(|c: char| c.is_ascii_digit())?;
    let family = match &product[..digits_at] {
        "iPhone" => "iPhone",
        "iPad" => "iPad",
        "iPod" => "iPod touch",
        "Watch" => "Apple Watch",
        "AppleTV" => "Apple TV",
        "RealityDevice" => "Apple Vision Pro",
        // Apple silicon Macs report `MacNN,N`; Intel-era Macs carried the line in the prefix.
        "Mac" | "MacBook" | "MacBookAir" | "MacBookPro" | "Macmini" | "MacPro" | "iMac" | "iMacPro" => "Mac",
        _ => return None,
    };
    Some(family)
}

/// What a build number says of the version.
///
/// The major version is exact; the minor is read from the build's letter, which Apple does
/// not tie strictly to minor releases (iOS 14.1 was `18A8395`, 14.2 was `18B92`), hence
/// [`OsVersionEstimate::minor_exact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsVersionEstimate {
    /// Major version, e.g. 18 for iOS 18.
    pub major: u32,
    /// Minor version as far as the build letter tells (A = 0, B = 1, ...).
    pub minor: u32,
    /// Whether minor is exact; false for anything derived from the build letter alone.
    pub minor_exact: bool,
}

impl fmt::Display for OsVersionEstimate {
    /// "18.4" style text; whether to qualify an inexact minor (e.g. "about") is the caller's
    /// choice, through [`OsVersionEstimate::minor_exact`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The parts of a well-formed build number: the leading train number and the letter's index.
fn parse_build(build: &str) -> Option<(u32, u32)> {
    let bytes = build.trim().as_bytes();
    // Train number: one or two digits (iOS 1 was `1A543a`; two digits last for decades).
    let train_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=2).contains(&train_len) {
        return None;
    }
    let (train, rest) = bytes.split_at(train_len);
    let (&letter, rest) = rest.split_first()?;
    if !letter.is_ascii_uppercase() {
        return None;
    }
    // Then digits (up to five, more than any release or beta has used) and, for betas and
    // special builds, one optional trailing lowercase letter (`22A5282m`).
    let rest = match rest.split_last() {
        Some((last, head)) if last.is_ascii_lowercase() => head,
        _ => rest,
    };
    if !(1..=5).contains(&rest.len()) || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let train = train.iter().fold(0u32, |n, digit| n * 10 + u32::from(digit - b'0'));
    Some((train, u32::from(letter - b'A')))
}

/// Whether `build` has the shape of an Apple OS build number (`22A3354`, `21E236`,
/// `22A5282m`): one or two digits, an uppercase letter, one to five digits and an optional
/// lowercase letter, surrounding whitespace ignored.
///
/// This checks the shape only; [`os_version_of_build`] additionally needs a train it can map.
pub fn is_plausible_build(build: &str) -> bool {
    parse_build(build).is_some()
}

/// The iOS/iPadOS version an OS build number (the `VERSION` attribute, e.g. "22A3354",
/// "21E236", "23A341") belongs to, as precisely as the build number tells: the major version
/// exactly, the minor approximately (see [`OsVersionEstimate`]).
///
/// `None` when the build is malformed or older than iOS 9 (train 13), where the train-to-major
/// rule below did not hold.
pub fn os_version_of_build(build: &str) -> Option<OsVersionEstimate> {
    let (train, letter) = parse_build(build)?;
    let major = match train {
        // Train 13 was iOS 9, ..., train 22 was iOS 18.
        13..=22 => train - 4,
        // Apple then switched to year-based versions: train 23 is iOS 26, 24 would be iOS 27.
        23.. => train + 3,
        _ => return None,
    };
    Some(OsVersionEstimate { major, minor: letter, minor_exact: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_identifiers_have_marketing_names() {
        assert_eq!(marketing_name("iPhone15,2"), Some("iPhone 14 Pro"));
        assert_eq!(marketing_name("iPad13,4"), Some("iPad Pro 11-inch (3rd generation)"));
        assert_eq!(marketing_name("iPhone1,1"), Some("iPhone"));
        assert_eq!(marketing_name("iPhone12,8"), Some("iPhone SE (2nd generation)"));
        assert_eq!(marketing_name("iPhone17,5"), Some("iPhone 16e"));
        assert_eq!(marketing_name("iPhone18,3"), Some("iPhone 17"));
        assert_eq!(marketing_name("iPhone18,4"), Some("iPhone Air"));
        assert_eq!(marketing_name("iPod9,1"), Some("iPod touch (7th generation)"));
        assert_eq!(marketing_name("iPad16,1"), Some("iPad mini (A17 Pro)"));
        assert_eq!(marketing_name(" iPhone16,2\n"), Some("iPhone 15 Pro Max"));
    }

    #[test]
    fn unknown_identifiers_have_none() {
        for product in ["iPhone99,9", "iphone15,2", "IPHONE15,2", "iPhone15", "", "Watch6,1"] {
            assert_eq!(marketing_name(product), None, "{product:?}");
        }
    }

    #[test]
    fn families_come_from_the_prefix() {
        assert_eq!(family("iPhone15,2"), Some("iPhone"));
        assert_eq!(family("iPhone99,1"), Some("iPhone"));
        assert_eq!(family("iPad13,4"), Some("iPad"));
        assert_eq!(family("iPod9,1"), Some("iPod touch"));
        assert_eq!(family("Watch6,1"), Some("Apple Watch"));
        assert_eq!(family("AppleTV14,1"), Some("Apple TV"));
        assert_eq!(family("RealityDevice14,1"), Some("Apple Vision Pro"));
        assert_eq!(family("Mac14,2"), Some("Mac"));
        assert_eq!(family("MacBookPro18,1"), Some("Mac"));
        assert_eq!(family("iMac21,1"), Some("Mac"));
        for product in ["", "iPhone", "iPadX1,1", "Pixel8,1", "15,2", "iphone15,2"] {
            assert_eq!(family(product), None, "{product:?}");
        }
    }

    fn version(build: &str) -> Option<(u32, u32, bool)> {
        os_version_of_build(build).map(|v| (v.major, v.minor, v.minor_exact))
    }

    #[test]
    fn builds_map_to_versions() {
        assert_eq!(version("22A3354"), Some((18, 0, false)));
        assert_eq!(version("21E236"), Some((17, 4, false)));
        assert_eq!(version("20G75"), Some((16, 6, false)));
        assert_eq!(version("23A341"), Some((26, 0, false)));
        assert_eq!(version("19H12"), Some((15, 7, false)));
        assert_eq!(version("13A344"), Some((9, 0, false)));
        assert_eq!(version("24A5260a"), Some((27, 0, false)));
        assert_eq!(version(" 22A5282m\n"), Some((18, 0, false)));
    }

    #[test]
    fn versions_display_as_major_dot_minor() {
        let estimate = os_version_of_build("21E236").expect("a valid build");
        assert_eq!(estimate.to_string(), "17.4");
        assert_eq!(os_version_of_build("23A341").expect("a valid build").to_string(), "26.0");
    }

    #[test]
    fn garbage_builds_have_none() {
        for build in [
            "",
            "abc",
            "12A365",
            "99999",
            "1A543a",
            "22a3354",
            "22A",
            "A3354",
            "123A45",
            "22A123456",
            "22A33b4",
            "22A3354ab",
            "22A3354M",
            "17.4",
            "22 A3354",
        ] {
            assert_eq!(os_version_of_build(build), None, "{build:?}");
        }
    }

    #[test]
    fn plausibility_is_about_shape() {
        for build in ["22A3354", "21E236", "22A5282m", "12A365", "1A543a", " 23A341 "] {
            assert!(is_plausible_build(build), "{build:?}");
        }
        for build in ["", "abc", "99999", "22a3354", "123A45", "22A", "22A3354ab", "٢٢A1"] {
            assert!(!is_plausible_build(build), "{build:?}");
        }
    }
}
