//! Device enrollment end to end: the signed Profile Service profile, device replies made here
//! and signed with a test device certificate in BER with indefinite lengths (as devices send
//! them: `openssl cms -sign -stream`), the refusals (unsigned, altered, forged signature,
//! replayed, unknown challenge), both UDID forms, the result page and its cookie, eligibility
//! on install pages with real fixture profiles, and the uploaders' devices API and exports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use otaship_ipa::builder::{IpaBuilder, profile_plist};
use otaship_server::ServeArgs;
use plist::{Dictionary, Value as Plist};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{FIXTURES, Server, UiClient, uploaded};

/// A certificate authority that issues device certificates, and one device's identity: made
/// with the `openssl` command (the same tool then signs replies, independently of otaship's
/// own CMS code).
pub struct TestDevice {
    dir: tempfile::TempDir,
    /// The CA's certificate (PEM file), for `--device-ca-cert`.
    pub ca_pem: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (scripts/test installs it)");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

impl TestDevice {
    /// A CA named `ca_name` and a device identity it issued, with an RSA key of `bits` (real
    /// device identities are 1024-bit RSA).
    pub fn new(ca_name: &str, bits: u32) -> TestDevice {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        let rsa = format!("rsa:{bits}");
        openssl(
            path,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                &format!("/CN={ca_name}/O=otaship tests"),
                "-days",
                "30",
            ],
        );
        openssl(
            path,
            &[
                "req",
                "-newkey",
                &rsa,
                "-nodes",
                "-keyout",
                "device.key",
                "-out",
                "device.csr",
                "-subj",
                "/CN=test device",
            ],
        );
        openssl(
            path,
            &[
                "x509",
                "-req",
                "-in",
                "device.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "device.pem",
                "-days",
                "30",
            ],
        );
        TestDevice { ca_pem: path.join("ca.pem"), dir }
    }

    /// A signed reply: the plist of `attributes`, attached to a BER SignedData signed with the
    /// device's key (SHA-1, as older devices sign), the CA certificate included.
    pub fn reply(&self, attributes: &[(&str, &str)]) -> Vec<u8> {
        let mut dict = Dictionary::new();
        for (key, value) in attributes {
            dict.insert((*key).to_owned(), Plist::from(*value));
        }
        let path = self.dir.path().join(format!("reply-{}.plist", otaship_server::tokens::random_hex(4)));
        Plist::Dictionary(dict).to_file_xml(&path).expect("plist");
        let out = path.with_extension("der");
        openssl(
            self.dir.path(),
            &[
                "cms",
                "-sign",
                "-stream",
                "-nodetach",
                "-binary",
                "-outform",
                "DER",
                "-md",
                "sha1",
                "-signer",
                "device.pem",
                "-inkey",
                "device.key",
                "-certfile",
                "ca.pem",
                "-in",
                path.to_str().expect("path"),
                "-out",
                out.to_str().expect("path"),
            ],
        );
        std::fs::read(out).expect("reply")
    }
}

/// The one test device, shared by the tests of this binary (making keys takes a while).
pub(crate) fn test_device() -> &'static TestDevice {
    static DEVICE: std::sync::OnceLock<TestDevice> = std::sync::OnceLock::new();
    DEVICE.get_or_init(|| TestDevice::new("otaship test device CA", 1024))
}

/// A client that neither follows redirects nor keeps cookies (as a device's Profile Service).
fn device_client(server: &Server) -> reqwest::Client {
    server.client_without_redirects()
}

/// Downloads an enrollment profile (optionally on behalf of install page `return_token`) and
/// returns the profile's plist and the signed bytes.
pub async fn download_profile(server: &Server, return_token: Option<&str>) -> (Dictionary, Vec<u8>) {
    let query = return_token.map(|token| format!("?return={token}")).unwrap_or_default();
    let response = device_client(server)
        .get(format!("{}/devices/enroll.mobileconfig{query}", server.base))
        .send()
        .await
        .expect("profile");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-apple-aspen-config");
    let signed = response.bytes().await.expect("body").to_vec();
    let parsed = otaship_ipa::cms::parse_signed_data(&signed).expect("a CMS SignedData");
    assert_eq!(parsed.digest, otaship_ipa::cms::DigestCheck::Valid);
    let plist = Plist::from_reader_xml(parsed.content.as_slice()).expect("the profile is an XML plist");
    (plist.into_dictionary().expect("a dictionary"), signed)
}

