//! Share links: what a link allows, the capability tokens that let the iOS installer fetch a
//! protected build without cookies, link passwords, and the page cookie of a passed password.
//!
//! The installer fetches the manifest and the `.ipa` with none of Safari's cookies, so a
//! password cannot be checked there. Once the password page is passed, the install page hands
//! out manifest, icon and `.ipa` URLs that carry a capability: an HMAC (key in `secrets`, shared
//! by every instance) over the link, the build and a time window. Such a URL opens exactly one
//! build, through one link, for [`CAPABILITY_LIFETIME`], and stops working when the link is
//! revoked.

use std::time::Duration;

use anyhow::Result;
use aws_lc_rs::hmac;
use time::OffsetDateTime;

use crate::db::{Db, LinkRow};
use crate::tokens;

/// How long the URLs an install page hands out keep working: long enough to download a
/// multi-gigabyte build over a slow connection, with resumptions.
pub const CAPABILITY_LIFETIME: Duration = Duration::from_secs(6 * 3600);
/// Clock difference between instances that a capability tolerates before its window opens.
const CLOCK_SKEW: i64 = 120;
/// How long a browser that passed a link's password may see its page without typing it again.
pub const PASSED_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Longest password accepted (argon2 would take any length; a form should not).
pub const MAX_PASSWORD_BYTES: usize = 1024;

const CAPABILITY_SECRET: &str = "share-capability-key";

/// The keys of share links.
pub struct Sharing {
    key: hmac::Key,
}

/// What a capability opens. The install page hands out `Page` capabilities, which open the
/// manifest and the icon; the manifest, having counted an install against the link's limit,
/// names the `.ipa` with a `Package` capability. So `max_installs` holds for downloads too: a
/// page view alone never opens the `.ipa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The manifest and the icon.
    Page,
    /// The `.ipa`.
    Package,
}

impl Purpose {
    fn word(self) -> &'static str {
        match self {
            Purpose::Page => "page",
            Purpose::Package => "package",
        }
    }
}

/// What a capability names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The build it opens.
    pub build_id: String,
    /// Start of its window (Unix seconds).
    pub issued: i64,
    /// End of its window (Unix seconds).
    pub expires: i64,
}

/// Why a capability was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityRefused {
    /// Not a capability of this server for this link (forged, altered, or another link's).
    Invalid,
    /// Its window has closed (or not opened yet).
    OutsideWindow,
}

/// Where a link stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// It works.
    Active,
    /// Revoked at this time.
    Revoked(OffsetDateTime),
    /// Expired at this time.
    Expired(OffsetDateTime),
    /// Its install limit is reached.
    Exhausted(u64),
}

impl LinkState {
    /// The state of `link` at `now`.
    pub fn of(link: &LinkRow, now: OffsetDateTime) -> LinkState {
        if let Some(at) = link.revoked_at {
            return LinkState::Revoked(at);
        }
        if let Some(at) = link.expires_at.filter(|at| *at <= now) {
            return LinkState::Expired(at);
        }
        match link.max_installs {
            Some(max) if link.installs >= max => LinkState::Exhausted(max),
            _ => LinkState::Active,
        }
    }

    /// One word for lists and the API: `active`, `revoked`, `expired`, `exhausted`.
    pub fn word(&self) -> &'static str {
        match self {
            LinkState::Active => "active",
            LinkState::Revoked(_) => "revoked",
            LinkState::Expired(_) => "expired",
            LinkState::Exhausted(_) => "exhausted",
        }
    }
}

