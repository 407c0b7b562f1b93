//! `otaship_doctor::diagnose` against servers broken on purpose: each test serves one fault for
//! real on loopback (a certificate, a link, a manifest, the way the `.ipa` is served, the
//! profile inside it) and asserts the stable code the doctor must name it with, and that
//! nothing else is called an error. The last test diagnoses a healthy build on the real
//! otaship server, which must come out clean.
//!
//! Every server answers as `ota.test` (mapped to 127.0.0.1 with `Options::resolve`) and, unless
//! the certificate is the fault, with a certificate from a throwaway CA given to the doctor in
//! `Options::extra_roots`: a loopback host in a manifest URL is itself an error.
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use otaship_doctor::package::DeviceFacts;
use otaship_doctor::{Options, Report, Request, Severity};
use otaship_ipa::builder::{IpaBuilder, profile_plist};
use otaship_server::tls::{CertificateResolver, certified_key_from_pem, server_config};
use plist::{Dictionary, Value};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The name every test server answers as.
const HOST: &str = "ota.test";
const BUNDLE_ID: &str = "com.example.ota";
/// The device the ad-hoc profiles list.
const DEVICE: &str = "00008030-001544522E60802E";
/// A device no profile lists.
const OTHER_DEVICE: &str = "00008110-000A1B2C3D4E5F60";
/// A 1x1 standard PNG.
const ICON: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];
/// How long one diagnosis may take before the test gives up.
const DIAGNOSIS_DEADLINE: StdDuration = StdDuration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Builds

/// 2100-01-01.
fn far_future() -> SystemTime {
    UNIX_EPOCH + StdDuration::from_secs(4_102_444_800)
}

/// 2020-01-01.
fn long_ago() -> SystemTime {
    UNIX_EPOCH + StdDuration::from_secs(1_577_836_800)
}

/// An `.ipa` signed (as far as the reader can tell) with a bare profile of the given shape.
/// `profile_plist`'s flags are `provisions_all` (enterprise) and `get_task_allow`
/// (development); no device list and neither flag is an App Store profile.
fn ipa_with_profile(devices: Option<&[&str]>, expires: SystemTime) -> Vec<u8> {
    IpaBuilder::new(BUNDLE_ID)
        .profile(profile_plist(&format!("TEAMID1234.{BUNDLE_ID}"), devices, false, false, expires))
        .to_bytes()
}

/// An ad-hoc build for [`DEVICE`] that installs.
fn installable_ipa() -> Vec<u8> {
    ipa_with_profile(Some(&[DEVICE]), far_future())
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A certificate chain (leaf first) and the leaf's key, as PEM.
#[derive(Clone)]
struct Identity {
    chain_pem: String,
    key_pem: String,
}

/// A throwaway root CA that the doctor is told devices trust.
struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        Pki { root: ca("otaship doctor test root", None) }
    }

    fn root_der(&self) -> CertificateDer<'static> {
        self.root.der().clone()
    }

    /// A leaf the root signed for `names`, valid from `from` for `days`.
    fn leaf(&self, names: &[&str], from: OffsetDateTime, days: i64) -> Identity {
        leaf_signed_by(names, from, days, &self.root, &[])
    }
}

fn ca(name: &str, parent: Option<&CertifiedIssuer<'static, KeyPair>>) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("key");
    match parent {
        None => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            CertifiedIssuer::self_signed(params, key).expect("root")
        }
        Some(parent) => {
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            CertifiedIssuer::signed_by(params, key, parent).expect("intermediate")
        }
    }
}

/// Server certificate parameters as Apple wants them: subjectAltName, serverAuth, ≤ 825 days.
fn leaf_params(names: &[&str], from: OffsetDateTime, days: i64) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = from;
    params.not_after = from + Duration::days(days);
    params
}

