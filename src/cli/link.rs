//! `otaship link`: the `itms-services` link for a manifest URL, encoded as iOS expects.
//!
//! The manifest URL must be one percent-encoded query component: a raw `&` or `?` in it would
//! end the `url` parameter early, which is the most common hand-made link bug. Given a link
//! instead of a URL, the command re-encodes the manifest URL the link carries.

use super::{Failure, print};

/// Arguments of `otaship link`.
#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// The manifest's URL (https://.../manifest.plist), or an itms-services:// link to re-encode.
    pub manifest_url: String,
    /// Print an HTML anchor with the link escaped for an attribute.
    #[arg(long)]
    pub html: bool,
}

/// Runs `otaship link`.
pub fn run(args: &LinkArgs) -> Result<(), Failure> {
    let manifest = manifest_url(args.manifest_url.trim())?;
    if manifest.scheme() != "https" {
        eprintln!("warning: iOS fetches manifests only over HTTPS; this link will not install");
    }
    let link = otaship_server::http::itms_link(manifest.as_str());
    if args.html {
        print(&format!("<a href=\"{}\">Install</a>\n", html_attribute(&link)))
    } else {
        print(&format!("{link}\n"))
    }
}

/// The manifest URL given directly, or carried by an `itms-services` link (read by
/// [`otaship_doctor::link::manifest_url_of`], which is fuzzed).
fn manifest_url(input: &str) -> Result<url::Url, Failure> {
    otaship_doctor::link::manifest_url_of(input)
        .map_err(|message| Failure::Refused { code: "bad-manifest-url".into(), message })
}

fn html_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_with_an_unencoded_url_is_re_encoded() {
        let url = manifest_url("itms-services://?action=download-manifest&url=https://h/m.plist?a=1&b=2").ok();
        assert_eq!(url.map(String::from).as_deref(), Some("https://h/m.plist?a=1&b=2"));
        let url = manifest_url("itms-services://?action=download-manifest&url=https%3A%2F%2Fh%2Fm.plist").ok();
        assert_eq!(url.map(String::from).as_deref(), Some("https://h/m.plist"));
        let url = manifest_url("itms-services://?url=https%3A%2F%2Fh%2Fm.plist&action=download-manifest").ok();
        assert_eq!(url.map(String::from).as_deref(), Some("https://h/m.plist"));
        let url = manifest_url("itms-services://?url=https://h/m.plist?t=a%26b&action=download-manifest").ok();
        assert_eq!(url.map(String::from).as_deref(), Some("https://h/m.plist?t=a%26b"));
    }

    #[test]
    fn non_urls_are_refused() {
        assert!(manifest_url("manifest.plist").is_err());
        assert!(manifest_url("ftp://h/m.plist").is_err());
        assert!(manifest_url("itms-services://?action=download-manifest").is_err());
    }

    #[test]
    fn attributes_are_escaped() {
        assert_eq!(html_attribute("a&b\"<c>'"), "a&amp;b&quot;&lt;c&gt;&#39;");
    }
}