/// Opens a result page, as Safari does after enrollment, and returns its device cookie
/// (`name=value`).
async fn device_cookie(server: &Server, location: &str) -> String {
    let response = device_client(server).get(location).send().await.expect("page");
    let header = response.headers()["set-cookie"].to_str().expect("cookie");
    header.split(';').next().expect("pair").to_owned()
}

fn challenge_of(profile: &Dictionary) -> String {
    let content = profile["PayloadContent"].as_dictionary().expect("PayloadContent is a dictionary");
    content["Challenge"].as_string().expect("Challenge").to_owned()
}

/// Posts a reply as a device does.
pub async fn post_reply(server: &Server, body: Vec<u8>) -> reqwest::Response {
    device_client(server)
        .post(format!("{}/devices/enroll/callback", server.base))
        .header("content-type", "application/pkcs7-signature")
        .header("user-agent", "Profile/1.0")
        .body(body)
        .send()
        .await
        .expect("callback")
}

/// Enrolls `udid` with `device` and returns the result page's URL (the 301's Location).
pub(crate) async fn enroll(
    server: &Server,
    device: &TestDevice,
    udid: &str,
    build: &str,
    return_token: Option<&str>,
) -> String {
    let (profile, _) = download_profile(server, return_token).await;
    let challenge = challenge_of(&profile);
    let reply = device.reply(&[
        ("UDID", udid),
        ("PRODUCT", "iPhone15,2"),
        ("VERSION", build),
        ("SERIAL", "F2LXK0TEST"),
        ("DEVICE_NAME", "Tess's iPhone"),
        ("CHALLENGE", &challenge),
    ]);
    let response = post_reply(server, reply).await;
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY, "{}", response.text().await.unwrap_or_default());
    response.headers()["location"].to_str().expect("location").to_owned()
}

/// A build signed for `devices` (ad hoc) or for every device (enterprise), with an extension
/// whose own profile lists `extension_devices`.
pub(crate) fn build_for(
    bundle_id: &str,
    devices: Option<&[&str]>,
    extension_devices: Option<&[&str]>,
    min_os: &str,
) -> Vec<u8> {
    let far = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let app_id = format!("ABCDE12345.{bundle_id}");
    let profile = match devices {
        Some(devices) => profile_plist(&app_id, Some(devices), false, false, far),
        None => profile_plist(&app_id, None, true, false, far),
    };
    let mut builder = IpaBuilder::new(bundle_id)
        .info("CFBundleDisplayName", "Tom & Jerry <beta>")
        .info("CFBundleShortVersionString", "3.1")
        .info("MinimumOSVersion", min_os)
        .profile(profile);
    if let Some(extension_devices) = extension_devices {
        let extension_id = format!("{bundle_id}.share");
        let mut info = Dictionary::new();
        info.insert("CFBundleIdentifier".into(), extension_id.clone().into());
        info.insert("CFBundleExecutable".into(), "Share".into());
        info.insert("CFBundlePackageType".into(), "XPC!".into());
        let mut plist_bytes = Vec::new();
        Plist::Dictionary(info).to_writer_xml(&mut plist_bytes).expect("plist");
        builder = builder.app_file("PlugIns/Share.appex/Info.plist", plist_bytes).app_file(
            "PlugIns/Share.appex/embedded.mobileprovision",
            profile_plist(&format!("ABCDE12345.{extension_id}"), Some(extension_devices), false, false, far),
        );
    }
    builder.to_bytes()
}

const UDID: &str = "00008030-001544522E60802E";