/// A leaf signed by `issuer`, served with `more` after it.
fn leaf_signed_by(
    names: &[&str],
    from: OffsetDateTime,
    days: i64,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    more: &[&CertifiedIssuer<'static, KeyPair>],
) -> Identity {
    let key = KeyPair::generate().expect("key");
    let leaf = leaf_params(names, from, days).signed_by(&key, issuer).expect("leaf");
    let mut chain_pem = leaf.pem();
    for certificate in more {
        chain_pem.push_str(&certificate.pem());
    }
    Identity { chain_pem, key_pem: key.serialize_pem() }
}

fn self_signed(names: &[&str]) -> Identity {
    let key = KeyPair::generate().expect("key");
    let certificate = leaf_params(names, recently(), 397).self_signed(&key).expect("certificate");
    Identity { chain_pem: certificate.pem(), key_pem: key.serialize_pem() }
}

fn recently() -> OffsetDateTime {
    OffsetDateTime::now_utc() - Duration::days(1)
}

// ---------------------------------------------------------------------------------------------
// The configurable broken server

/// How the `.ipa` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpaServing {
    /// As a static file: Content-Length, Accept-Ranges, single byte ranges.
    File,
    /// Gzipped whenever the client accepts gzip and asks no range, with the compressed length
    /// (a pre-compressed copy, or a CDN that compresses and buffers).
    Gzip,
    /// Gzipped on the fly whenever the client accepts gzip and asks no range, streamed without
    /// a length (nginx's `gzip on` applied to every type).
    GzipStreamed,
    /// Streamed, without a length (chunked in HTTP/1.1) and without ranges.
    Chunked,
}

/// How the install page writes its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkStyle {
    /// `url=` followed by the percent-encoded manifest URL.
    Encoded,
    /// `url=https://…/m.plist?a=1&b=2`, as it stands.
    UnencodedWithQuery,
}

/// Which response goes on without end (a gibibyte of padding after its real content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endless {
    Page,
    Manifest,
    Icon,
}

/// What a test server serves, with one thing (or none) wrong.
#[derive(Clone)]
struct Site {
    /// The certificate; `None` for a good leaf from the test CA.
    identity: Option<Identity>,
    ipa: Vec<u8>,
    manifest_bundle_id: String,
    manifest_status: StatusCode,
    link: LinkStyle,
    ipa_serving: IpaServing,
    endless: Option<Endless>,
}

impl Site {
    /// A site with nothing wrong.
    fn healthy() -> Site {
        Site {
            identity: None,
            ipa: installable_ipa(),
            manifest_bundle_id: BUNDLE_ID.to_owned(),
            manifest_status: StatusCode::OK,
            link: LinkStyle::Encoded,
            ipa_serving: IpaServing::File,
            endless: None,
        }
    }

    /// The routes, with the page's link pointing at `base`'s manifest and the manifest's assets
    /// at `asset_base`.
    fn router(&self, base: &str, asset_base: &str) -> Router {
        let manifest_url = format!("{base}/m.plist");
        let href = match self.link {
            LinkStyle::Encoded => {
                format!("itms-services://?action=download-manifest&amp;url={}", percent_encode(&manifest_url))
            }
            LinkStyle::UnencodedWithQuery => {
                format!("itms-services://?action=download-manifest&amp;url={manifest_url}?a=1&amp;b=2")
            }
        };
        let page = format!(
            "<!DOCTYPE html>\n<html><head><title>Example</title></head>\
             <body><a id=\"install\" href=\"{href}\">Install</a></body></html>\n"
        );
        let content = Content {
            page,
            manifest: manifest_plist(&self.manifest_bundle_id, asset_base),
            manifest_status: self.manifest_status,
            gzipped: Bytes::from(gzip(&self.ipa)),
            ipa: Bytes::from(self.ipa.clone()),
            ipa_serving: self.ipa_serving,
            endless: self.endless,
        };
        Router::new()
            .route("/", get(page_handler))
            .route("/m.plist", get(manifest_handler))
            .route("/app.ipa", get(ipa_handler))
            .route("/icon.png", get(icon_handler))
            .with_state(Arc::new(content))
    }

    /// Serves the site over TLS as `https://ota.test:PORT`.
    async fn start_tls(&self, pki: &Pki) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let base = format!("https://{HOST}:{port}");
        let router = self.router(&base, &base);
        let identity = self.identity.clone().unwrap_or_else(|| pki.leaf(&[HOST], recently(), 397));
        let key = certified_key_from_pem(identity.chain_pem.as_bytes(), identity.key_pem.as_bytes())
            .expect("the certificate and its key");
        let config = server_config(Arc::new(CertificateResolver::new(key)), false).expect("TLS configuration");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = otaship_server::tls::serve(listener, config, router, shutdown).await {
                eprintln!("the test server stopped: {error:#}");
            }
        });
        Running { port, stop: Some(stop) }
    }

    /// Serves the site over plain HTTP as `http://ota.test:PORT`, its manifest pointing at
    /// `asset_base`.
    async fn start_plain(&self, asset_base: &str) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let router = self.router(&format!("http://{HOST}:{port}"), asset_base);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                eprintln!("the test server stopped: {error}");
            }
        });
        Running { port, stop: Some(stop) }
    }
}

