//! The manifest as the iOS installer reads it (spec §2): fetched over HTTPS without cookies, a
//! plist with one item whose metadata names the app and whose assets hold exactly one
//! `software-package`, every URL absolute HTTPS.

use plist::{Dictionary, Value};

use crate::{Finding, Options};

/// Largest manifest read; real ones are a few hundred bytes.
const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// What a manifest says, as far as the checks that follow need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestSeen {
    /// `bundle-identifier`.
    pub bundle_id: Option<String>,
    /// `bundle-version`.
    pub bundle_version: Option<String>,
    /// `title`.
    pub title: Option<String>,
    /// The `software-package` URL.
    pub package_url: Option<String>,
    /// The `display-image` URL.
    pub display_image_url: Option<String>,
    /// Hashes the package asset declares, checked with `--full`.
    pub hashes: DeclaredHashes,
}

/// The hash keys of a `software-package` asset (spec §2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredHashes {
    /// `md5`: of the whole file.
    pub md5: Option<String>,
    /// `md5-size` and `md5s`: per chunk.
    pub md5_chunks: Option<(u64, Vec<String>)>,
    /// `sha256`: of the whole file.
    pub sha256: Option<String>,
    /// `sha256-size` and `sha256s`: per chunk.
    pub sha256_chunks: Option<(u64, Vec<String>)>,
}

impl DeclaredHashes {
    /// Whether the manifest declares any hash.
    pub fn any(&self) -> bool {
        self.md5.is_some() || self.md5_chunks.is_some() || self.sha256.is_some() || self.sha256_chunks.is_some()
    }
}

fn declared_hashes(asset: &Dictionary) -> DeclaredHashes {
    let text = |key: &str| asset.get(key).and_then(Value::as_string).map(str::to_ascii_lowercase);
    let chunks = |size: &str, list: &str| {
        let size = asset.get(size).and_then(Value::as_unsigned_integer).filter(|size| *size > 0)?;
        let hashes = asset
            .get(list)?
            .as_array()?
            .iter()
            .map(|hash| hash.as_string().map(str::to_ascii_lowercase))
            .collect::<Option<Vec<_>>>()?;
        Some((size, hashes))
    };
    DeclaredHashes {
        md5: text("md5"),
        md5_chunks: chunks("md5-size", "md5s"),
        sha256: text("sha256"),
        sha256_chunks: chunks("sha256-size", "sha256s"),
    }
}