#[tokio::test]
async fn the_enrollment_profile_is_a_signed_profile_service_with_a_fresh_challenge() {
    let server = Server::start_with(ServeArgs { tls: Some("local-ca".into()), ..ServeArgs::default() }).await;
    let (profile, signed) = download_profile(&server, None).await;
    assert_eq!(profile["PayloadType"].as_string(), Some("Profile Service"));
    assert_eq!(profile["PayloadVersion"].as_signed_integer(), Some(1));
    let content = profile["PayloadContent"].as_dictionary().expect("dict");
    assert_eq!(content["URL"].as_string(), Some(format!("{}/devices/enroll/callback", server.base).as_str()));
    let attributes: Vec<&str> =
        content["DeviceAttributes"].as_array().expect("array").iter().filter_map(Plist::as_string).collect();
    assert_eq!(attributes, ["UDID", "PRODUCT", "VERSION", "SERIAL", "DEVICE_NAME"]);
    let challenge = challenge_of(&profile);
    assert_eq!(challenge.len(), 64);
    let (again, _) = download_profile(&server, None).await;
    assert_ne!(challenge_of(&again), challenge, "every download carries its own challenge");
    assert_ne!(again["PayloadUUID"], profile["PayloadUUID"]);

    // Signed with the server's TLS identity (the local CA's leaf): openssl, independently of
    // otaship's CMS code, verifies it against the local CA.
    let parsed = otaship_ipa::cms::parse_signed_data(&signed).expect("CMS");
    let leaf = server.state.tls.as_ref().and_then(|tls| tls.identity()).expect("a TLS identity");
    assert_eq!(parsed.certificates[0], leaf.cert[0].as_ref().to_vec(), "signed with the served certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = server.state.tls.as_ref().and_then(|tls| tls.local_ca.as_ref()).expect("local CA").ca_pem();
    std::fs::write(dir.path().join("ca.pem"), ca).expect("write");
    std::fs::write(dir.path().join("profile.mobileconfig"), &signed).expect("write");
    let verified = openssl(
        dir.path(),
        &["cms", "-verify", "-inform", "DER", "-in", "profile.mobileconfig", "-CAfile", "ca.pem", "-purpose", "any"],
    );
    assert!(String::from_utf8_lossy(&verified).contains("Profile Service"));
}

#[tokio::test]
async fn a_device_reply_enrolls_the_device_and_redirects_301_to_its_page() {
    let server = Server::start().await;
    let device = test_device();
    let build = uploaded(&server, build_for("com.example.tom", Some(&[UDID]), None, "15.0")).await;
    let token = build["install_url"].as_str().expect("url").rsplit('/').next().expect("token").to_owned();
    let location = enroll(&server, device, &UDID.to_ascii_lowercase(), "22A3354", Some(&token)).await;
    assert!(location.starts_with(&format!("{}/devices/enrolled/", server.base)), "{location}");
    assert!(!location.contains(UDID) && !location.to_ascii_uppercase().contains(UDID), "an opaque id, not the UDID");

    let response = device_client(&server)
        .get(&location)
        .header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0_1 like Mac OS X)")
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(
        cookie.starts_with("otaship_device=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let html = response.text().await.expect("html");
    assert!(html.contains(UDID), "the UDID in its canonical (upper-case) form");
    assert!(html.contains("iPhone 14 Pro") && html.contains("18.0.1"), "model and iOS version");
    assert!(html.contains(&format!("/i/{token}")), "leads back to the build it came from");
    assert!(html.contains("builds-not-listed"), "a device not signed by Apple's CA gets no build list");

    let devices = server.api_json("/api/v1/devices", &[]).await;
    let list = devices.as_array().expect("array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["udid"], UDID);
    assert_eq!(list[0]["product"], "iPhone15,2");
    assert_eq!(list[0]["model"], "iPhone 14 Pro");
    assert_eq!(list[0]["os_build"], "22A3354");
    assert_eq!(list[0]["ios_version"], "18.0.1", "Safari's version, which agrees with the build");
    assert_eq!(list[0]["name"], "Tess's iPhone");
    assert_eq!(list[0]["verified"], false);

    // The cookie makes the install page speak about this device.
    let value = cookie.split(';').next().expect("pair");
    let html = server.page_with_cookie(build["install_url"].as_str().expect("url"), value).await;
    assert!(
        html.contains("id=\"device-check\"") && html.contains("is in this build&#39;s provisioning profile"),
        "{html}"
    );
    // A forged cookie is ignored.
    let forged = format!("otaship_device={}.{}", list[0]["id"].as_str().expect("id"), "00".repeat(32));
    let html = server.page_with_cookie(build["install_url"].as_str().expect("url"), &forged).await;
    assert!(!html.contains("id=\"device-check\"") && html.contains("id=\"enroll-hint\""));

    // Enrolling again keeps one device (both spellings are one UDID) and its given name.
    let id = list[0]["id"].as_str().expect("id").to_owned();
    let renamed = server
        .client()
        .patch(format!("{}/api/v1/devices/{id}", server.base))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({"name": "QA iPhone <3>"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(renamed.status(), StatusCode::OK);
    enroll(&server, device, UDID, "22B83", None).await;
    let devices = server.api_json("/api/v1/devices", &[]).await;
    assert_eq!(devices.as_array().expect("array").len(), 1);
    assert_eq!(devices[0]["name"], "QA iPhone <3>");
    assert_eq!(devices[0]["os_build"], "22B83");
    assert_eq!(devices[0]["ios_version"], "18.1", "a new build forgets the old Safari version");
    assert_eq!(devices[0]["ios_version_exact"], false);
}

#[tokio::test]
async fn unsigned_altered_forged_replayed_and_unknown_replies_are_refused() {
    let server = Server::start().await;
    let device = test_device();
    let (profile, _) = download_profile(&server, None).await;
    let challenge = challenge_of(&profile);
    let attributes =
        [("UDID", UDID), ("PRODUCT", "iPhone15,2"), ("VERSION", "22A3354"), ("CHALLENGE", challenge.as_str())];
    let reply = device.reply(&attributes);
    assert_eq!(&reply[..2], &[0x30, 0x80], "BER with indefinite lengths, as devices send");

    let code_of = |response: reqwest::Response| async move {
        let status = response.status();
        let body: Value = response.json().await.expect("JSON error");
        (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
    };

    // Unsigned: the bare plist.
    let mut bare = Vec::new();
    let mut dict = Dictionary::new();
    for (key, value) in attributes {
        dict.insert(key.to_owned(), Plist::from(value));
    }
    Plist::Dictionary(dict).to_writer_xml(&mut bare).expect("plist");
    assert_eq!(
        code_of(post_reply(&server, bare).await).await,
        (StatusCode::BAD_REQUEST, "device-reply-unsigned".to_owned())
    );

    // Altered: the UDID changed inside the signed content.
    let at = find(&reply, UDID.as_bytes()).expect("the UDID in the reply");
    let mut altered = reply.clone();
    altered[at + UDID.len() - 1] = b'F';
    assert_eq!(
        code_of(post_reply(&server, altered).await).await,
        (StatusCode::BAD_REQUEST, "device-reply-altered".to_owned())
    );

    // Forged: the signature value changed.
    let signature = otaship_ipa::cms::parse_signed_data(&reply).expect("CMS").signers[0].signature.clone();
    let at = find(&reply, &signature).expect("the signature in the reply");
    let mut forged = reply.clone();
    forged[at + signature.len() / 2] ^= 0x01;
    assert_eq!(
        code_of(post_reply(&server, forged).await).await,
        (StatusCode::BAD_REQUEST, "device-reply-signature".to_owned())
    );

    // Garbage and truncation.
    assert_eq!(code_of(post_reply(&server, reply[..reply.len() / 2].to_vec()).await).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(code_of(post_reply(&server, vec![0x30, 0x80, 0xff]).await).await.0, StatusCode::BAD_REQUEST);
    let too_large = post_reply(&server, vec![0x30; otaship_ipa::device::MAX_REPLY_BYTES + 1]).await;
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A bad UDID.
    let bad_udid = device.reply(&[("UDID", "not-a-udid"), ("CHALLENGE", challenge.as_str())]);
    assert_eq!(
        code_of(post_reply(&server, bad_udid).await).await,
        (StatusCode::BAD_REQUEST, "device-reply-incomplete".to_owned())
    );

    // The genuine reply enrolls once; replaying it is refused.
    assert_eq!(post_reply(&server, reply.clone()).await.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        code_of(post_reply(&server, reply).await).await,
        (StatusCode::FORBIDDEN, "enrollment-expired".to_owned())
    );
    // A challenge the server never handed out, and none at all.
    let unknown = device.reply(&[("UDID", UDID), ("CHALLENGE", &"ab".repeat(32))]);
    assert_eq!(
        code_of(post_reply(&server, unknown).await).await,
        (StatusCode::FORBIDDEN, "enrollment-expired".to_owned())
    );
    let none = device.reply(&[("UDID", UDID)]);
    assert_eq!(
        code_of(post_reply(&server, none).await).await,
        (StatusCode::FORBIDDEN, "enrollment-expired".to_owned())
    );
    // Only the genuine reply left a device behind.
    assert_eq!(server.api_json("/api/v1/devices", &[]).await.as_array().expect("array").len(), 1);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[tokio::test]
async fn a_device_of_a_trusted_device_ca_is_verified_and_sees_the_builds_it_can_install() {
    let lab = TestDevice::new("otaship lab device CA", 2048);
    let ca = lab.ca_pem.clone();
    let server = Server::start_with(ServeArgs { device_ca_cert: Some(ca), ..ServeArgs::default() }).await;
    let listed = uploaded(&server, build_for("com.example.listed", Some(&[UDID]), None, "15.0")).await;
    uploaded(
        &server,
        build_for("com.example.other", Some(&["a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"]), None, "15.0"),
    )
    .await;
    uploaded(&server, build_for("com.example.inhouse", None, None, "15.0")).await;
    let location = enroll(&server, &lab, UDID, "22A3354", None).await;
    let html = device_client(&server).get(&location).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("id=\"installable-builds\""), "{html}");
    assert!(html.contains(listed["install_url"].as_str().expect("url")));
    assert_eq!(html.matches("/i/").count(), 1, "only the build whose profile lists the device: {html}");
    assert!(html.contains("Tom &#38; Jerry &#60;beta&#62;"), "names are escaped");
    let devices = server.api_json("/api/v1/devices", &[]).await;
    assert_eq!(devices[0]["verified"], true);

    // The shared test device's CA is not trusted here: its replies are accepted, unverified.
    let other = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    enroll(&server, test_device(), &other.to_ascii_uppercase(), "21E236", None).await;
    let devices = server.api_json("/api/v1/devices", &[]).await;
    let entry = devices
        .as_array()
        .expect("array")
        .iter()
        .find(|device| device["udid"] == other)
        .expect("40-hex UDID, lower case");
    assert_eq!(entry["verified"], false);
}

#[tokio::test]
async fn eligibility_follows_the_profiles_of_the_app_and_its_extensions_and_the_os() {
    let server = Server::start().await;
    let device = test_device();
    let location = enroll(&server, device, UDID, "21E236", None).await; // iOS 17.4
    let cookie = device_cookie(&server, &location).await;
    let page = |build: Value| {
        let (server, cookie) = (&server, cookie.clone());
        async move { server.page_with_cookie(build["install_url"].as_str().expect("url"), &cookie).await }
    };

    let listed = page(uploaded(&server, build_for("com.example.a", Some(&[UDID]), Some(&[UDID]), "15.0")).await).await;
    assert!(listed.contains("is in this build&#39;s provisioning profile") && listed.contains("data-ok=\"true\""));
    assert!(listed.contains("id=\"developer-mode\""), "ad hoc on iOS 17 needs Developer Mode");

    let missing =
        page(uploaded(&server, build_for("com.example.b", Some(&["00008030-00154452AAAAAAAA"]), None, "15.0")).await)
            .await;
    assert!(missing.contains("is not in this build&#39;s provisioning profile") && missing.contains("Send this UDID"));
    assert!(missing.contains("id=\"copy-udid\"") && missing.contains("data-ok=\"false\""));

    let extension_missing = page(
        uploaded(&server, build_for("com.example.c", Some(&[UDID]), Some(&["00008030-00154452AAAAAAAA"]), "15.0"))
            .await,
    )
    .await;
    assert!(extension_missing.contains("missing from: com.example.c.share"), "{extension_missing}");

    let enterprise = page(uploaded(&server, build_for("com.example.d", None, None, "15.0")).await).await;
    assert!(enterprise.contains("installs on any device") && !enterprise.contains("id=\"developer-mode\""));

    let too_new = page(uploaded(&server, build_for("com.example.e", Some(&[UDID]), None, "18.0")).await).await;
    assert!(too_new.contains("needs iOS 18.0 or later; your iPhone 14 Pro runs iOS 17.4"), "{too_new}");

    // The build's devices, for uploaders.
    let build = uploaded(&server, build_for("com.example.f", Some(&[UDID]), None, "18.0")).await;
    let judged = server.api_json(&format!("/api/v1/builds/{}/devices", build["id"].as_str().expect("id")), &[]).await;
    assert_eq!(judged["can_install"].as_array().expect("array").len(), 0);
    assert_eq!(judged["cannot_install"][0]["eligibility"]["os"]["state"], "too-old");
    assert_eq!(judged["cannot_install"][0]["eligibility"]["listing"]["state"], "listed");
}

/// The development profile of a real app lists 100 devices: each of them is eligible, any
/// other device is not, and the install page says so.
#[tokio::test]
async fn the_hundred_device_development_profile_of_a_real_app() {
    let ipa = std::fs::read(format!("{FIXTURES}app-info-iphone.ipa"))
        .expect("fixture: run scripts/test with ../shared beside the repository");
    let inspection = otaship_ipa::inspect_ipa(
        &otaship_ipa::FileSource::new(std::fs::File::open(format!("{FIXTURES}app-info-iphone.ipa")).expect("open"))
            .expect("source"),
        &otaship_ipa::InspectOptions::default(),
    )
    .expect("inspect");
    let devices = inspection.report.profile.as_ref().expect("profile").devices.clone();
    assert_eq!(devices.len(), 100);
    let server = Server::start().await;
    let build = uploaded(&server, ipa).await;
    let listed_udid = devices[37].clone();
    let location = enroll(&server, test_device(), &listed_udid.to_ascii_uppercase(), "20G75", None).await;
    let cookie = device_cookie(&server, &location).await;
    let html = server.page_with_cookie(build["install_url"].as_str().expect("url"), &cookie).await;
    assert!(html.contains("is in this build&#39;s provisioning profile"), "the 38th of 100 devices");
    let judged = server.api_json(&format!("/api/v1/builds/{}/devices", build["id"].as_str().expect("id")), &[]).await;
    assert_eq!(judged["cannot_install"].as_array().expect("array").len(), 0, "{judged}");

    enroll(&server, test_device(), "00008110-000A1B2C3D4E5F60", "20G75", None).await;
    let judged = server.api_json(&format!("/api/v1/builds/{}/devices", build["id"].as_str().expect("id")), &[]).await;
    assert_eq!(judged["can_install"].as_array().expect("array").len(), 1);
    assert_eq!(judged["cannot_install"][0]["device"]["udid"], "00008110-000A1B2C3D4E5F60");
    assert_eq!(judged["cannot_install"][0]["eligibility"]["listing"]["state"], "not-listed");
}

#[tokio::test]
async fn uploaders_list_rename_export_and_forget_devices() {
    let server = Server::start().await;
    enroll(&server, test_device(), UDID, "22A3354", None).await;
    enroll(&server, test_device(), "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "21E236", None).await;
    let client = server.client();
    let export = |format: &'static str| {
        let client = client.clone();
        let url = format!("{}/api/v1/devices/export?format={format}", server.base);
        let token = server.token.clone();
        async move { client.get(url).bearer_auth(token).send().await.expect("export") }
    };
    let apple = export("apple").await;
    assert_eq!(apple.status(), StatusCode::OK);
    assert!(apple.headers()["content-disposition"].to_str().expect("ascii").contains("devices.txt"));
    let text = apple.text().await.expect("text");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Device ID\tDevice Name\tDevice Platform");
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().any(|line| *line == format!("{UDID}\tTess's iPhone\tios")), "{text}");
    let csv = export("csv").await.text().await.expect("csv");
    assert!(csv.starts_with("udid,name,model,") && csv.contains("\"iPhone 14 Pro\""), "{csv}");
    assert_eq!(export("xml").await.status(), StatusCode::BAD_REQUEST);
    // Without a token: refused.
    let anonymous = client.get(format!("{}/api/v1/devices", server.base)).send().await.expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // The devices page, its rename form (CSRF-checked) and its export.
    let mut ui = UiClient::new(&server);
    ui.sign_in(&server.token).await;
    let csrf = ui.csrf().await;
    let page = ui.get("/devices").await.text().await.expect("html");
    assert!(page.contains(UDID) && page.contains("Export for Apple"));
    let devices = server.api_json("/api/v1/devices", &[]).await;
    let id = devices.as_array().expect("array").iter().find(|device| device["udid"] == UDID).expect("device")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let refused = ui.post_form(&format!("/devices/{id}/rename"), &[("csrf", "wrong"), ("name", "X")], None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let renamed = ui
        .post_form(&format!("/devices/{id}/rename"), &[("csrf", &csrf), ("name", "<script>alert(1)</script>")], None)
        .await;
    assert!(renamed.status().is_redirection());
    let page = ui.get("/devices").await.text().await.expect("html");
    assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;") && !page.contains("<script>alert(1)"));
    let exported = ui.get("/devices/export?format=apple").await.text().await.expect("text");
    assert!(exported.contains("<script>alert(1)</script>\tios"), "the export carries the name as given");
    let forgotten = ui.post_form(&format!("/devices/{id}/delete"), &[("csrf", &csrf)], None).await;
    assert!(forgotten.status().is_redirection());
    assert_eq!(server.api_json("/api/v1/devices", &[]).await.as_array().expect("array").len(), 1);
    let gone = client
        .delete(format!("{}/api/v1/devices/{id}", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}
