//! Webhooks end to end, against a receiver on loopback that records every request and answers
//! `500` to the first ones it is told to: `build.uploaded` with the install URL, signatures
//! checked with the `openssl` command (independently of otaship's own HMAC code), retries with
//! backoff and giving up, Slack messages, `profile.expiring` once per build, duplicates that fire
//! nothing, the API's authentication and the Webhooks page.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use otaship_ipa::builder::{IpaBuilder, profile_plist};
use otaship_server::ServeArgs;
use plist::{Dictionary, Value as Plist};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::{Server, UiClient, uploaded};

/// One request the receiver got.
#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An HTTP endpoint on loopback that records what it is sent.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    count: watch::Receiver<usize>,
}

impl Receiver {
    /// Answers `500` with `failure_body` to the first `failures` requests, then `200`.
    async fn start(failures: usize, failure_body: &'static str) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let (counter, count) = watch::channel(0usize);
        let counter = Arc::new(counter);
        let record = Arc::clone(&received);
        let handler = move |headers: HeaderMap, body: Bytes| {
            let record = Arc::clone(&record);
            let counter = Arc::clone(&counter);
            async move {
                let total = {
                    let mut all = record.lock().expect("lock");
                    all.push(Received { headers, body: body.to_vec() });
                    all.len()
                };
                counter.send_replace(total);
                if total <= failures {
                    (AxumStatus::INTERNAL_SERVER_ERROR, failure_body)
                } else {
                    (AxumStatus::OK, "thanks")
                }
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, received, count }
    }

    /// The first `count` requests, once they have arrived (a minute at most).
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let mut watching = self.count.clone();
        tokio::time::timeout(Duration::from_secs(60), watching.wait_for(|seen| *seen >= count))
            .await
            .unwrap_or_else(|_| panic!("{count} deliveries did not arrive; got {}", self.all().len()))
            .expect("receiver running");
        self.all().into_iter().take(count).collect()
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

/// The HMAC-SHA256 of `message` keyed with `secret`, in hex, by the `openssl` command.
fn openssl_hmac(secret: &str, message: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-r", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command (scripts/test installs it)");
    child.stdin.take().expect("stdin").write_all(message).expect("write");
    let output = child.wait_with_output().expect("openssl");
    assert!(output.status.success(), "openssl: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").split_whitespace().next().expect("digest").to_owned()
}

/// Whether `header` (`t=...,v1=...`) signs `body` with `secret`, checked as a receiver would.
fn signature_verifies(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = Some(value),
            Some(("v1", value)) => signature = Some(value),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else { return false };
    if timestamp.is_empty() || !timestamp.bytes().all(|byte| byte.is_ascii_digit()) {
        return false;
    }
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    openssl_hmac(secret, &message) == signature
}

/// Registers a webhook through the API; returns its JSON (with the secret).
async fn create_webhook(server: &Server, body: Value) -> Value {
    let response = server
        .client()
        .post(format!("{}/api/v1/webhooks", server.base))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("JSON")
}

async fn deliveries(server: &Server, webhook_id: &str) -> Vec<Value> {
    let list = server.api_json(&format!("/api/v1/webhooks/{webhook_id}/deliveries"), &[]).await;
    list.as_array().expect("a list").clone()
}

/// A delivery once it is no longer pending (the receiver has answered, and the server may not
/// have recorded it yet).
async fn settled(server: &Server, webhook_id: &str, delivery_id: &str) -> Value {
    let look = async {
        loop {
            let found = deliveries(server, webhook_id).await.into_iter().find(|delivery| delivery["id"] == delivery_id);
            if let Some(delivery) = found.filter(|delivery| delivery["state"] != "pending") {
                return delivery;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), look).await.expect("the delivery settles")
}

/// An ad-hoc build whose profile expires at `expires`, with an extension whose own profile
/// expires at `extension_expires` when given.
fn build_expiring(
    bundle_id: &str,
    version: &str,
    expires: SystemTime,
    extension_expires: Option<SystemTime>,
) -> Vec<u8> {
    let devices: &[&str] = &["00008030-001544522E60802E"];
    let mut builder = IpaBuilder::new(bundle_id).info("CFBundleVersion", version).profile(profile_plist(
        &format!("ABCDE12345.{bundle_id}"),
        Some(devices),
        false,
        false,
        expires,
    ));
    if let Some(extension_expires) = extension_expires {
        let extension_id = format!("{bundle_id}.widget");
        let mut info = Dictionary::new();
        info.insert("CFBundleIdentifier".into(), extension_id.clone().into());
        info.insert("CFBundleExecutable".into(), "Widget".into());
        info.insert("CFBundlePackageType".into(), "XPC!".into());
        let mut plist_bytes = Vec::new();
        Plist::Dictionary(info).to_writer_xml(&mut plist_bytes).expect("plist");
        builder = builder.app_file("PlugIns/Widget.appex/Info.plist", plist_bytes).app_file(
            "PlugIns/Widget.appex/embedded.mobileprovision",
            profile_plist(&format!("ABCDE12345.{extension_id}"), Some(devices), false, false, extension_expires),
        );
    }
    builder.to_bytes()
}

/// `POST /api/v1/webhooks/check-expiry`; how many deliveries it enqueued.
async fn check_expiry(server: &Server) -> u64 {
    let response = server
        .client()
        .post(format!("{}/api/v1/webhooks/check-expiry", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("check");
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.expect("JSON")["enqueued"].as_u64().expect("enqueued")
}

fn hours_from_now(hours: i64) -> SystemTime {
    let now = SystemTime::now();
    if hours >= 0 {
        now + Duration::from_secs(hours.unsigned_abs() * 3600)
    } else {
        now - Duration::from_secs(hours.unsigned_abs() * 3600)
    }
}

#[tokio::test]
async fn webhook_signatures_verify() {
    let receiver = Receiver::start(0, "").await;
    let server = Server::start().await;
    let created = create_webhook(
        &server,
        json!({"url": receiver.url, "events": ["build.uploaded"], "bundle_id": "com.example.hooked"}),
    )
    .await;
    let secret = created["secret"].as_str().expect("the secret, once").to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    assert_eq!(created["kind"], "json");
    assert_eq!(created["events"], json!(["build.uploaded"]));
    let listed = server.api_json("/api/v1/webhooks", &[]).await;
    assert_eq!(listed[0]["id"], created["id"]);
    assert!(listed[0].get("secret").is_none(), "the secret is shown only at creation: {listed}");
    assert!(!listed.to_string().contains(&secret));

    let build = uploaded(
        &server,
        IpaBuilder::new("com.example.hooked")
            .info("CFBundleShortVersionString", "2.5")
            .info("CFBundleVersion", "77")
            .to_bytes(),
    )
    .await;
    let request = receiver.wait_for(1).await.remove(0);
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("otaship-webhooks/"), "{}", request.header("user-agent"));
    assert_eq!(request.header("x-otaship-event"), "build.uploaded");
    let body = request.json();
    assert_eq!(body["event"], "build.uploaded");
    assert_eq!(request.header("x-otaship-delivery"), body["delivery_id"].as_str().expect("delivery_id"));
    assert!(body["sent_at"].as_str().is_some_and(|sent| sent.ends_with('Z')), "{body}");
    assert_eq!(body["app"], json!({"bundle_id": "com.example.hooked", "name": "Example"}));
    assert_eq!(body["build"]["id"], build["id"]);
    assert_eq!(body["build"]["version"], "2.5");
    assert_eq!(body["build"]["build"], "77");
    assert_eq!(body["build"]["channel"], "default");
    assert_eq!(body["build"]["install_url"], build["install_url"]);
    assert!(body["build"]["install_url"].as_str().expect("url").starts_with(&format!("{}/i/", server.base)));
    assert!(body.get("profile").is_none(), "{body}");

    // The signature, checked with openssl as a receiver would.
    let signature = request.header("x-otaship-signature");
    assert!(signature.starts_with("t=") && signature.contains(",v1="), "{signature}");
    assert!(signature_verifies(&secret, signature, &request.body), "webhook signatures verify");
    let mut tampered = request.body.clone();
    let at = tampered.iter().position(|byte| *byte == b'7').expect("a digit to change");
    tampered[at] = b'8';
    assert!(!signature_verifies(&secret, signature, &tampered), "a tampered body does not verify");
    assert!(!signature_verifies("whsec_wrong", signature, &request.body), "another secret does not verify");
    let (stamp, mac) = signature.split_once(',').expect("two parts");
    let later: i64 = stamp.trim_start_matches("t=").parse().expect("seconds");
    assert!(!signature_verifies(&secret, &format!("t={},{mac}", later + 1), &request.body), "the time is signed");

    let delivery =
        settled(&server, created["id"].as_str().expect("id"), body["delivery_id"].as_str().expect("id")).await;
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["last_status"], 200);
    assert_eq!(delivery["payload"]["build"]["id"], build["id"]);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_until_one_succeeds() {
    let receiver = Receiver::start(2, "busy").await;
    let server =
        Server::start_with(ServeArgs { webhook_retry_base: Some("100ms".into()), ..ServeArgs::default() }).await;
    let webhook = create_webhook(&server, json!({"url": receiver.url})).await;
    let secret = webhook["secret"].as_str().expect("secret");
    let webhook_id = webhook["id"].as_str().expect("id");
    let response = server
        .client()
        .post(format!("{}/api/v1/webhooks/{webhook_id}/ping", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("ping");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let ping: Value = response.json().await.expect("JSON");
    assert_eq!(ping["event"], "ping");
    let delivery_id = ping["id"].as_str().expect("id");

    let requests = receiver.wait_for(3).await;
    for request in &requests {
        assert_eq!(request.header("x-otaship-delivery"), delivery_id, "a retry is the same delivery");
        assert_eq!(request.header("x-otaship-event"), "ping");
        assert!(signature_verifies(secret, request.header("x-otaship-signature"), &request.body));
        assert_eq!(request.json()["event"], "ping");
    }
    let delivery = settled(&server, webhook_id, delivery_id).await;
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status"], 200);
    assert!(delivery["delivered_at"].is_string());
    assert_eq!(receiver.all().len(), 3, "nothing is sent after it is delivered");

    let mut ui = UiClient::new(&server);
    ui.sign_in(&server.token).await;
    let html = ui.get("/admin/webhooks").await.text().await.expect("html");
    let row_start = html.find(&format!("id=\"delivery-{delivery_id}\"")).expect("the delivery's row");
    let row = &html[row_start..row_start + html[row_start..].find("</tr>").expect("row end")];
    assert!(
        row.contains(">ping<")
            && row.contains(">delivered<")
            && row.contains("<td>3</td>")
            && row.contains("<td>200</td>"),
        "{row}"
    );
}

#[tokio::test]
async fn deliveries_are_given_up_after_the_last_attempt_and_the_log_escapes_errors() {
    let receiver = Receiver::start(usize::MAX, "<b>down</b> & out").await;
    let server = Server::start_with(ServeArgs { webhook_retry_base: Some("1ms".into()), ..ServeArgs::default() }).await;
    let webhook = create_webhook(&server, json!({"url": receiver.url, "events": ["build.uploaded"]})).await;
    let webhook_id = webhook["id"].as_str().expect("id");
    let build = uploaded(&server, IpaBuilder::new("com.example.unlucky").to_bytes()).await;
    let listed = deliveries(&server, webhook_id).await;
    assert_eq!(listed.len(), 1);
    let delivery_id = listed[0]["id"].as_str().expect("id").to_owned();

    receiver.wait_for(8).await;
    let delivery = settled(&server, webhook_id, &delivery_id).await;
    assert_eq!(delivery["state"], "failed", "{delivery}");
    assert_eq!(delivery["attempts"], 8);
    assert_eq!(delivery["last_status"], 500);
    let error = delivery["last_error"].as_str().expect("last_error");
    assert!(error.contains("500") && error.contains("<b>down</b> & out"), "{error}");
    assert_eq!(delivery["payload"]["build"]["id"], build["id"]);
    assert_eq!(receiver.all().len(), 8, "no attempt after the last one");

    let mut ui = UiClient::new(&server);
    ui.sign_in(&server.token).await;
    let html = ui.get("/admin/webhooks").await.text().await.expect("html");
    let row_start = html.find(&format!("id=\"delivery-{delivery_id}\"")).expect("the delivery's row");
    let row = &html[row_start..row_start + html[row_start..].find("</tr>").expect("row end")];
    assert!(row.contains(">build.uploaded<") && row.contains(">failed<") && row.contains("<td>8</td>"), "{row}");
    assert!(row.contains("&#60;b&#62;down&#60;/b&#62; &#38; out"), "{row}");
    assert!(!html.contains("<b>down</b>"), "the endpoint's answer is escaped");
}

#[tokio::test]
async fn slack_messages_are_escaped_and_signed() {
    let receiver = Receiver::start(0, "").await;
    let server = Server::start().await;
    let webhook = create_webhook(&server, json!({"url": receiver.url, "kind": "slack"})).await;
    let build = uploaded(
        &server,
        IpaBuilder::new("com.example.cartoon")
            .info("CFBundleDisplayName", "Tom & Jerry <beta>")
            .info("CFBundleShortVersionString", "1.0")
            .info("CFBundleVersion", "9")
            .to_bytes(),
    )
    .await;
    let request = receiver.wait_for(1).await.remove(0);
    assert_eq!(request.header("x-otaship-event"), "build.uploaded");
    assert!(signature_verifies(
        webhook["secret"].as_str().expect("secret"),
        request.header("x-otaship-signature"),
        &request.body
    ));
    let body = request.json();
    let object = body.as_object().expect("an object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["text"], "{body}");
    let text = body["text"].as_str().expect("text");
    let install = build["install_url"].as_str().expect("install_url");
    assert!(text.contains("*Tom &amp; Jerry &lt;beta&gt;*"), "{text}");
    assert!(text.contains(&format!("<{install}|Install>")), "{text}");
    assert!(text.contains("1.0 (9)"), "{text}");
    assert!(!text.contains("Tom & Jerry") && !text.contains("<beta>"), "{text}");
}

#[tokio::test]
async fn expiring_profiles_are_announced_once_per_build() {
    let receiver = Receiver::start(0, "").await;
    let server = Server::start().await;
    let week = create_webhook(&server, json!({"url": receiver.url, "events": ["profile.expiring"]})).await;
    let month = create_webhook(
        &server,
        json!({"url": receiver.url, "events": ["profile.expiring"], "bundle_id": "com.example.later", "expiry_days": 30}),
    )
    .await;
    assert_eq!(week["expiry_days"], 7);
    let far = hours_from_now(24 * 365);
    // Expires in three and a half days: announced with 3 days left.
    let soon = uploaded(&server, build_expiring("com.example.soon", "1", hours_from_now(84), None)).await;
    // An older build that expires soon, replaced on its channel by one that does not: quiet.
    uploaded(&server, build_expiring("com.example.renewed", "1", hours_from_now(48), None)).await;
    uploaded(&server, build_expiring("com.example.renewed", "2", far, None)).await;
    // The app's profile is fine, its extension's expired a day and a half ago.
    let widgets = uploaded(&server, build_expiring("com.example.widgets", "1", far, Some(hours_from_now(-36)))).await;
    // Twenty days and a half: only for the 30-day webhook, which wants this app alone.
    let later = uploaded(&server, build_expiring("com.example.later", "1", hours_from_now(20 * 24 + 12), None)).await;
    // No webhook wants build.uploaded.
    assert!(deliveries(&server, week["id"].as_str().expect("id")).await.is_empty());

    assert_eq!(check_expiry(&server).await, 3);
    assert_eq!(check_expiry(&server).await, 0, "a second check adds nothing");

    let requests = receiver.wait_for(3).await;
    let mut by_build = std::collections::HashMap::new();
    for request in &requests {
        assert_eq!(request.header("x-otaship-event"), "profile.expiring");
        let body = request.json();
        by_build.insert(body["build"]["id"].as_str().expect("id").to_owned(), body);
    }
    let of = |build: &Value| by_build.get(build["id"].as_str().expect("id")).expect("announced").clone();
    let soon_event = of(&soon);
    assert_eq!(soon_event["profile"]["days_left"], 3, "{soon_event}");
    assert_eq!(soon_event["profile"]["kind"], "ad-hoc");
    assert_eq!(soon_event["profile"]["bundle_id"], "com.example.soon");
    assert_eq!(soon_event["build"]["install_url"], soon["install_url"]);
    assert_eq!(soon_event["app"]["bundle_id"], "com.example.soon");
    let widget_event = of(&widgets);
    assert_eq!(widget_event["profile"]["bundle_id"], "com.example.widgets.widget", "the extension's profile");
    assert_eq!(widget_event["profile"]["days_left"], -2, "expired: {widget_event}");
    assert_eq!(of(&later)["profile"]["days_left"], 20);
    assert_eq!(by_build.len(), 3, "nothing for the renewed app");

    let week_deliveries = deliveries(&server, week["id"].as_str().expect("id")).await;
    assert_eq!(week_deliveries.len(), 2);
    assert!(week_deliveries.iter().all(|delivery| delivery["event"] == "profile.expiring"));
    let month_deliveries = deliveries(&server, month["id"].as_str().expect("id")).await;
    assert_eq!(month_deliveries.len(), 1);
    assert_eq!(month_deliveries[0]["payload"]["build"]["id"], later["id"]);

    // A renewed build on the soon app's channel: it is what testers install now, and is fine.
    uploaded(&server, build_expiring("com.example.soon", "2", far, None)).await;
    assert_eq!(check_expiry(&server).await, 0);
}

#[tokio::test]
async fn a_duplicate_upload_fires_nothing_and_filters_hold() {
    let receiver = Receiver::start(0, "").await;
    let server = Server::start().await;
    let every = create_webhook(&server, json!({"url": receiver.url, "events": ["build.uploaded"]})).await;
    let other = create_webhook(&server, json!({"url": receiver.url, "bundle_id": "com.example.other"})).await;
    let ipa = IpaBuilder::new("com.example.twice").to_bytes();
    let first = uploaded(&server, ipa.clone()).await;
    let again = server.upload(ipa).await;
    assert_eq!(again.status(), StatusCode::OK, "the existing build");
    let listed = deliveries(&server, every["id"].as_str().expect("id")).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["event"], "build.uploaded");
    assert_eq!(listed[0]["payload"]["build"]["id"], first["id"]);
    assert!(deliveries(&server, other["id"].as_str().expect("id")).await.is_empty(), "another app's webhook");
    let request = receiver.wait_for(1).await.remove(0);
    assert_eq!(request.json()["build"]["id"], first["id"]);
}

#[tokio::test]
async fn the_webhook_api_needs_a_token_and_checks_what_it_is_given() {
    let server = Server::start().await;
    let client = server.client();
    let base = &server.base;
    let requests = [
        client.get(format!("{base}/api/v1/webhooks")),
        client.post(format!("{base}/api/v1/webhooks")).json(&json!({"url": "https://example.com/"})),
        client.patch(format!("{base}/api/v1/webhooks/x")).json(&json!({"enabled": false})),
        client.delete(format!("{base}/api/v1/webhooks/x")),
        client.get(format!("{base}/api/v1/webhooks/x/deliveries")),
        client.post(format!("{base}/api/v1/webhooks/x/ping")),
        client.post(format!("{base}/api/v1/webhooks/check-expiry")),
    ];
    for request in requests {
        let response = request.bearer_auth("ots_wrong").send().await.expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let response = client.get(format!("{base}/api/v1/webhooks")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "no token at all");

    for (body, code) in [
        (json!({"url": "ftp://example.com/hook"}), "bad-webhook-url"),
        (json!({"url": "https://example.com/", "kind": "xml"}), "bad-webhook-kind"),
        (json!({"url": "https://example.com/", "events": ["build.deleted"]}), "bad-webhook-events"),
        (json!({"url": "https://example.com/", "expiry_days": 0}), "bad-expiry-days"),
    ] {
        let response = client
            .post(format!("{base}/api/v1/webhooks"))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.expect("JSON");
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    for path in ["/api/v1/webhooks/nope/deliveries"] {
        let response = client.get(format!("{base}{path}")).bearer_auth(&server.token).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let response =
        client.delete(format!("{base}/api/v1/webhooks/nope")).bearer_auth(&server.token).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Pausing: a paused webhook gets no new event; resuming brings them back.
    let webhook =
        create_webhook(&server, json!({"url": "http://127.0.0.1:9/unused", "events": ["build.uploaded"]})).await;
    let id = webhook["id"].as_str().expect("id");
    let paused: Value = client
        .patch(format!("{base}/api/v1/webhooks/{id}"))
        .bearer_auth(&server.token)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(paused["enabled"], false);
    uploaded(&server, IpaBuilder::new("com.example.paused").to_bytes()).await;
    assert!(deliveries(&server, id).await.is_empty());
    let response =
        client.delete(format!("{base}/api/v1/webhooks/{id}")).bearer_auth(&server.token).send().await.expect("delete");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.api_json("/api/v1/webhooks", &[]).await, json!([]));
}

#[tokio::test]
async fn the_webhooks_page_adds_tests_pauses_and_deletes() {
    let receiver = Receiver::start(0, "").await;
    let server = Server::start().await;
    let mut ui = UiClient::new(&server);
    let anonymous = ui.get("/admin/webhooks").await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()["location"], "/signin");
    ui.sign_in(&server.token).await;
    let csrf = ui.csrf().await;
    let home = ui.get("/").await.text().await.expect("html");
    assert!(home.contains("href=\"/admin/webhooks\""), "the nav links to the page");
    let empty = ui.get("/admin/webhooks").await.text().await.expect("html");
    assert!(empty.contains("id=\"no-webhooks\"") && empty.contains("id=\"no-deliveries\""));

    // Without the CSRF token, or from another site: refused, nothing added.
    let form = [("url", receiver.url.as_str()), ("kind", "json"), ("event_build_uploaded", "on"), ("expiry_days", "7")];
    let refused = ui.post_form("/admin/webhooks", &[&form[..], &[("csrf", "wrong")][..]].concat(), None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let cross = ui
        .post_form(
            "/admin/webhooks",
            &[&form[..], &[("csrf", csrf.as_str())][..]].concat(),
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.api_json("/api/v1/webhooks", &[]).await, json!([]));

    // A mistake shows the form again, with what was typed (escaped).
    let bad = ui
        .post_form(
            "/admin/webhooks",
            &[
                ("csrf", csrf.as_str()),
                ("url", "ftp://x/<script>"),
                ("kind", "json"),
                ("event_build_uploaded", "on"),
                ("expiry_days", "7"),
            ],
            None,
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let html = bad.text().await.expect("html");
    assert!(html.contains("id=\"webhook-error\"") && html.contains("ftp://x/&#60;script&#62;"), "{html}");
    assert!(!html.contains("<script>"));

    let added = ui.post_form("/admin/webhooks", &[&form[..], &[("csrf", csrf.as_str())][..]].concat(), None).await;
    assert_eq!(added.status(), StatusCode::OK);
    let html = added.text().await.expect("html");
    let start = html.find("id=\"webhook-secret\">").expect("the secret, once") + "id=\"webhook-secret\">".len();
    let secret = html[start..start + html[start..].find('<').expect("end")].to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = server.api_json("/api/v1/webhooks", &[]).await;
    assert_eq!(listed[0]["events"], json!(["build.uploaded"]));
    assert_eq!(listed[0]["url"], receiver.url.as_str());
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let page = ui.get("/admin/webhooks").await.text().await.expect("html");
    assert!(page.contains(&format!("id=\"webhook-{id}\"")) && !page.contains(&secret), "shown only once");

    // Send test: a signed ping, which the log then shows.
    let tested = ui.post_form(&format!("/admin/webhooks/{id}/ping"), &[("csrf", csrf.as_str())], None).await;
    assert_eq!(tested.status(), StatusCode::SEE_OTHER);
    let ping = receiver.wait_for(1).await.remove(0);
    assert_eq!(ping.header("x-otaship-event"), "ping");
    assert!(
        signature_verifies(&secret, ping.header("x-otaship-signature"), &ping.body),
        "signed with the page's secret"
    );
    settled(&server, &id, ping.header("x-otaship-delivery")).await;
    let page = ui.get("/admin/webhooks").await.text().await.expect("html");
    assert!(page.contains(&format!("id=\"delivery-{}\"", ping.header("x-otaship-delivery"))), "logged");

    // Pause, resume, check now, delete.
    let paused = ui
        .post_form(&format!("/admin/webhooks/{id}/enabled"), &[("csrf", csrf.as_str()), ("enabled", "false")], None)
        .await;
    assert_eq!(paused.status(), StatusCode::SEE_OTHER);
    assert_eq!(server.api_json("/api/v1/webhooks", &[]).await[0]["enabled"], false);
    let page = ui.get("/admin/webhooks").await.text().await.expect("html");
    assert!(page.contains("paused") && page.contains(">Resume<"));
    ui.post_form(&format!("/admin/webhooks/{id}/enabled"), &[("csrf", csrf.as_str()), ("enabled", "true")], None).await;
    assert_eq!(server.api_json("/api/v1/webhooks", &[]).await[0]["enabled"], true);
    let checked = ui.post_form("/admin/webhooks/check-expiry", &[("csrf", csrf.as_str())], None).await;
    assert_eq!(checked.status(), StatusCode::SEE_OTHER);
    assert_eq!(checked.headers()["location"], "/admin/webhooks?checked=0");
    let deleted = ui.post_form(&format!("/admin/webhooks/{id}/delete"), &[("csrf", csrf.as_str())], None).await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(server.api_json("/api/v1/webhooks", &[]).await, json!([]));
    let missing = ui.post_form(&format!("/admin/webhooks/{id}/delete"), &[("csrf", csrf.as_str())], None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn two_instances_on_one_database_send_each_delivery_once() {
    let receiver = Receiver::start(0, "").await;
    let mut shared = ServeArgs::default();
    crate::backends::use_postgres_s3(&mut shared).await;
    let (a, b) = tokio::join!(Server::start_exactly(shared.clone()), Server::start_exactly(shared));
    let webhook = create_webhook(&a, json!({"url": receiver.url})).await;
    let id = webhook["id"].as_str().expect("id").to_owned();
    // Tests enqueued through both instances at once: both workers claim from the same rows.
    let ping = |server: &Server| {
        let request = server
            .client()
            .post(format!("{}/api/v1/webhooks/{id}/ping", server.base))
            .bearer_auth(&server.token)
            .send();
        async move {
            let response = request.await.expect("ping");
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
    };
    let pings: Vec<_> = (0..20).flat_map(|_| [ping(&a), ping(&b)]).collect();
    futures_util::future::join_all(pings).await;
    let requests = receiver.wait_for(40).await;
    let listed = settled_deliveries(&b, &id, 40).await;
    assert!(listed.iter().all(|delivery| delivery["state"] == "delivered" && delivery["attempts"] == 1), "{listed:?}");
    let mut ids: Vec<&str> = requests.iter().map(|request| request.header("x-otaship-delivery")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every delivery arrived once");
    assert_eq!(receiver.all().len(), 40, "and none twice");
}

/// The first `count` deliveries of a webhook, once none is pending.
async fn settled_deliveries(server: &Server, webhook_id: &str, count: usize) -> Vec<Value> {
    let look = async {
        loop {
            let listed = deliveries(server, webhook_id).await;
            if listed.len() >= count && listed.iter().all(|delivery| delivery["state"] != "pending") {
                return listed;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), look).await.expect("the deliveries settle")
}