/// Fetches the manifest at `url` and checks it.
pub async fn check_url(url: &str, options: &Options) -> (Vec<Finding>, ManifestSeen) {
    let mut findings = Vec::new();
    if !url.starts_with("https://") {
        findings.push(Finding::error(
            "manifest-not-https",
            format!("The manifest URL {url} is not HTTPS; iOS refuses it (\"Cannot connect\", error 852)."),
            "Serve the manifest over HTTPS with a certificate the devices trust.",
        ));
    }
    let client = match options.http_client() {
        Ok(client) => client,
        Err(error) => {
            findings.push(Finding::error("doctor-internal", format!("HTTP setup failed: {error}"), ""));
            return (findings, ManifestSeen::default());
        }
    };
    let response = match client.get(url).send().await {
        Ok(response) => response,
        Err(error) => {
            findings.push(Finding::error(
                "manifest-unreachable",
                format!("The manifest cannot be fetched: {error}."),
                "Check the URL and that the server answers on it from the network the devices use.",
            ));
            return (findings, ManifestSeen::default());
        }
    };
    if response.url().as_str() != url {
        findings.push(Finding::warning(
            "manifest-redirected",
            format!("The manifest URL redirects to {}.", response.url()),
            "Put the final URL in the install link; redirects cost a round trip and can lose HTTPS or the host.",
        ));
    }
    let status = response.status();
    if !status.is_success() {
        findings.push(Finding::error(
            "manifest-http-error",
            format!("The manifest URL answers HTTP {status}."),
            "The installer needs a 200 with the manifest; check the path, and that the link has not expired or \
             needs no login (the installer sends no cookies).",
        ));
        return (findings, ManifestSeen::default());
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !["text/xml", "application/xml", "application/x-plist", "application/octet-stream"]
        .iter()
        .any(|accepted| content_type.starts_with(accepted))
    {
        findings.push(Finding::warning(
            "manifest-content-type",
            format!("The manifest is served as {content_type:?}."),
            "Serve it as text/xml (or application/xml).",
        ));
    }
    let body = match crate::read_capped(response, MAX_MANIFEST_BYTES).await {
        Ok(body) if !body.truncated => body.bytes,
        Ok(_) => {
            findings.push(Finding::error(
                "manifest-too-large",
                "The manifest is larger than 1 MiB; it is not a manifest.",
                "Point the link at the manifest.plist, not at the .ipa or a page.",
            ));
            return (findings, ManifestSeen::default());
        }
        Err(error) => {
            findings.push(Finding::error("manifest-unreachable", format!("Reading the manifest failed: {error}."), ""));
            return (findings, ManifestSeen::default());
        }
    };
    let (more, seen) = check_bytes(&body);
    findings.extend(more);
    (findings, seen)
}

/// Checks a manifest's bytes.
pub fn check_bytes(bytes: &[u8]) -> (Vec<Finding>, ManifestSeen) {
    let mut findings = Vec::new();
    let mut seen = ManifestSeen::default();
    // Bounded like every plist otaship reads: a binary plist may reference one object many
    // times, and expanded naively a few hundred bytes become billions of values.
    let limits = otaship_ipa::Limits::default();
    let budget = otaship_ipa::Budget::new(limits.max_metadata_bytes);
    let value = match otaship_ipa::plist::parse(bytes, &limits, &budget, "the manifest") {
        Ok(value) => value,
        Err(otaship_ipa::IpaError::MalformedPlist { detail, .. }) => {
            let looks_like_html =
                bytes.iter().take(512).copied().map(|byte| byte.to_ascii_lowercase()).collect::<Vec<_>>();
            let hint = if looks_like_html.windows(5).any(|window| window == b"<html") {
                "The URL returns an HTML page (a login or error page?), not a manifest."
            } else {
                "Write it with a plist serializer; an unescaped & or < in the app name breaks hand-written XML."
            };
            findings.push(Finding::error(
                "manifest-not-plist",
                format!("The manifest is not a valid plist: {detail}."),
                hint,
            ));
            return (findings, seen);
        }
        Err(error) => {
            findings.push(Finding::error(
                "manifest-too-complex",
                format!("The manifest is refused: {error} (a real manifest holds a few dozen values)."),
                "Point the link at the manifest.plist that describes the build (one item, its assets and \
                 metadata), written by otaship or Xcode.",
            ));
            return (findings, seen);
        }
    };
    let item = value
        .as_dictionary()
        .and_then(|root| root.get("items"))
        .and_then(Value::as_array)
        .and_then(|items| items.first())
        .and_then(Value::as_dictionary);
    let Some(item) = item else {
        findings.push(Finding::error(
            "manifest-no-items",
            "The manifest has no items array with a dictionary in it.",
            "The root must be a dictionary with items = [ { assets = [...], metadata = {...} } ].",
        ));
        return (findings, seen);
    };
    check_metadata(item, &mut findings, &mut seen);
    check_assets(item, &mut findings, &mut seen);
    if !findings.iter().any(|finding| finding.severity > crate::Severity::Info) {
        findings.push(Finding::info(
            "manifest-ok",
            format!(
                "The manifest installs {} {} from {}.",
                seen.bundle_id.as_deref().unwrap_or("?"),
                seen.bundle_version.as_deref().unwrap_or("?"),
                seen.package_url.as_deref().unwrap_or("?")
            ),
        ));
    }
    (findings, seen)
}

fn check_metadata(item: &Dictionary, findings: &mut Vec<Finding>, seen: &mut ManifestSeen) {
    let Some(metadata) = item.get("metadata").and_then(Value::as_dictionary) else {
        findings.push(Finding::error(
            "manifest-no-metadata",
            "The manifest item has no metadata dictionary.",
            "Add metadata with bundle-identifier, bundle-version, kind = software and title.",
        ));
        return;
    };
    let text = |key: &str| metadata.get(key).and_then(Value::as_string).map(str::to_owned);
    seen.bundle_id = text("bundle-identifier");
    seen.bundle_version = text("bundle-version");
    seen.title = text("title");
    if seen.bundle_id.as_deref().is_none_or(str::is_empty) {
        findings.push(Finding::error(
            "manifest-no-bundle-id",
            "The manifest has no bundle-identifier.",
            "Set metadata.bundle-identifier to the app's CFBundleIdentifier.",
        ));
    }
    if seen.bundle_version.is_none() {
        findings.push(Finding::warning(
            "manifest-no-bundle-version",
            "The manifest has no bundle-version.",
            "Set metadata.bundle-version to the app's version.",
        ));
    }
    if text("kind").as_deref() != Some("software") {
        findings.push(Finding::error(
            "manifest-wrong-kind",
            format!("metadata.kind is {:?}; the installer needs \"software\".", text("kind").unwrap_or_default()),
            "Set metadata.kind to software.",
        ));
    }
    if seen.title.as_deref().is_none_or(|title| title.trim().is_empty()) {
        findings.push(Finding::error(
            "manifest-no-title",
            "The manifest has no title; iOS shows nothing to confirm.",
            "Set metadata.title to the app's name.",
        ));
    }
}

fn check_assets(item: &Dictionary, findings: &mut Vec<Finding>, seen: &mut ManifestSeen) {
    let assets: Vec<&Dictionary> = item
        .get("assets")
        .and_then(Value::as_array)
        .map(|assets| assets.iter().filter_map(Value::as_dictionary).collect())
        .unwrap_or_default();
    let packages: Vec<&str> = assets
        .iter()
        .filter(|asset| asset.get("kind").and_then(Value::as_string) == Some("software-package"))
        .filter_map(|asset| asset.get("url").and_then(Value::as_string))
        .collect();
    if let [package] = assets
        .iter()
        .filter(|asset| asset.get("kind").and_then(Value::as_string) == Some("software-package"))
        .collect::<Vec<_>>()
        .as_slice()
    {
        seen.hashes = declared_hashes(package);
    }
    match packages.as_slice() {
        [url] => seen.package_url = Some((*url).to_owned()),
        [] => findings.push(Finding::error(
            "manifest-no-package",
            "The manifest has no software-package asset.",
            "Add an asset with kind = software-package and url = the .ipa's HTTPS URL.",
        )),
        _ => findings.push(Finding::error(
            "manifest-several-packages",
            format!("The manifest has {} software-package assets; the installer expects one.", packages.len()),
            "Keep exactly one software-package asset.",
        )),
    }
    seen.display_image_url = assets
        .iter()
        .find(|asset| asset.get("kind").and_then(Value::as_string) == Some("display-image"))
        .and_then(|asset| asset.get("url").and_then(Value::as_string))
        .map(str::to_owned);
    for asset in &assets {
        let kind = asset.get("kind").and_then(Value::as_string).unwrap_or("?");
        match asset.get("url").and_then(Value::as_string) {
            Some(url) if url.starts_with("https://") => {}
            Some(url) => findings.push(Finding::error(
                "manifest-asset-not-https",
                format!("The {kind} URL {url} is not absolute HTTPS."),
                "Every asset URL must be absolute https:// with a certificate the devices trust.",
            )),
            None => findings.push(Finding::error(
                "manifest-asset-no-url",
                format!("The {kind} asset has no url."),
                "Give every asset an absolute https:// url.",
            )),
        }
    }
}