/// What the handlers serve.
struct Content {
    page: String,
    manifest: Vec<u8>,
    manifest_status: StatusCode,
    ipa: Bytes,
    gzipped: Bytes,
    ipa_serving: IpaServing,
    endless: Option<Endless>,
}

/// A server running on loopback; stops when dropped.
struct Running {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
}

impl Running {
    fn base(&self) -> String {
        format!("https://{HOST}:{}", self.port)
    }

    /// The install page.
    fn page_url(&self) -> String {
        format!("{}/", self.base())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn manifest_plist(bundle_id: &str, asset_base: &str) -> Vec<u8> {
    let asset = |kind: &str, url: String| {
        let mut asset = Dictionary::new();
        asset.insert("kind".into(), kind.into());
        asset.insert("url".into(), url.into());
        Value::Dictionary(asset)
    };
    let mut metadata = Dictionary::new();
    metadata.insert("bundle-identifier".into(), bundle_id.into());
    metadata.insert("bundle-version".into(), "1.0".into());
    metadata.insert("kind".into(), "software".into());
    metadata.insert("title".into(), "Example".into());
    let mut item = Dictionary::new();
    item.insert(
        "assets".into(),
        Value::Array(vec![
            asset("software-package", format!("{asset_base}/app.ipa")),
            asset("display-image", format!("{asset_base}/icon.png")),
        ]),
    );
    item.insert("metadata".into(), Value::Dictionary(metadata));
    let mut root = Dictionary::new();
    root.insert("items".into(), Value::Array(vec![Value::Dictionary(item)]));
    let mut out = Vec::new();
    Value::Dictionary(root).to_writer_xml(&mut out).expect("manifest");
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Percent-encodes everything outside RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn respond(status: StatusCode, headers: &[(HeaderName, String)], body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().insert(name.clone(), HeaderValue::from_str(value).expect("header value"));
    }
    response
}

/// What a server sends after a response's real content when it never ends it: a gibibyte of
/// spaces in 64 KiB chunks, streamed without a length. Bounded, so that a client that reads it
/// all fails the test by its memory and time rather than hanging it.
const ENDLESS_BYTES: usize = 1 << 30;

/// `content`, then [`ENDLESS_BYTES`] of padding, if `endless` names this response; else `content`.
fn maybe_endless(endless: bool, content: Bytes) -> Body {
    if !endless {
        return Body::from(content);
    }
    let padding = Bytes::from(vec![b' '; 64 << 10]);
    let chunks = ENDLESS_BYTES / padding.len();
    let rest = futures_util::stream::iter((0..chunks).map(move |_| Ok::<Bytes, Infallible>(padding.clone())));
    Body::from_stream(futures_util::StreamExt::chain(futures_util::stream::iter([Ok(content)]), rest))
}

async fn page_handler(State(content): State<Arc<Content>>) -> Response {
    let body = maybe_endless(content.endless == Some(Endless::Page), Bytes::from(content.page.clone()));
    respond(StatusCode::OK, &[(header::CONTENT_TYPE, "text/html; charset=utf-8".into())], body)
}

async fn manifest_handler(State(content): State<Arc<Content>>) -> Response {
    if content.manifest_status != StatusCode::OK {
        return respond(content.manifest_status, &[(header::CONTENT_TYPE, "text/plain".into())], "no such manifest");
    }
    let body = maybe_endless(content.endless == Some(Endless::Manifest), Bytes::from(content.manifest.clone()));
    respond(StatusCode::OK, &[(header::CONTENT_TYPE, "text/xml".into())], body)
}

async fn icon_handler(State(content): State<Arc<Content>>) -> Response {
    let body = maybe_endless(content.endless == Some(Endless::Icon), Bytes::from_static(ICON));
    respond(StatusCode::OK, &[(header::CONTENT_TYPE, "image/png".into())], body)
}

/// The `.ipa` (GET and HEAD: axum answers HEAD with GET's headers), as `ipa_serving` says.
async fn ipa_handler(State(content): State<Arc<Content>>, headers: HeaderMap) -> Response {
    let octets = (header::CONTENT_TYPE, "application/octet-stream".to_owned());
    let ranges = (header::ACCEPT_RANGES, "bytes".to_owned());
    let range = headers.get(header::RANGE).and_then(|value| value.to_str().ok());
    let gzip = (header::CONTENT_ENCODING, "gzip".to_owned());
    let compress = range.is_none() && accepts_gzip(&headers);
    match content.ipa_serving {
        IpaServing::Chunked => return respond(StatusCode::OK, &[octets], streamed(&content.ipa)),
        IpaServing::GzipStreamed if compress => {
            return respond(StatusCode::OK, &[octets, ranges, gzip], streamed(&content.gzipped));
        }
        IpaServing::Gzip if compress => {
            return respond(StatusCode::OK, &[octets, ranges, gzip], content.gzipped.clone());
        }
        IpaServing::Gzip | IpaServing::GzipStreamed | IpaServing::File => {}
    }
    let total = content.ipa.len();
    match range.map(|range| single_range(range, total)) {
        None => respond(StatusCode::OK, &[octets, ranges], content.ipa.clone()),
        Some(Some((start, end))) => respond(
            StatusCode::PARTIAL_CONTENT,
            &[octets, ranges, (header::CONTENT_RANGE, format!("bytes {start}-{end}/{total}"))],
            content.ipa.slice(start..=end),
        ),
        Some(None) => respond(
            StatusCode::RANGE_NOT_SATISFIABLE,
            &[(header::CONTENT_RANGE, format!("bytes */{total}"))],
            Body::empty(),
        ),
    }
}

/// A body without a known length: chunked in HTTP/1.1, no Content-Length in HTTP/2.
fn streamed(bytes: &Bytes) -> Body {
    let chunks: Vec<Result<Bytes, Infallible>> =
        bytes.chunks(4096).map(|chunk| Ok(Bytes::copy_from_slice(chunk))).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|coding| coding.trim().starts_with("gzip")))
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against `total` bytes: the inclusive range, or `None`
/// when it cannot be served (several ranges included: this server serves one).
fn single_range(value: &str, total: usize) -> Option<(usize, usize)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (start, end) = if first.is_empty() {
        let suffix: usize = last.parse().ok()?;
        (total.saturating_sub(suffix), total - 1)
    } else {
        let start: usize = first.parse().ok()?;
        let end = if last.is_empty() { total - 1 } else { last.parse::<usize>().ok()?.min(total - 1) };
        (start, end)
    };
    (start <= end).then_some((start, end))
}

