//! HTTPS in every mode: your own certificate (and its reload), the local CA (its certificates,
//! checked with openssl; its profile; the plain-HTTP helper), the TLS policy as openssl sees
//! it, and the refusals of settings that cannot work.

use std::process::Command;

use otaship_ipa::builder::{IpaBuilder, profile_plist};
use otaship_server::{Config, ServeArgs};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{FIXTURES, Server, UiClient, write_test_certificate};

#[tokio::test]
async fn https_with_your_own_certificate_serves_https_urls_and_reloads_it() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca_pem) = write_test_certificate(certs.path());
    let mut server =
        Server::start_with(ServeArgs { tls_cert: Some(cert), tls_key: Some(key), ..ServeArgs::default() }).await;
    assert!(server.base.starts_with("https://127.0.0.1:"));
    server.trusted_ca = Some(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"));
    let bytes = std::fs::read(format!("{FIXTURES}run_loop-CalSmoke.ipa")).expect("fixture");
    let response = server.upload(bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("JSON");
    for field in ["install_url", "manifest_url", "download_url"] {
        assert!(body[field].as_str().expect("url").starts_with(&format!("{}/i/", server.base)), "{field}: {body}");
    }
    let download = server.client().get(body["download_url"].as_str().expect("url")).send().await.expect("download");
    assert_eq!(download.version(), reqwest::Version::HTTP_2, "HTTP/2, as Safari speaks it; URLs still name the host");
    assert_eq!(download.bytes().await.expect("body").as_ref(), bytes.as_slice());

    // TLS 1.2 is accepted (older iOS), and a client that does not trust the CA is refused.
    let tls12 = reqwest::Client::builder()
        .tls_certs_only([server.trusted_ca.clone().expect("CA")])
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .expect("client");
    let page = tls12.get(body["install_url"].as_str().expect("url")).send().await.expect("TLS 1.2");
    assert_eq!(page.status(), StatusCode::OK);
    let untrusting = reqwest::Client::builder().tls_certs_only([]).build().expect("client");
    assert!(untrusting.get(format!("{}/healthz", server.base)).send().await.is_err());
    // Plain HTTP on the HTTPS port gets no answer, and the server keeps serving.
    let plain = reqwest::Client::new().get(format!("http://{}/healthz", server.state.config.listen)).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|response| !response.status().is_success()));
    let health = server.client().get(format!("{}/healthz", server.base)).send().await.expect("health");
    assert_eq!(health.status(), StatusCode::OK);

    // Replaced files are served without a restart (the maintenance loop calls refresh); a
    // half-written pair keeps the old certificate in service.
    let before = served_leaf(&server).await;
    let cert_path = certs.path().join("cert.pem");
    let renewed = tempfile::tempdir().expect("tempdir");
    let (new_cert, new_key, new_ca) = write_test_certificate(renewed.path());
    std::fs::write(&cert_path, std::fs::read(&new_cert).expect("read")).expect("write");
    server.state.tls.as_ref().expect("tls").refresh();
    assert_eq!(served_leaf(&server).await, before, "a certificate without its key is not used");
    std::fs::write(certs.path().join("key.pem"), std::fs::read(&new_key).expect("read")).expect("write");
    server.state.tls.as_ref().expect("tls").refresh();
    server.trusted_ca = Some(reqwest::Certificate::from_pem(new_ca.as_bytes()).expect("CA"));
    let after = served_leaf(&server).await;
    assert_ne!(after, before);
    assert_eq!(after, pem_to_der(&std::fs::read(&new_cert).expect("read")));
    server.stop().await;
}

