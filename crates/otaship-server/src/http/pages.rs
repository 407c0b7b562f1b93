//! The tester's side: the install page and the manifest the iOS installer fetches. Neither
//! depends on a cookie: the installer fetches without the browser's cookies, so the unguessable
//! install token in the path is the only key.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use plist::{Dictionary, Value};
use serde_json::Value as Json;

use super::ui::PageError;
use super::{BuildUrls, base_url, itms_link};
use crate::db::{BuildRow, EventKind};
use crate::error::ApiError;
use crate::{AppState, analytics};

/// What the pages show of a build: the install page to testers, the app page to uploaders.
pub struct BuildView {
    /// API id.
    pub id: String,
    /// Display name (the bundle id when the app has none).
    pub name: String,
    /// Bundle id.
    pub bundle_id: String,
    /// Marketing version, or a dash.
    pub version: String,
    /// Build number, or a dash.
    pub build: String,
    /// Human size.
    pub size: String,
    /// Upload time, to the minute, UTC.
    pub uploaded: String,
    /// The release notes rendered from Markdown: the only user content a template marks safe
    /// (`crate::markdown` makes it so).
    pub notes_html: Option<String>,
    /// Profile kind in words.
    pub profile_kind: Option<&'static str>,
    /// Profile expiry date.
    pub profile_expiry: Option<String>,
    /// Why the build cannot be installed (empty when it can).
    pub problems: Vec<String>,
    /// What may go wrong on some devices.
    pub warnings: Vec<String>,
    /// Lowest iOS version.
    pub min_os: Option<String>,
    /// Runs on iPad only (`UIDeviceFamily` without iPhone); iPhone-only apps still run on iPad.
    pub ipad_only: bool,
    /// Signed for listed devices (development or ad hoc): device checks and Developer Mode apply.
    pub lists_devices: bool,
    /// The install token, for the way back from device registration (empty on a share link's
    /// page, which must not reveal the build's own install URL).
    pub token: String,
    /// Public URLs.
    pub urls: BuildUrls,
    /// The `itms-services` link of the Install button.
    pub itms_link: String,
}

impl BuildView {
    /// The view of a stored build, with its own URLs under `base`.
    pub fn new(build: &BuildRow, base: &str) -> Result<Self, ApiError> {
        BuildView::with_urls(build, BuildUrls::new(base, &build.install_token, build.has_icon))
    }