// ---------------------------------------------------------------------------------------------
// The doctor

/// Options that map `ota.test` on each port to loopback and trust `roots`.
fn options(roots: Vec<CertificateDer<'static>>, ports: &[u16]) -> Options {
    Options {
        extra_roots: roots,
        resolve: ports.iter().map(|port| (HOST.to_owned(), SocketAddr::from(([127, 0, 0, 1], *port)))).collect(),
    }
}

async fn diagnose(target: &str, options: Options, udid: Option<&str>) -> Report {
    let request = Request {
        target: target.to_owned(),
        options,
        device: DeviceFacts { udid: udid.map(str::to_owned), ios: None },
        full: false,
    };
    tokio::time::timeout(DIAGNOSIS_DEADLINE, otaship_doctor::diagnose(&request))
        .await
        .expect("the diagnosis finishes in time")
        .expect("the doctor runs")
}

/// Diagnoses a site's install page, trusting the test CA, for [`DEVICE`].
async fn diagnose_site(site: &Running, pki: &Pki) -> Report {
    diagnose(&site.page_url(), options(vec![pki.root_der()], &[site.port]), Some(DEVICE)).await
}

fn codes(report: &Report) -> Vec<&'static str> {
    report.findings.iter().map(|finding| finding.code).collect()
}

/// The distinct codes of the errors, sorted.
fn error_codes(report: &Report) -> Vec<&'static str> {
    let mut errors: Vec<&'static str> = report
        .findings
        .iter()
        .filter(|finding| finding.severity == Severity::Error)
        .map(|finding| finding.code)
        .collect();
    errors.sort_unstable();
    errors.dedup();
    errors
}