#[test]
fn bad_tls_settings_say_how_to_fix_them() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = write_test_certificate(certs.path());
    let load = |args: ServeArgs| Config::load(&args).expect_err("refused").to_string();
    let error = load(ServeArgs { tls_cert: Some(cert.clone()), ..ServeArgs::default() });
    assert!(error.contains("--tls-cert needs --tls-key"), "{error}");
    let error = load(ServeArgs {
        tls: Some("off".into()),
        tls_cert: Some(cert.clone()),
        tls_key: Some(key.clone()),
        ..ServeArgs::default()
    });
    assert!(error.contains("contradicts"), "{error}");
    let error = load(ServeArgs {
        tls_cert: Some(certs.path().join("missing.pem")),
        tls_key: Some(key.clone()),
        ..ServeArgs::default()
    });
    assert!(error.contains("cannot read the certificate file"), "{error}");
    let error = format!(
        "{:#}",
        Config::load(&ServeArgs { tls_cert: Some(key.clone()), tls_key: Some(key), ..ServeArgs::default() })
            .expect_err("refused")
    );
    assert!(error.contains("no certificate"), "{error}");
    let error = load(ServeArgs { tls: Some("sometimes".into()), ..ServeArgs::default() });
    assert!(error.contains("is not a TLS mode"), "{error}");
    let error = load(ServeArgs {
        tls: Some("off".into()),
        public_url: Some("http://ota.example.com".into()),
        ..ServeArgs::default()
    });
    assert!(error.contains("--insecure-http"), "{error}");
    assert!(
        Config::load(&ServeArgs {
            tls: Some("off".into()),
            public_url: Some("http://ota.example.com".into()),
            insecure_http: Some(true),
            ..ServeArgs::default()
        })
        .is_ok()
    );
    let error = load(ServeArgs { tls: Some("acme".into()), ..ServeArgs::default() });
    assert!(error.contains("--acme DOMAIN"), "{error}");
    let error = load(ServeArgs { hosts: vec!["bad host".into()], ..ServeArgs::default() });
    assert!(error.contains("not a host name"), "{error}");
    let error =
        load(ServeArgs { tls: Some("off".into()), http_listen: Some("127.0.0.1:8080".into()), ..ServeArgs::default() });
    assert!(error.contains("needs HTTPS"), "{error}");
}

fn openssl(args: &[&str], input: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed (scripts/test installs it)");
    if let Some(mut stdin) = child.stdin.take() {
        // openssl may have finished (a refused handshake) before it reads: a closed pipe then
        // is not a failure of the test.
        let _ = stdin.write_all(input.unwrap_or("").as_bytes());
    }
    let output = child.wait_with_output().expect("openssl");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The leaf certificate the server presents, as DER.
async fn served_leaf(server: &Server) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .tls_certs_only([server.trusted_ca.clone().expect("CA")])
        .tls_info(true)
        .build()
        .expect("client");
    let response = client.get(format!("{}/healthz", server.base)).send().await.expect("HTTPS");
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    info.peer_certificate().expect("leaf").to_vec()
}

#[tokio::test]
async fn the_local_ca_is_the_default_and_its_certificates_follow_apples_rules() {
    let default = Config::load(&ServeArgs::default()).expect("config");
    assert!(matches!(default.tls, otaship_server::TlsSetting::LocalCa { .. }), "the default mode");
    assert_eq!(default.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(default.http_listen.map(|address| address.to_string()).as_deref(), Some("0.0.0.0:8080"));
    let mut server = Server::start_with(ServeArgs {
        tls: Some("local-ca".into()),
        hosts: vec!["ota.office.test".into(), "10.99.0.1".into()],
        ..ServeArgs::default()
    })
    .await;
    let tls_dir = server.data_dir.path().join("tls");
    let ca = tls_dir.join("ca.crt");
    let leaf = tls_dir.join("server.crt");
    let ca_path = ca.to_str().expect("utf-8");
    let leaf_path = leaf.to_str().expect("utf-8");

    let (ok, text) = openssl(&["verify", "-CAfile", ca_path, "-purpose", "sslserver", leaf_path], None);
    assert!(ok, "the server certificate chains to the CA for TLS servers: {text}");
    let (_, ca_text) = openssl(&["x509", "-in", ca_path, "-noout", "-text"], None);
    assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
    assert!(ca_text.contains("Certificate Sign"), "{ca_text}");
    assert!(ca_text.contains("ecdsa-with-SHA256") && ca_text.contains("256 bit"), "{ca_text}");
    let (_, leaf_text) = openssl(&["x509", "-in", leaf_path, "-noout", "-text"], None);
    assert!(leaf_text.contains("CA:FALSE"), "{leaf_text}");
    assert!(leaf_text.contains("TLS Web Server Authentication"), "EKU serverAuth: {leaf_text}");
    assert!(leaf_text.contains("ecdsa-with-SHA256"), "{leaf_text}");
    for name in ["DNS:localhost", "DNS:ota.office.test", "IP Address:10.99.0.1", "IP Address:127.0.0.1"] {
        assert!(leaf_text.contains(name), "{name} in {leaf_text}");
    }
    // Valid for at most 825 days (Apple's limit for private CAs).
    let (ok, _) = openssl(&["x509", "-in", leaf_path, "-noout", "-checkend", &(825u64 * 86_400).to_string()], None);
    assert!(!ok, "the certificate must expire within 825 days");
    let (ok, _) = openssl(&["x509", "-in", leaf_path, "-noout", "-checkend", &(300u64 * 86_400).to_string()], None);
    assert!(ok, "and is valid long enough to be useful");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls_dir.join("ca.key")).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Served over HTTPS with the chain, trusted by a client that trusts only the CA.
    let far = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(4_102_444_800);
    let ipa = IpaBuilder::new("com.example.localca")
        .profile(profile_plist("TEAM.com.example.localca", Some(&["00008030-001544522E60802E"]), false, false, far))
        .to_bytes();
    let body: Value = server.upload(ipa).await.json().await.expect("JSON");
    assert!(body["manifest_url"].as_str().expect("url").starts_with("https://127.0.0.1:"));
    let page = server.client().get(body["install_url"].as_str().expect("url")).send().await.expect("page");
    let html = page.text().await.expect("html");
    let helper = server.http_base.clone().expect("the HTTP helper runs with the local CA");
    let trust_link = format!("{helper}/trust");
    assert!(html.contains(&trust_link), "the install page links to {trust_link}: {html}");
    assert_eq!(served_leaf(&server).await, std::fs::read(&leaf).map(|pem| pem_to_der(&pem)).expect("leaf"));
    server.stop().await;
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem).expect("PEM").to_vec()
}