impl Sharing {
    /// Loads (or, the first time, makes) the key every instance shares.
    pub async fn open(db: &Db) -> Result<Sharing> {
        let key = db.secret_or_insert(CAPABILITY_SECRET, &tokens::random_hex(32)).await?;
        Ok(Sharing { key: hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()) })
    }

    /// A capability for `build_id` through `link`, valid from `issued` for
    /// [`CAPABILITY_LIFETIME`], but never past the link's own expiry.
    pub fn capability(&self, link: &LinkRow, build_id: &str, purpose: Purpose, issued: OffsetDateTime) -> String {
        let mut expires = issued + CAPABILITY_LIFETIME;
        if let Some(link_expiry) = link.expires_at {
            expires = expires.min(link_expiry);
        }
        self.capability_for_window(&link.id, build_id, purpose, issued.unix_timestamp(), expires.unix_timestamp())
    }

    /// A capability with an explicit window (Unix seconds). The install page uses
    /// [`Sharing::capability`]; this is for callers that must name the window themselves.
    pub fn capability_for_window(
        &self,
        link_id: &str,
        build_id: &str,
        purpose: Purpose,
        issued: i64,
        expires: i64,
    ) -> String {
        let tag = hmac::sign(&self.key, capability_message(link_id, build_id, purpose, issued, expires).as_bytes());
        // 128 bits of the tag: forging one still takes 2^128 guesses, and URLs stay short.
        let short = tag.as_ref().get(..16).unwrap_or(tag.as_ref());
        format!("{build_id}.{issued}.{expires}.{}", tokens::hex(short))
    }

    /// Checks a capability presented through `link_id` at `now`.
    pub fn verify_capability(
        &self,
        link_id: &str,
        text: &str,
        purpose: Purpose,
        now: OffsetDateTime,
    ) -> Result<Capability, CapabilityRefused> {
        let mut parts = text.split('.');
        let (Some(build_id), Some(issued), Some(expires), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CapabilityRefused::Invalid);
        };
        let valid_id = build_id.len() == 32 && build_id.bytes().all(|byte| byte.is_ascii_hexdigit());
        let (Ok(issued), Ok(expires), Some(tag)) = (issued.parse::<i64>(), expires.parse::<i64>(), from_hex(tag))
        else {
            return Err(CapabilityRefused::Invalid);
        };
        // Only this server mints capabilities, and never with a longer window.
        let lifetime = i64::try_from(CAPABILITY_LIFETIME.as_secs()).unwrap_or(i64::MAX);
        if !valid_id || tag.len() != 16 || expires.saturating_sub(issued) > lifetime {
            return Err(CapabilityRefused::Invalid);
        }
        let message = capability_message(link_id, build_id, purpose, issued, expires);
        let expected = hmac::sign(&self.key, message.as_bytes());
        let expected = expected.as_ref().get(..16).unwrap_or(expected.as_ref());
        if !constant_time_eq(expected, &tag) {
            return Err(CapabilityRefused::Invalid);
        }
        let now = now.unix_timestamp();
        if now + CLOCK_SKEW < issued || now >= expires {
            return Err(CapabilityRefused::OutsideWindow);
        }
        Ok(Capability { build_id: build_id.to_owned(), issued, expires })
    }

    /// The page cookie of a browser that passed `link`'s password, valid until `until`.
    pub fn passed_cookie(&self, link: &LinkRow, until: OffsetDateTime) -> String {
        let until = until.unix_timestamp();
        let tag = hmac::sign(&self.key, passed_message(link, until).as_bytes());
        format!("{until}.{}", tokens::hex(tag.as_ref()))
    }

    /// Whether a page cookie proves that this browser passed `link`'s current password.
    pub fn passed(&self, link: &LinkRow, cookie: &str, now: OffsetDateTime) -> bool {
        let Some((until, tag)) = cookie.split_once('.') else { return false };
        let (Ok(until), Some(tag)) = (until.parse::<i64>(), from_hex(tag)) else { return false };
        until > now.unix_timestamp() && hmac::verify(&self.key, passed_message(link, until).as_bytes(), &tag).is_ok()
    }
}

fn capability_message(link_id: &str, build_id: &str, purpose: Purpose, issued: i64, expires: i64) -> String {
    format!("otaship share capability v1\n{}\n{link_id}\n{build_id}\n{issued}\n{expires}", purpose.word())
}