/// Asserts that `expected` is found as an error and that no other error is.
#[track_caller]
fn assert_errors(report: &Report, expected: &[&str]) {
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    for code in &expected {
        assert!(
            report.findings.iter().any(|finding| finding.code == *code && finding.severity == Severity::Error),
            "the doctor must report the error {code}; it found {:#?}",
            report.findings
        );
    }
    assert_eq!(error_codes(report), expected, "errors besides the intended fault: {:#?}", report.findings);
    assert!(!report.ok, "a report with errors is not ok");
}

// ---------------------------------------------------------------------------------------------
// The harness itself

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthy_test_site_has_no_error() {
    // Without this, "no other error" below would prove nothing about the fault under test.
    let pki = Pki::new();
    let server = Site::healthy().start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert!(report.ok, "{:#?}", report.findings);
    assert_eq!(error_codes(&report), Vec::<&str>::new(), "{:#?}", report.findings);
    let found = codes(&report);
    for code in ["tls-negotiated", "tls-ok", "manifest-ok"] {
        assert!(found.contains(&code), "{code} in {found:?}");
    }
    assert_eq!(report.manifest_url.as_deref(), Some(format!("{}/m.plist", server.base()).as_str()));
    assert_eq!(report.package_url.as_deref(), Some(format!("{}/app.ipa", server.base()).as_str()));
    let ipa_len = installable_ipa().len() as u64;
    assert!(report.bytes_transferred > 0, "the doctor read the .ipa through ranges");
    // Reading through ranges fetches whole 64 KiB blocks; this .ipa is smaller than one.
    assert!(report.bytes_transferred < ipa_len + 64 * 1024, "{} bytes", report.bytes_transferred);
    assert_eq!(single_range("bytes=0-9", 100), Some((0, 9)));
    assert_eq!(single_range("bytes=90-", 100), Some((90, 99)));
    assert_eq!(single_range("bytes=-10", 100), Some((90, 99)));
    assert_eq!(single_range("bytes=95-200", 100), Some((95, 99)));
    assert_eq!(single_range("bytes=100-", 100), None);
    assert_eq!(single_range("bytes=0-1,5-6", 100), None);
}

// ---------------------------------------------------------------------------------------------
// 1. The link and the manifest URL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_manifest_url_is_manifest_not_https_and_is_still_fetched() {
    let pki = Pki::new();
    // The .ipa and icon over good HTTPS; the manifest over plain HTTP on another port.
    let secure = Site::healthy().start_tls(&pki).await;
    let plain = Site::healthy().start_plain(&secure.base()).await;
    let manifest_url = format!("http://{HOST}:{}/m.plist", plain.port);
    let link = format!("itms-services://?action=download-manifest&url={}", percent_encode(&manifest_url));
    let report = diagnose(&link, options(vec![pki.root_der()], &[secure.port, plain.port]), Some(DEVICE)).await;
    assert_errors(&report, &["manifest-not-https"]);
    assert_eq!(report.manifest_url.as_deref(), Some(manifest_url.as_str()));
    // Fetched anyway: its package URL was read, and the .ipa behind it judged (TLS included).
    assert_eq!(report.package_url.as_deref(), Some(format!("{}/app.ipa", secure.base()).as_str()));
    let found = codes(&report);
    assert!(found.contains(&"manifest-ok") && found.contains(&"tls-ok"), "{found:?}");
    assert!(report.bytes_transferred > 0);
}

/// Regression: the link check and the manifest check both judge the scheme; one finding is said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_manifest_url_is_reported_once() {
    let pki = Pki::new();
    let secure = Site::healthy().start_tls(&pki).await;
    let plain = Site::healthy().start_plain(&secure.base()).await;
    let manifest_url = format!("http://{HOST}:{}/m.plist", plain.port);
    let link = format!("itms-services://?action=download-manifest&url={}", percent_encode(&manifest_url));
    let report = diagnose(&link, options(vec![pki.root_der()], &[secure.port, plain.port]), Some(DEVICE)).await;
    let times = report.findings.iter().filter(|finding| finding.code == "manifest-not-https").count();
    assert_eq!(
        times, 1,
        "manifest-not-https is reported {times} times for one http:// manifest URL; \
         check_manifest_chain's comment says it keeps one finding of a kind: {:#?}",
        report.findings
    );
}