#[tokio::test]
async fn the_http_helper_serves_onboarding_and_the_profile_and_redirects_the_rest() {
    let mut server = Server::start_with(ServeArgs { tls: Some("local-ca".into()), ..ServeArgs::default() }).await;
    let helper = server.http_base.clone().expect("helper");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    let page = client.get(format!("{helper}/")).send().await.expect("onboarding");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("Certificate Trust Settings"), "{html}");
    assert!(html.contains("/trust/otaship-ca.mobileconfig"));
    let https_port = server.state.main_port();
    assert!(
        html.contains(&format!("https://127.0.0.1:{https_port}/")) || html.contains("https://127.0.0.1:"),
        "{html}"
    );

    let profile = client.get(format!("{helper}/trust/otaship-ca.mobileconfig")).send().await.expect("profile");
    assert_eq!(profile.headers()["content-type"], "application/x-apple-aspen-config");
    let profile = plist::Value::from_reader_xml(profile.bytes().await.expect("body").as_ref()).expect("plist");
    let root = profile.as_dictionary().expect("dict");
    assert_eq!(root["PayloadType"].as_string(), Some("Configuration"));
    assert_eq!(root["PayloadVersion"].as_signed_integer(), Some(1));
    let payload = root["PayloadContent"].as_array().expect("payloads")[0].as_dictionary().expect("payload");
    assert_eq!(payload["PayloadType"].as_string(), Some("com.apple.security.root"));
    assert!(payload["PayloadUUID"].as_string().is_some_and(|uuid| uuid.len() == 36));
    let der = payload["PayloadContent"].as_data().expect("certificate").to_vec();
    let ca_pem = std::fs::read(server.data_dir.path().join("tls/ca.crt")).expect("CA");
    assert_eq!(der, pem_to_der(&ca_pem), "the profile holds the CA");
    // ...and that CA is the one that signed the certificate the server presents.
    let leaf = served_leaf(&server).await;
    let (_, leaf_cert) = x509_parser::parse_x509_certificate(&leaf).expect("leaf");
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&der).expect("CA");
    leaf_cert.verify_signature(Some(ca_cert.public_key())).expect("signed by the profile's CA");

    let crt = client.get(format!("{helper}/trust/otaship-ca.crt")).send().await.expect("crt");
    assert_eq!(crt.bytes().await.expect("body").to_vec(), der);

    let redirect = client.get(format!("{helper}/i/abc?x=1")).send().await.expect("redirect");
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], format!("https://127.0.0.1:{https_port}/i/abc?x=1").as_str());
    let upload = client.post(format!("{helper}/api/v1/builds")).body("x").send().await.expect("post");
    assert_eq!(upload.status(), StatusCode::BAD_REQUEST);
    // The onboarding page is on HTTPS too.
    let trust = server.client().get(format!("{}/trust", server.base)).send().await.expect("trust");
    assert_eq!(trust.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_sees_tls_1_2_and_1_3_with_ecdhe_only() {
    let mut server = Server::start_with(ServeArgs { tls: Some("local-ca".into()), ..ServeArgs::default() }).await;
    let address = format!("127.0.0.1:{}", server.state.main_port());
    let ca = server.data_dir.path().join("tls/ca.crt");
    let ca = ca.to_str().expect("utf-8");
    // openssl blocks; the server needs the test's runtime meanwhile.
    let connect = |extra: &[&str]| {
        let mut args: Vec<String> = ["s_client", "-connect", &address, "-CAfile", ca, "-verify_return_error", "-brief"]
            .map(String::from)
            .into();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            openssl(&args, Some("Q\n"))
        })
    };
    let (ok, text) = connect(&["-tls1_3"]).await.expect("openssl");
    assert!(ok && text.contains("TLSv1.3"), "TLS 1.3 accepted: {text}");
    let (ok, text) = connect(&["-tls1_2"]).await.expect("openssl");
    assert!(ok && text.contains("TLSv1.2") && text.contains("ECDHE"), "TLS 1.2 with ECDHE: {text}");
    let (ok, text) = connect(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]).await.expect("openssl");
    assert!(!ok, "TLS 1.1 refused: {text}");
    for suite in ["AES128-GCM-SHA256", "AES256-SHA", "DHE-RSA-AES128-GCM-SHA256"] {
        let (ok, text) = connect(&["-tls1_2", "-cipher", suite]).await.expect("openssl");
        assert!(!ok, "{suite} refused: {text}");
    }
    server.stop().await;
}

