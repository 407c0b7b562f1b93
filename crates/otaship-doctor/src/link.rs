//! The `itms-services` link: finding it in an install page, and checking that Safari hands the
//! installer the manifest URL intact (spec §1.1 to §1.4).

use crate::Finding;

/// What a link yielded: the manifest URL the installer will fetch, as iOS parses the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSeen {
    /// The link, HTML-unescaped.
    pub link: String,
    /// The `url` parameter, percent-decoded, as iOS reads it (up to the first raw `&`).
    pub manifest_url: Option<String>,
}

/// Undoes the HTML escaping of an attribute value (`&amp;`, `&#38;`, `&quot;` and friends).
pub fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // An entity is short: look for its `;` in the next few bytes only (searching the whole
        // rest for every `&` made a long run of them quadratic).
        let Some(end) = rest.bytes().take(11).position(|byte| byte == b';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|decimal| decimal.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(character) => {
                out.push(character);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `itms-services` links in an HTML page, HTML-unescaped, in page order.
pub fn links_in_html(html: &str) -> Vec<String> {
    let mut links = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("itms-services:") {
        let start = from + found;
        // The link ends where its attribute value or JavaScript string does.
        let end = html[start..].find(['"', '\'', '<', '>', ' ', '\n']).map_or(html.len(), |end| start + end);
        links.push(html_unescape(&html[start..end]));
        from = end.max(start + 1);
    }
    links
}

/// Checks a link (already HTML-unescaped) and reads the manifest URL from it as iOS does.
pub fn check(link: &str) -> (Vec<Finding>, LinkSeen) {
    let mut findings = Vec::new();
    let mut seen = LinkSeen { link: link.to_owned(), manifest_url: None };
    let Some(query) = link.strip_prefix("itms-services://?").or_else(|| link.strip_prefix("itms-services:?")) else {
        findings.push(Finding::error(
            "link-not-itms-services",
            format!("The link does not start with itms-services://? : {link}"),
            "Write it as itms-services://?action=download-manifest&url=<percent-encoded manifest URL>.",
        ));
        return (findings, seen);
    };
    if query.contains("&amp;") {
        findings.push(Finding::error(
            "link-double-escaped",
            "The link still contains &amp; after HTML unescaping: it was escaped twice, so iOS reads a parameter \
             named amp;url and finds no manifest.",
            "Escape the link exactly once when writing it into HTML (or use a template engine that does).",
        ));
    }
    let parameters: Vec<(&str, &str)> =
        query.split('&').map(|pair| pair.split_once('=').unwrap_or((pair, ""))).collect();
    match parameters.iter().find(|(name, _)| *name == "action") {
        Some((_, "download-manifest")) => {}
        Some((_, other)) => findings.push(Finding::error(
            "link-wrong-action",
            format!("The link's action is {other:?}; iOS only knows download-manifest."),
            "Use action=download-manifest.",
        )),
        None => findings.push(Finding::error(
            "link-no-action",
            "The link has no action parameter.",
            "Add action=download-manifest.",
        )),
    }
    let Some(position) = parameters.iter().position(|(name, _)| *name == "url") else {
        if !findings.iter().any(|finding| finding.code == "link-double-escaped") {
            findings.push(Finding::error(
                "link-no-url",
                "The link has no url parameter, so the installer has no manifest to fetch.",
                "Add url=<percent-encoded manifest URL>.",
            ));
        }
        return (findings, seen);
    };
    let raw = parameters[position].1;
    // Parameters after url= that are not iOS's own came from an unencoded & in the manifest URL.
    let stray: Vec<&str> =
        parameters[position + 1..].iter().map(|(name, _)| *name).filter(|name| *name != "action").collect();
    if !stray.is_empty() || raw.contains(['?', '#']) {
        findings.push(Finding::error(
            "link-url-not-encoded",
            format!(
                "The manifest URL in the link is not percent-encoded: {} the installer cuts it short.",
                if stray.is_empty() {
                    "its ? or # is read as part of the link, and"
                } else {
                    "its & starts a new parameter, and"
                }
            ),
            "Percent-encode the whole manifest URL (every character outside A-Z a-z 0-9 - . _ ~), e.g. \
             https%3A%2F%2Fhost%2Fmanifest.plist%3Ftoken%3Dabc.",
        ));
    }
    if raw.contains(' ') {
        findings.push(Finding::error(
            "link-has-spaces",
            "The manifest URL in the link contains spaces.",
            "Percent-encode it (a space is %20).",
        ));
    }
    let decoded = percent_decode(raw);
    if decoded.is_empty() {
        findings.push(Finding::error(
            "link-no-url",
            "The link's url parameter is empty.",
            "Put the manifest URL in it.",
        ));
        return (findings, seen);
    }
    check_manifest_url(&decoded, &mut findings);
    seen.manifest_url = Some(decoded);
    (findings, seen)
}

/// The rules for the URL the installer fetches the manifest from (spec §1.4).
pub fn check_manifest_url(url: &str, findings: &mut Vec<Finding>) {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("file:") {
        findings.push(Finding::error(
            "manifest-url-file",
            format!("The manifest URL {url} is a file: URL; the installer only fetches over HTTPS."),
            "Host the manifest on an HTTPS server.",
        ));
    } else if lower.starts_with("http://") {
        findings.push(Finding::error(
            "manifest-not-https",
            format!("The manifest URL {url} is plain HTTP; iOS refuses it (\"Cannot connect\", error 852)."),
            "Serve the manifest over HTTPS with a certificate the devices trust.",
        ));
    } else if !lower.starts_with("https://") {
        findings.push(Finding::error(
            "manifest-url-invalid",
            format!("The manifest URL {url} is not an absolute https:// URL."),
            "Use the manifest's absolute HTTPS URL.",
        ));
    }
    if let Some((host, _)) = crate::host_and_port_of(url) {
        let local = host.eq_ignore_ascii_case("localhost")
            || host.to_ascii_lowercase().ends_with(".localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
        if local {
            findings.push(Finding::error(
                "manifest-url-local",
                format!("The manifest URL names {host}, which on the iPhone is the iPhone itself (error 850)."),
                "Use the server's name or network address as the devices reach it (--public-url).",
            ));
        }
    }
}

/// The manifest URL a person hands over (to `otaship link`): the URL itself, or the one an
/// `itms-services` link carries. The error says why the input is neither.
///
/// Lenient where [`check`] is strict: a hand-made link whose URL was left unencoded (its value
/// holds `://`) yields everything after `url=`, `&`s included, with the URL's own `%xx` left as
/// they are; an encoded value ends at the next `&` and is decoded once.
pub fn manifest_url_of(input: &str) -> Result<url::Url, String> {
    let text = if input.get(..16).is_some_and(|scheme| scheme.eq_ignore_ascii_case("itms-services://")) {
        let query = input.split_once('?').map(|(_, query)| query).unwrap_or("");
        let pairs: Vec<&str> = query.split('&').collect();
        let index = pairs
            .iter()
            .position(|pair| pair.starts_with("url="))
            .ok_or_else(|| format!("{input:?} has no url= parameter"))?;
        let value = &pairs[index]["url=".len()..];
        if value.contains("://") {
            // An `action=` pair after the URL belongs to the link, not to the URL.
            let rest: Vec<&str> = pairs[index..].iter().copied().filter(|pair| !pair.starts_with("action=")).collect();
            rest.join("&")["url=".len()..].to_owned()
        } else {
            percent_decode(value)
        }
    } else {
        input.to_owned()
    };
    let url = url::Url::parse(&text).map_err(|error| format!("{text:?} is not a URL: {error}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(format!("{text:?} is not an https:// URL"));
    }
    Ok(url)
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |byte: u8| char::from(byte).to_digit(16);
        match (bytes[at], bytes.get(at + 1).copied().and_then(hex), bytes.get(at + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                at += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(link: &str) -> Vec<&'static str> {
        check(link).0.into_iter().map(|finding| finding.code).collect()
    }

    #[test]
    fn a_correct_link_yields_its_manifest_url() {
        let (findings, seen) =
            check("itms-services://?action=download-manifest&url=https%3A%2F%2Fota.example.com%2Fm.plist%3Ft%3D1");
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(seen.manifest_url.as_deref(), Some("https://ota.example.com/m.plist?t=1"));
    }

    #[test]
    fn broken_links_name_their_fault() {
        assert_eq!(
            codes("itms-services://?action=download-manifest&url=https://ota.example.com/m.plist?a=1&b=2"),
            ["link-url-not-encoded"]
        );
        assert_eq!(
            codes("itms-services://?action=download-manifest&amp;url=https%3A%2F%2Fa%2Fm"),
            ["link-double-escaped"]
        );
        assert_eq!(
            codes("itms-services://?action=download-manifest&url=http%3A%2F%2Fota.example.com%2Fm"),
            ["manifest-not-https"]
        );
        assert_eq!(
            codes("itms-services://?action=download-manifest&url=https%3A%2F%2F127.0.0.1%2Fm"),
            ["manifest-url-local"]
        );
        assert_eq!(codes("itms-services://?action=download-manifest"), ["link-no-url"]);
        assert_eq!(codes("https://ota.example.com/"), ["link-not-itms-services"]);
        assert_eq!(codes("itms-services://?action=install&url=https%3A%2F%2Fa.example%2Fm"), ["link-wrong-action"]);
    }

    #[test]
    fn links_are_found_in_pages_and_unescaped_once() {
        let html =
            "<a id=\"x\" href=\"itms-services://?action=download-manifest&amp;url=https%3A%2F%2Fa%2Fm\">Install</a>";
        assert_eq!(links_in_html(html), ["itms-services://?action=download-manifest&url=https%3A%2F%2Fa%2Fm"]);
        assert_eq!(html_unescape("a&#38;b&#x26;c&amp;amp;"), "a&b&c&amp;");
    }
}