// 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencoded_manifest_url_with_a_query_is_link_url_not_encoded() {
    let pki = Pki::new();
    let server = Site { link: LinkStyle::UnencodedWithQuery, ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["link-url-not-encoded"]);
    // What iOS fetches: the URL cut at the raw &.
    assert_eq!(report.manifest_url.as_deref(), Some(format!("{}/m.plist?a=1", server.base()).as_str()));
}

/// A page, manifest or display image that never ends is read up to a cap, never whole: the
/// page's link is still found in its first bytes, an endless manifest is `manifest-too-large`,
/// and an endless image is judged by its start. The doctor (and the server's Diagnose page)
/// stays within a few MiB whatever the server sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_never_end_are_read_up_to_a_cap() {
    let pki = Pki::new();
    for (endless, errors) in
        [(Endless::Page, &[][..]), (Endless::Manifest, &["manifest-too-large"][..]), (Endless::Icon, &[][..])]
    {
        let server = Site { endless: Some(endless), ..Site::healthy() }.start_tls(&pki).await;
        let report = diagnose_site(&server, &pki).await;
        if errors.is_empty() {
            assert_eq!(error_codes(&report), Vec::<&str>::new(), "{endless:?}: {:#?}", report.findings);
        } else {
            assert_errors(&report, errors);
        }
        assert!(
            report.bytes_transferred < 8 << 20,
            "{endless:?}: {} bytes read from a body that never ends",
            report.bytes_transferred
        );
    }
}

// 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_manifest_is_manifest_http_error() {
    let pki = Pki::new();
    let server = Site { manifest_status: StatusCode::NOT_FOUND, ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["manifest-http-error"]);
    let message = report
        .findings
        .iter()
        .find(|finding| finding.code == "manifest-http-error")
        .map(|finding| finding.message.clone())
        .unwrap_or_default();
    assert!(message.contains("404"), "{message}");
    assert_eq!(report.package_url, None, "nothing behind a missing manifest is read");
}

// 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_naming_another_bundle_is_bundle_id_mismatch() {
    let pki = Pki::new();
    let server = Site { manifest_bundle_id: "com.example.other".to_owned(), ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["bundle-id-mismatch"]);
}