    /// The view of a stored build whose page hands out `urls` (a share link's).
    pub fn with_urls(build: &BuildRow, urls: BuildUrls) -> Result<Self, ApiError> {
        let report: Json = serde_json::from_str(&build.report).map_err(ApiError::internal)?;
        let profile = report.get("profile").filter(|profile| !profile.is_null());
        let messages = |list: &str| -> Vec<String> {
            report["installable"][list]
                .as_array()
                .map(|findings| {
                    findings
                        .iter()
                        // The install page says this itself, only to devices that need it.
                        .filter(|finding| finding["code"] != "developer-mode-required")
                        .filter_map(|finding| finding["message"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(BuildView {
            id: build.id.clone(),
            name: build.name.clone().unwrap_or_else(|| build.bundle_id.clone()),
            bundle_id: build.bundle_id.clone(),
            version: build.version.clone().unwrap_or_else(|| "—".to_owned()),
            build: build.build.clone().unwrap_or_else(|| "—".to_owned()),
            size: human_size(build.size),
            uploaded: format!(
                "{} UTC",
                crate::db::timestamp(build.created_at).get(..16).unwrap_or("").replace('T', " ")
            ),
            notes_html: build.notes.as_deref().map(crate::markdown::to_html),
            profile_kind: profile.and_then(|profile| profile["kind"].as_str()).map(kind_words),
            profile_expiry: profile
                .and_then(|profile| profile["expires_at"].as_str())
                .map(|at| at.chars().take(10).collect()),
            problems: messages("problems"),
            warnings: messages("warnings"),
            min_os: report["min_os"].as_str().map(str::to_owned),
            ipad_only: report["device_families"].as_array().is_some_and(|families| {
                families.iter().any(|family| family == "ipad") && !families.iter().any(|family| family == "iphone")
            }),
            lists_devices: profile
                .and_then(|profile| profile["kind"].as_str())
                .is_some_and(|kind| kind == "development" || kind == "ad-hoc"),
            token: build.install_token.clone(),
            itms_link: itms_link(&urls.manifest),
            urls,
        })
    }
}

#[derive(Template)]
#[template(path = "install.html")]
struct InstallPage {
    b: BuildView,
    qr_svg: Arc<str>,
    /// The local CA's onboarding page, for devices that do not trust the server yet.
    trust_url: Option<String>,
    /// The page was served over plain HTTP, from which iOS never installs.
    insecure: bool,
    /// What the page knows of the visitor's own device (enrolled in this browser).
    device: Option<super::devices::DevicePanel>,
    /// Whether to show the Developer Mode note.
    developer_mode: bool,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage;

/// `GET /i/{token}`: the install page (its errors, such as a database that does not answer,
/// are pages too: a tester's browser shows them).
pub async fn install_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let Some(build) = super::build_by_token(&state, &token).await? else {
        return Ok(not_found_page()?);
    };
    let view = BuildView::new(&build, &base_url(&state, &headers))?;
    analytics::record(&state, &headers, &build.id, None, EventKind::PageView).await;
    Ok(render_install_page(&state, &headers, &build, view).await?)
}

/// The page for a link that names no build.
pub(crate) fn not_found_page() -> Result<Response, ApiError> {
    let page = NotFoundPage.render().map_err(ApiError::internal)?;
    Ok((StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")], Html(page)).into_response())
}

/// The install page of `build` as `view` shows it (its own URLs, or a share link's), with what
/// the server knows of the visitor's device.
pub(crate) async fn render_install_page(
    state: &AppState,
    headers: &HeaderMap,
    build: &BuildRow,
    view: BuildView,
) -> Result<Response, ApiError> {
    let base = base_url(state, headers);
    let device = super::devices::visiting_device(state, headers).await?;
    let panel = match &device {
        Some(device) => super::devices::device_panel(build, device)?,
        None => None,
    };
    // iOS 16 and later open development and ad-hoc builds only in Developer Mode; a device
    // known to run an older iOS does not need the note.
    let device_major = device
        .as_ref()
        .and_then(|device| crate::devices::os_version(device).0)
        .and_then(|version| version.split('.').next().and_then(|major| major.parse::<u32>().ok()));
    let developer_mode = view.lists_devices && device_major.is_none_or(|major| major >= 16);
    let page = InstallPage {
        qr_svg: qr_svg(&view.urls.install)?,
        b: view,
        trust_url: super::trust::onboarding_url(state, headers),
        insecure: base.starts_with("http://"),
        device: panel,
        developer_mode,
    };
    let html = page.render().map_err(ApiError::internal)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

/// QR codes drawn so far, by text. Drawing one costs about half a millisecond (mask selection),
/// more than the rest of the install page; the page is requested far more often than new
/// builds appear.
static QR_CODES: std::sync::LazyLock<std::sync::Mutex<HashMap<String, Arc<str>>>> =
    std::sync::LazyLock::new(Default::default);
/// Codes kept before the cache starts over (an entry is about 10 KB).
const QR_CACHE_ENTRIES: usize = 4096;

/// A QR code of `text` as inline SVG.
pub fn qr_svg(text: &str) -> Result<Arc<str>, ApiError> {
    let cached = |codes: &HashMap<String, Arc<str>>| codes.get(text).cloned();
    if let Some(svg) = QR_CODES.lock().ok().as_deref().and_then(cached) {
        return Ok(svg);
    }
    let svg: Arc<str> = qrcode::QrCode::new(text.as_bytes())
        .map(|code| code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(180, 180).quiet_zone(true).build())
        .map_err(ApiError::internal)?
        .into();
    if let Ok(mut codes) = QR_CODES.lock() {
        if codes.len() >= QR_CACHE_ENTRIES {
            codes.clear();
        }
        codes.insert(text.to_owned(), Arc::clone(&svg));
    }
    Ok(svg)
}

/// `GET /i/{token}/manifest.plist`: written with a plist serializer, never a template.
pub async fn manifest(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let Some(build) = super::build_by_token(&state, &token).await? else {
        return Err(ApiError::not_found("The build"));
    };
    analytics::record(&state, &headers, &build.id, None, EventKind::Manifest).await;
    let urls = BuildUrls::new(&base_url(&state, &headers), &build.install_token, build.has_icon);
    manifest_response(&build, &urls)
}

/// The manifest of `build` naming `urls`, as the installer wants it.
pub(crate) fn manifest_response(build: &BuildRow, urls: &BuildUrls) -> Result<Response, ApiError> {
    let body = manifest_xml(build, urls).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "text/xml; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body).into_response())
}

fn manifest_xml(build: &BuildRow, urls: &BuildUrls) -> Result<Vec<u8>, plist::Error> {
    let asset = |kind: &str, url: &str| {
        let mut dict = Dictionary::new();
        dict.insert("kind".into(), kind.into());
        dict.insert("url".into(), url.into());
        Value::Dictionary(dict)
    };
    let mut assets = vec![asset("software-package", &urls.download)];
    if let Some(icon) = &urls.icon {
        assets.push(asset("display-image", icon));
        assets.push(asset("full-size-image", icon));
    }
    let mut metadata = Dictionary::new();
    metadata.insert("bundle-identifier".into(), build.bundle_id.clone().into());
    if let Some(version) = &build.version {
        metadata.insert("bundle-version".into(), xml_safe(version).into());
    }
    metadata.insert("kind".into(), "software".into());
    let title = build.name.as_deref().map(xml_safe).filter(|title| !title.trim().is_empty());
    metadata.insert("title".into(), title.unwrap_or_else(|| build.bundle_id.clone()).into());
    let mut item = Dictionary::new();
    item.insert("assets".into(), Value::Array(assets));
    item.insert("metadata".into(), Value::Dictionary(metadata));
    let mut root = Dictionary::new();
    root.insert("items".into(), Value::Array(vec![Value::Dictionary(item)]));
    let mut out = Vec::new();
    Value::Dictionary(root).to_writer_xml(&mut out)?;
    Ok(out)
}

/// XML 1.0 cannot carry most control characters, and the plist writer does not remove them; a
/// manifest holding one is refused by iOS.
fn xml_safe(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')).collect()
}

fn kind_words(kind: &str) -> &'static str {
    match kind {
        "development" => "Development",
        "ad-hoc" => "Ad Hoc",
        "enterprise" => "Enterprise (In-House)",
        "app-store" => "App Store",
        "developer-id" => "Developer ID",
        _ => "an unknown kind of profile",
    }
}

/// 1.2 MB, 845 KB, 12 bytes.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} bytes"),
        1_000..1_000_000 => format!("{:.0} KB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}