/// Bound to the password's hash too: changing a link's password (a new link) ends old passes.
fn passed_message(link: &LinkRow, until: i64) -> String {
    format!("otaship share passed v1\n{}\n{}\n{until}", link.id, link.password_hash.as_deref().unwrap_or(""))
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok()).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(id: &str) -> LinkRow {
        LinkRow {
            id: id.to_owned(),
            token: "t".repeat(32),
            build_id: Some("a".repeat(32)),
            bundle_id: "com.example".to_owned(),
            channel: None,
            label: None,
            password_hash: None,
            expires_at: None,
            max_installs: None,
            installs: 0,
            created_at: OffsetDateTime::UNIX_EPOCH,
            revoked_at: None,
        }
    }

    fn sharing() -> Sharing {
        Sharing { key: hmac::Key::new(hmac::HMAC_SHA256, b"test key") }
    }

    #[test]
    fn capabilities_open_one_build_through_one_link_within_their_window() {
        let sharing = sharing();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let build = "b".repeat(32);
        let cap = sharing.capability(&link("L1"), &build, Purpose::Page, now);
        let opened =
            sharing.verify_capability("L1", &cap, Purpose::Page, now + Duration::from_secs(60)).expect("valid");
        assert_eq!(opened.build_id, build);
        assert_eq!(opened.expires - opened.issued, CAPABILITY_LIFETIME.as_secs() as i64);
        // Another link, the end of the window, before it opens, an altered build or time.
        assert_eq!(sharing.verify_capability("L2", &cap, Purpose::Page, now), Err(CapabilityRefused::Invalid));
        assert_eq!(
            sharing.verify_capability("L1", &cap, Purpose::Page, now + CAPABILITY_LIFETIME),
            Err(CapabilityRefused::OutsideWindow)
        );
        assert_eq!(
            sharing.verify_capability("L1", &cap, Purpose::Page, now - Duration::from_secs(3600)),
            Err(CapabilityRefused::OutsideWindow)
        );
        let other_build = cap.replacen(&build, &"c".repeat(32), 1);
        assert_eq!(sharing.verify_capability("L1", &other_build, Purpose::Page, now), Err(CapabilityRefused::Invalid));
        let longer = cap.replacen(&format!(".{}.", now.unix_timestamp() + 21600), ".9999999999.", 1);
        assert_ne!(longer, cap);
        assert_eq!(sharing.verify_capability("L1", &longer, Purpose::Page, now), Err(CapabilityRefused::Invalid));
        // A page capability does not open the package, nor the reverse.
        assert_eq!(sharing.verify_capability("L1", &cap, Purpose::Package, now), Err(CapabilityRefused::Invalid));
        // A window longer than any this server mints, even correctly signed.
        let long = sharing.capability_for_window("L1", &build, Purpose::Page, 0, 2 * 1_800_000_000);
        assert_eq!(sharing.verify_capability("L1", &long, Purpose::Page, now), Err(CapabilityRefused::Invalid));
        for junk in ["", "a.b.c", "x.1.2.00", &format!("{cap}.extra"), &cap[..cap.len() - 2]] {
            assert_eq!(
                sharing.verify_capability("L1", junk, Purpose::Page, now),
                Err(CapabilityRefused::Invalid),
                "{junk}"
            );
        }
    }

    #[test]
    fn capabilities_end_with_their_link() {
        let sharing = sharing();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let mut expiring = link("L1");
        expiring.expires_at = Some(now + Duration::from_secs(600));
        let cap = sharing.capability(&expiring, &"b".repeat(32), Purpose::Package, now);
        assert!(sharing.verify_capability("L1", &cap, Purpose::Package, now + Duration::from_secs(599)).is_ok());
        assert_eq!(
            sharing.verify_capability("L1", &cap, Purpose::Package, now + Duration::from_secs(600)),
            Err(CapabilityRefused::OutsideWindow)
        );
    }

    #[test]
    fn link_states_say_why_a_link_stopped() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let mut row = link("L");
        assert_eq!(LinkState::of(&row, now), LinkState::Active);
        row.max_installs = Some(2);
        row.installs = 2;
        assert_eq!(LinkState::of(&row, now), LinkState::Exhausted(2));
        row.expires_at = Some(now);
        assert_eq!(LinkState::of(&row, now), LinkState::Expired(now));
        row.revoked_at = Some(now);
        assert_eq!(LinkState::of(&row, now).word(), "revoked");
    }

    #[test]
    fn passes_are_bound_to_the_link_its_password_and_a_time() {
        let sharing = sharing();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let mut protected = link("L1");
        protected.password_hash = Some("h1".to_owned());
        let cookie = sharing.passed_cookie(&protected, now + PASSED_LIFETIME);
        assert!(sharing.passed(&protected, &cookie, now));
        assert!(!sharing.passed(&protected, &cookie, now + PASSED_LIFETIME));
        assert!(!sharing.passed(&link("L2"), &cookie, now));
        protected.password_hash = Some("h2".to_owned());
        assert!(!sharing.passed(&protected, &cookie, now));
        assert!(!sharing.passed(&protected, "garbage", now));
    }
}