// ---------------------------------------------------------------------------------------------
// 2-5. Certificates (the doctor's HTTP client accepts them all, so the rest is still checked)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_leaf_is_tls_self_signed_leaf() {
    let pki = Pki::new();
    let server = Site { identity: Some(self_signed(&[HOST])), ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["tls-self-signed-leaf"]);
    // Without any extra root (the plain `otaship doctor URL` case) it is named the same.
    let report = diagnose(&server.page_url(), options(Vec::new(), &[server.port]), Some(DEVICE)).await;
    assert_errors(&report, &["tls-self-signed-leaf"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_tls_name_mismatch() {
    let pki = Pki::new();
    let identity = pki.leaf(&["other.test", "www.ota.test"], recently(), 397);
    let server = Site { identity: Some(identity), ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["tls-name-mismatch"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_tls_expired() {
    let pki = Pki::new();
    let identity = pki.leaf(&[HOST], OffsetDateTime::now_utc() - Duration::days(400), 397);
    let server = Site { identity: Some(identity), ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["tls-expired"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_sent_without_its_intermediate_is_tls_missing_intermediate() {
    let pki = Pki::new();
    let intermediate = ca("otaship doctor test intermediate", Some(&pki.root));
    // The server sends the leaf alone.
    let leaf_only = leaf_signed_by(&[HOST], recently(), 397, &intermediate, &[]);
    let server = Site { identity: Some(leaf_only), ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["tls-missing-intermediate"]);
    drop(server);
    // Control: the same kind of leaf with its intermediate after it is trusted.
    let full_chain = leaf_signed_by(&[HOST], recently(), 397, &intermediate, &[&intermediate]);
    let server = Site { identity: Some(full_chain), ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_eq!(error_codes(&report), Vec::<&str>::new(), "{:#?}", report.findings);
    assert!(codes(&report).contains(&"tls-ok"), "{:#?}", report.findings);
}

// ---------------------------------------------------------------------------------------------
// 6. TLS 1.1 only (openssl s_server)

/// `openssl s_server`, killed and reaped when dropped, however the test ends.
struct OpensslServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

impl OpensslServer {
    /// Serves `identity` with TLS 1.1 only (at security level 0, which Debian's openssl needs
    /// to speak TLS 1.1 at all), answering HTTP with its status page (`-www`). Waits until it
    /// accepts connections.
    fn start_tls11(identity: &Identity) -> OpensslServer {
        let deadline = Instant::now() + StdDuration::from_secs(30);
        // The port is chosen free, then handed to openssl: retry if another process took it.
        loop {
            let dir = tempfile::tempdir().expect("tempdir");
            let cert = dir.path().join("cert.pem");
            let key = dir.path().join("key.pem");
            let log = dir.path().join("stderr.log");
            std::fs::write(&cert, &identity.chain_pem).expect("write");
            std::fs::write(&key, &identity.key_pem).expect("write");
            let port = free_port();
            let mut child = std::process::Command::new("openssl")
                .args(["s_server", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-www", "-accept"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("-cert")
                .arg(&cert)
                .arg("-key")
                .arg(&key)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("openssl is installed (scripts/test installs it)");
            let stdout = child.stdout.take().expect("stdout");
            // From here on, the guard kills it whatever happens.
            let server = OpensslServer { child, port, _dir: dir };
            // openssl prints ACCEPT once it listens; keep draining its output so that it never
            // blocks on a full pipe.
            let (ready, accepting) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.trim() == "ACCEPT" {
                        let _ = ready.send(());
                    }
                }
            });
            let left = deadline.saturating_duration_since(Instant::now());
            match accepting.recv_timeout(left) {
                Ok(()) => return server,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) if Instant::now() < deadline => {
                    // Exited before listening (the port was taken?): try another port.
                    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                    eprintln!("openssl s_server exited before listening, retrying: {stderr}");
                    drop(server);
                }
                Err(_) => {
                    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("openssl s_server -tls1_1 did not start listening: {stderr}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_1_1_only_server_is_tls_handshake_failed() {
    let pki = Pki::new();
    let openssl = OpensslServer::start_tls11(&pki.leaf(&[HOST], recently(), 397));
    // openssl really speaks TLS 1.1 here (else this test would prove nothing).
    let (ok, text) = tokio::task::spawn_blocking({
        let address = format!("127.0.0.1:{}", openssl.port);
        move || {
            let output = std::process::Command::new("openssl")
                .args(["s_client", "-connect", &address, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-brief"])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl s_client");
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            (text.contains("TLSv1.1"), text)
        }
    })
    .await
    .expect("s_client");
    assert!(ok, "openssl s_server serves TLS 1.1 on this machine: {text}");

    let manifest_url = format!("https://{HOST}:{}/m.plist", openssl.port);
    let link = format!("itms-services://?action=download-manifest&url={}", percent_encode(&manifest_url));
    let report = diagnose(&link, options(vec![pki.root_der()], &[openssl.port]), Some(DEVICE)).await;
    // The doctor (TLS 1.2 and 1.3 only, like iOS's ATS) cannot shake hands, so it cannot fetch
    // the manifest either.
    assert_errors(&report, &["tls-handshake-failed", "manifest-unreachable"]);
    let message = report
        .findings
        .iter()
        .find(|finding| finding.code == "tls-handshake-failed")
        .map(|finding| finding.message.to_ascii_lowercase())
        .unwrap_or_default();
    assert!(message.contains("version"), "the cause is the protocol version: {message}");
}

// ---------------------------------------------------------------------------------------------
// 10. How the .ipa is served

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipa_compressed_on_the_fly_is_ipa_compressed() {
    let pki = Pki::new();
    // As nginx's `gzip on` does it: compressed and streamed, so without a length either.
    let server = Site { ipa_serving: IpaServing::GzipStreamed, ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["ipa-compressed", "ipa-no-content-length"]);
    drop(server);

    // Compressed with the compressed length announced: see the regression test below.
}

/// Regression: HEAD announced the compressed length; ranges are read against the identity length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_ipa_with_a_length_is_only_ipa_compressed() {
    let pki = Pki::new();
    let server = Site { ipa_serving: IpaServing::Gzip, ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert!(
        !codes(&report).contains(&"ipa-unreadable"),
        "the HEAD's Content-Length describes the gzip-encoded body ({} bytes), not the \
         .ipa ({} bytes, which the identity range requests read); taking it as the archive's length \
         makes a sound .ipa look truncated: {:#?}",
        gzip(&installable_ipa()).len(),
        installable_ipa().len(),
        report.findings
    );
    assert_errors(&report, &["ipa-compressed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipa_streamed_without_a_length_is_ipa_no_content_length() {
    let pki = Pki::new();
    let server = Site { ipa_serving: IpaServing::Chunked, ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["ipa-no-content-length"]);
    // Still read (downloaded whole, as there are no ranges) and judged.
    assert!(codes(&report).contains(&"ipa-no-ranges"), "{:#?}", report.findings);
    assert!(report.bytes_transferred >= installable_ipa().len() as u64, "{}", report.bytes_transferred);
}

// ---------------------------------------------------------------------------------------------
// 11. The profile inside the served .ipa, and the device

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_store_profile_is_app_store_profile() {
    let pki = Pki::new();
    let ipa = ipa_with_profile(None, far_future());
    let server = Site { ipa, ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["app-store-profile"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_profile_is_profile_expired() {
    let pki = Pki::new();
    let ipa = ipa_with_profile(Some(&[DEVICE]), long_ago());
    let server = Site { ipa, ..Site::healthy() }.start_tls(&pki).await;
    let report = diagnose_site(&server, &pki).await;
    assert_errors(&report, &["profile-expired"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_missing_from_the_profile_is_device_not_in_profile() {
    let pki = Pki::new();
    let server = Site::healthy().start_tls(&pki).await;
    let trusting = || options(vec![pki.root_der()], &[server.port]);
    let report = diagnose(&server.page_url(), trusting(), Some(OTHER_DEVICE)).await;
    assert_errors(&report, &["device-not-in-profile"]);
    // The listed device, in any case, is fine; and without a UDID nothing is said.
    let report = diagnose(&server.page_url(), trusting(), Some(&DEVICE.to_ascii_lowercase())).await;
    assert_eq!(error_codes(&report), Vec::<&str>::new(), "{:#?}", report.findings);
    let report = diagnose(&server.page_url(), trusting(), None).await;
    assert_eq!(error_codes(&report), Vec::<&str>::new(), "{:#?}", report.findings);
}

// ---------------------------------------------------------------------------------------------
// 12. A healthy build on the real otaship server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_otaship_build_diagnoses_clean() {
    use otaship_server::{AppState, Config, ServeArgs};
    let data_dir = tempfile::tempdir().expect("tempdir");
    // The public URL names the port, so it is chosen before the server binds it.
    let port = free_port();
    let args = ServeArgs {
        data_dir: Some(data_dir.path().to_owned()),
        listen: Some(format!("127.0.0.1:{port}")),
        http_listen: Some("127.0.0.1:0".into()),
        tls: Some("local-ca".into()),
        // No --host: the local CA's certificate names the public URL's host by itself.
        public_url: Some(format!("https://{HOST}:{port}")),
        ..ServeArgs::default()
    };
    let state = AppState::open(Config::load(&args).expect("config")).await.expect("state");
    let token = otaship_server::tokens::generate();
    state.seed_token(&token).await.expect("token");
    let listeners = otaship_server::bind(&state).await.expect("bind");
    let local_ca = state.tls.as_ref().and_then(|tls| tls.local_ca.clone()).expect("the local CA");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(otaship_server::serve(state.clone(), listeners, async {
        let _ = stopped.await;
    }));

    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(local_ca.ca_pem().as_bytes()).expect("CA")])
        .resolve(HOST, address)
        .build()
        .expect("client");
    let response = client
        .post(format!("https://{HOST}:{port}/api/v1/builds"))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(installable_ipa())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let build: serde_json::Value = response.json().await.expect("JSON");
    let install_url = build["install_url"].as_str().expect("install_url").to_owned();
    assert!(install_url.starts_with(&format!("https://{HOST}:{port}/")), "{install_url}");

    let ca_der = CertificateDer::from(local_ca.ca_der().to_vec());
    let report = diagnose(&install_url, options(vec![ca_der], &[port]), Some(DEVICE)).await;
    assert!(report.ok, "a healthy otaship build must diagnose clean: {:#?}", report.findings);
    assert_eq!(error_codes(&report), Vec::<&str>::new(), "{:#?}", report.findings);
    let found = codes(&report);
    for code in ["tls-ok", "manifest-ok"] {
        assert!(found.contains(&code), "{code} in {:#?}", report.findings);
    }
    assert!(report.link.is_some() && report.package_url.is_some(), "{report:#?}");

    let _ = stop.send(());
    task.await.expect("join").expect("clean shutdown");
}