/// A child process killed when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_gets_a_certificate_from_pebble_and_serves_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Pebble's own HTTPS (its directory) uses a throwaway CA that otaship is told to trust.
    let (pebble_cert, pebble_key, pebble_ca) = write_test_certificate(dir.path());
    let pebble_ca_file = dir.path().join("pebble-ca.pem");
    std::fs::write(&pebble_ca_file, &pebble_ca).expect("write");
    let [https_port, acme_port, management_port, dns_port, dns_management_port] =
        [free_port(), free_port(), free_port(), free_port(), free_port()];
    let config = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{acme_port}"),
        "managementListenAddress": format!("127.0.0.1:{management_port}"),
        "certificate": pebble_cert, "privateKey": pebble_key,
        "httpPort": free_port(), "tlsPort": https_port,
        "ocspResponderURL": "", "externalAccountBindingRequired": false,
    }});
    let config_file = dir.path().join("pebble.json");
    std::fs::write(&config_file, config.to_string()).expect("write");
    let spawn = |command: &mut Command| {
        Child(
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("pebble is installed (scripts/test installs the Debian package pebble)"),
        )
    };
    // A DNS server that answers 127.0.0.1 for every name (and no IPv6).
    let _dns = spawn(Command::new("pebble-challtestsrv").args([
        "-dns01",
        &format!("127.0.0.1:{dns_port}"),
        "-http01",
        "",
        "-https01",
        "",
        "-tlsalpn01",
        "",
        "-defaultIPv6",
        "",
        "-management",
        &format!("127.0.0.1:{dns_management_port}"),
    ]));
    let _pebble = spawn(
        Command::new("pebble")
            .args(["-config", config_file.to_str().expect("utf-8"), "-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // No random sleeps before validation, no randomly refused nonces: a test wants speed
            // and a verdict, not Pebble's chaos.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0"),
    );
    let trusting_pebble = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pebble_ca.as_bytes()).expect("CA")])
        .build()
        .expect("client");
    let directory = format!("https://127.0.0.1:{acme_port}/dir");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while trusting_pebble.get(&directory).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "pebble did not start");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let mut server = Server::start_with(ServeArgs {
        listen: Some(format!("127.0.0.1:{https_port}")),
        acme_domains: vec!["ota.test".into()],
        acme_email: Some("ops@ota.test".into()),
        acme_directory: Some(directory),
        acme_ca_cert: Some(pebble_ca_file),
        ..ServeArgs::default()
    })
    .await;
    assert!(matches!(server.state.config.tls, otaship_server::TlsSetting::Acme { .. }));
    let root = trusting_pebble
        .get(format!("https://127.0.0.1:{management_port}/roots/0"))
        .send()
        .await
        .expect("pebble's root")
        .text()
        .await
        .expect("PEM");
    let device = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).expect("root")])
        .resolve("ota.test", std::net::SocketAddr::from(([127, 0, 0, 1], https_port)))
        .tls_info(true)
        .build()
        .expect("client");
    let url = format!("https://ota.test:{https_port}/healthz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let response = loop {
        match device.get(&url).send().await {
            Ok(response) => break response,
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "no certificate from pebble in time: {error:?}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(response.status(), StatusCode::OK);
    let leaf = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("leaf")
        .to_vec();
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).expect("certificate");
    let names = leaf.subject_alternative_name().expect("SAN").expect("SAN").value.general_names.clone();
    assert!(names.iter().any(|name| matches!(name, x509_parser::extensions::GeneralName::DNSName("ota.test"))));
    assert!(server.data_dir.path().join("tls/acme").read_dir().expect("cache").next().is_some(), "cached");
    // Enrollment profiles are signed with the certificate ACME deployed.
    let leaf_der = response_leaf_der(&device, &url).await;
    let profile = device
        .get(format!("https://ota.test:{https_port}/devices/enroll.mobileconfig"))
        .send()
        .await
        .expect("profile")
        .bytes()
        .await
        .expect("body");
    let signed = otaship_ipa::cms::parse_signed_data(&profile).expect("CMS");
    assert_eq!(signed.certificates.first(), Some(&leaf_der), "signed with the ACME certificate");
    server.stop().await;
}

async fn response_leaf_der(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let response = client.get(url).send().await.expect("request");
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("leaf")
        .to_vec()
}

fn codes(check: &otaship_server::self_check::SelfCheck) -> Vec<&'static str> {
    check.findings.iter().map(|finding| finding.code).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_self_check_sees_the_server_as_a_device_does() {
    // The local CA: trusted by devices that followed onboarding, so no error; the loopback
    // address is worth a warning (a phone cannot reach it).
    let mut server = Server::start_with(ServeArgs { tls: Some("local-ca".into()), ..ServeArgs::default() }).await;
    let base = server.state.device_base_url().expect("listening");
    let check = otaship_server::self_check::run(&server.state, &base).await;
    let found = codes(&check);
    assert!(
        found.contains(&"tls-ok") && found.contains(&"public-url-loopback") && found.contains(&"no-builds"),
        "{found:?}"
    );
    assert!(!otaship_doctor::has_errors(&check.findings), "{:?}", check.findings);
    let far = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(4_102_444_800);
    let ipa = IpaBuilder::new("com.example.checked")
        .profile(profile_plist("TEAM.com.example.checked", Some(&["00008030-001544522E60802E"]), false, false, far))
        .to_bytes();
    assert_eq!(server.upload(ipa).await.status(), StatusCode::CREATED);
    let check = otaship_server::self_check::run(&server.state, &base).await;
    assert!(codes(&check).contains(&"manifest-ok"), "{:?}", check.findings);
    server.stop().await;

    // Your own certificate without serverAuth, from a CA devices were not given: both said.
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca_pem) = write_test_certificate(certs.path());
    let mut server =
        Server::start_with(ServeArgs { tls_cert: Some(cert), tls_key: Some(key), ..ServeArgs::default() }).await;
    server.trusted_ca = Some(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"));
    let base = server.state.device_base_url().expect("listening");
    let check = otaship_server::self_check::run(&server.state, &base).await;
    let found = codes(&check);
    assert!(found.contains(&"tls-no-server-auth") && found.contains(&"tls-untrusted"), "{found:?}");

    // The health page shows it to a signed-in uploader.
    let mut uploader = UiClient::new(&server);
    uploader.sign_in(&server.token.clone()).await;
    let html = uploader.get("/admin/health").await.text().await.expect("html");
    assert!(html.contains("tls-no-server-auth") && html.contains("will stop installs"), "{html}");
    server.stop().await;

    // Plain HTTP with no HTTPS URL for devices: an error, said plainly.
    let mut server = Server::start().await;
    let base = server.state.device_base_url().expect("listening");
    let check = otaship_server::self_check::run(&server.state, &base).await;
    assert!(codes(&check).contains(&"public-url-not-https"), "{:?}", check.findings);
    server.stop().await;
}
