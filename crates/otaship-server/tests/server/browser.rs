//! The install page in headless Chromium, as testers' devices see it: iPhone Safari gets the
//! Install button, iPadOS Safari in desktop mode (a Mac user agent with touch points) too, an
//! in-app browser is told to open Safari, a computer gets the QR code, and a build that cannot
//! be installed says why. Every assertion is on what is displayed, not on the HTML source.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`scripts/test` installs them).
//! One chromedriver serves the whole test binary, on a free loopback port; it and every browser
//! it starts are killed when the binary exits, however it exits. Screenshots of every case go to
//! `test-artifacts/browser/`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant, UNIX_EPOCH};

use fantoccini::{Client, ClientBuilder, Locator};
use otaship_ipa::builder::{IpaBuilder, profile_plist};
use serde_json::{Value, json};

use crate::support::{FIXTURES, Server, manifest_url_of};

const ARTIFACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-artifacts/browser");
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long any wait for the browser may take before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);

const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
const MAC_SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Version/18.1 Safari/605.1.15";
const IPHONE_WECHAT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323c) NetType/WIFI Language/zh_CN";
const IPHONE_CHROME: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1";
const LINUX_CHROME: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const WINDOWS_CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A device to emulate: its browser's user agent, its screen, and its touch points.
#[derive(Clone, Copy)]
pub(crate) struct Device {
    user_agent: &'static str,
    width: u32,
    height: u32,
    mobile: bool,
    touch_points: u32,
}

pub(crate) const IPHONE: Device =
    Device { user_agent: IPHONE_SAFARI, width: 390, height: 844, mobile: true, touch_points: 5 };
/// iPadOS Safari in its default desktop mode: a Mac's user agent, but a touch screen.
const IPAD_DESKTOP_MODE: Device =
    Device { user_agent: MAC_SAFARI, width: 820, height: 1180, mobile: true, touch_points: 5 };
const MAC: Device = Device { user_agent: MAC_SAFARI, width: 1280, height: 900, mobile: false, touch_points: 0 };
pub(crate) const COMPUTER: Device =
    Device { user_agent: LINUX_CHROME, width: 1280, height: 900, mobile: false, touch_points: 0 };

/// An ad-hoc (`enterprise: false`) or in-house build that installs, its profile valid until 2100.
fn installable_ipa(enterprise: bool) -> Vec<u8> {
    let far = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let devices: &[&str] = &["00008030-001544522E60802E"];
    let profile = if enterprise {
        profile_plist("ABCDE12345.com.example.fieldnotes", None, true, false, far)
    } else {
        profile_plist("ABCDE12345.com.example.fieldnotes", Some(devices), false, false, far)
    };
    IpaBuilder::new("com.example.fieldnotes")
        .info("CFBundleDisplayName", "Field Notes")
        .info("CFBundleShortVersionString", "2.4.1")
        .info("CFBundleVersion", "318")
        .profile(profile)
        .to_bytes()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture: run scripts/test with ../shared beside the repository")
}

fn text_of<'a>(build: &'a Value, field: &str) -> &'a str {
    build[field].as_str().unwrap_or_else(|| panic!("{field} in {build}"))
}

// ---------------------------------------------------------------------------------------------
// chromedriver, one per test binary
// ---------------------------------------------------------------------------------------------

/// The running chromedriver. It runs in a process group of its own under a small shell that
/// reads our end of a pipe: when this process ends, however it ends, the pipe closes and the
/// shell kills the whole group, chromedriver and every Chromium it started.
struct Driver {
    url: String,
    _guard: (Child, ChildStdin),
}

static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();

fn driver() -> &'static Driver {
    DRIVER.get_or_init(start_driver).as_ref().unwrap_or_else(|error| panic!("{error}"))
}

fn start_driver() -> Result<Driver, String> {
    let missing = |what: &str| {
        format!(
            "{what} is not installed: run scripts/test, which installs the Debian packages chromium and chromium-driver"
        )
    };
    if !Path::new(CHROMIUM).is_file() {
        return Err(missing(&format!("Chromium ({CHROMIUM})")));
    }
    let chromedriver = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromedriver"))
        .find(|path| path.is_file())
        .ok_or_else(|| missing("chromedriver"))?;
    // `--port=0`: chromedriver picks a free port and says which. It listens on loopback only.
    let mut child = Command::new("sh")
        .args(["-c", "\"$1\" --port=0 & read -r _; kill -KILL 0", "sh"])
        .arg(&chromedriver)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", chromedriver.display()))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Reads to the end, so that chromedriver never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line.split("started successfully on port ").nth(1) {
                let _ = port_tx.send(port.trim_end_matches('.').parse::<u16>());
            }
        }
    });
    let port = match port_rx.recv_timeout(PATIENCE) {
        Ok(Ok(port)) => port,
        other => {
            drop(stdin); // the shell kills chromedriver
            let _ = child.wait();
            return Err(format!("chromedriver did not start ({other:?}): run scripts/test to install it"));
        }
    };
    Ok(Driver { url: format!("http://127.0.0.1:{port}"), _guard: (child, stdin) })
}

// ---------------------------------------------------------------------------------------------
// A browser session emulating one device
// ---------------------------------------------------------------------------------------------

pub(crate) struct Browser {
    pub(crate) client: Client,
    cdp_url: String,
    device: Device,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn open(device: Device) -> Browser {
        let driver = driver();
        let profile = tempfile::tempdir().expect("tempdir");
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // Loopback only: no name resolves, so nothing can reach beyond this machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--user-agent={}", device.user_agent),
            format!("--window-size={},{}", device.width, device.height),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!("an object") };
        let client = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("a Chromium session: run scripts/test to install chromium and chromium-driver");
        let session = client.session_id().await.expect("session id").expect("a session");
        let browser = Browser {
            client,
            cdp_url: format!("{}/session/{session}/goog/cdp/execute", driver.url),
            device,
            _profile: profile,
        };
        browser
            .cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({
                    "width": device.width, "height": device.height,
                    "deviceScaleFactor": if device.mobile { 2 } else { 1 }, "mobile": device.mobile,
                }),
            )
            .await;
        if device.touch_points > 0 {
            browser
                .cdp(
                    "Emulation.setTouchEmulationEnabled",
                    json!({ "enabled": true, "maxTouchPoints": device.touch_points }),
                )
                .await;
        }
        // Every script error and unhandled rejection of every page, for `assert_page_sound`.
        let hook = "window.__errors = [];\
            window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });\
            window.addEventListener('unhandledrejection', function (e) { window.__errors.push(String(e.reason)); });";
        browser.cdp("Page.addScriptToEvaluateOnNewDocument", json!({ "source": hook })).await;
        browser
    }

    /// A Chrome DevTools command, through chromedriver.
    pub(crate) async fn cdp(&self, cmd: &str, params: Value) -> Value {
        let response = reqwest::Client::new()
            .post(&self.cdp_url)
            .json(&json!({ "cmd": cmd, "params": params }))
            .send()
            .await
            .expect("chromedriver");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert!(status.is_success(), "{cmd}: {body}");
        body["value"].clone()
    }

    /// Loads a page and waits for its script to have sorted the device out.
    async fn load(&self, url: &str) {
        self.client.goto(url).await.expect("page");
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("html.is-ios, html.is-desktop"))
            .await
            .expect("the page's script marks the device (a script error would stop it)");
    }

    pub(crate) async fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.expect("script")
    }

    /// `ios` or `desktop`: what the page decided the device is.
    async fn kind(&self) -> String {
        let classes = self.script("return document.documentElement.className;", vec![]).await;
        let classes = classes.as_str().expect("class names");
        match (classes.contains("is-ios"), classes.contains("is-desktop")) {
            (true, false) => "ios".to_owned(),
            (false, true) => "desktop".to_owned(),
            _ => panic!("the page marked the device as {classes:?}"),
        }
    }

    /// Whether the element exists and is displayed (WebDriver's displayedness: not hidden by
    /// `display`, `visibility` or a zero size, itself or through an ancestor).
    async fn shown(&self, css: &str) -> bool {
        match self.client.find_all(Locator::Css(css)).await.expect("find").as_slice() {
            [] => false,
            [element] => element.is_displayed().await.expect("displayed"),
            _ => panic!("{css} matches more than one element"),
        }
    }

    async fn exists(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.expect("find").is_empty()
    }

    /// The text a reader sees in the element.
    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.expect(css).text().await.expect("text")
    }

    async fn attr(&self, css: &str, name: &str) -> String {
        let element = self.client.find(Locator::Css(css)).await.expect(css);
        element.attr(name).await.expect("attribute").unwrap_or_else(|| panic!("{css} has no {name}"))
    }

    /// Whether the element lies wholly within the first screen, without scrolling.
    async fn in_first_screen(&self, css: &str) -> bool {
        let script = "var box = document.querySelector(arguments[0]).getBoundingClientRect();\
            return box.width > 0 && box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight;";
        self.script(script, vec![json!(css)]).await == json!(true)
    }

    /// The element's rendered size in CSS pixels.
    async fn size(&self, css: &str) -> (f64, f64) {
        let script = "var box = document.querySelector(arguments[0]).getBoundingClientRect();\
            return [box.width, box.height];";
        let size = self.script(script, vec![json!(css)]).await;
        (size[0].as_f64().expect("width"), size[1].as_f64().expect("height"))
    }

    /// No script error, and nothing loaded from anywhere but the page's own server.
    async fn assert_page_sound(&self) {
        let errors = self.script("return window.__errors;", vec![]).await;
        assert_eq!(errors, json!([]), "script errors on the page");
        let script = "return performance.getEntriesByType('resource').map(function (entry) { return entry.name; })\
            .filter(function (url) { return url.indexOf(location.origin + '/') !== 0; });";
        assert_eq!(self.script(script, vec![]).await, json!([]), "the page loads only from its own server");
        let overflow = self.script("return document.documentElement.scrollWidth - window.innerWidth;", vec![]).await;
        assert!(overflow.as_i64().is_some_and(|extra| extra <= 0), "nothing sticks out sideways ({overflow} px)");
    }

    /// Waits, with a deadline, until the element is displayed.
    async fn wait_until_shown(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.shown(css).await {
            assert!(Instant::now() < deadline, "{css} was not displayed within {PATIENCE:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Saves the whole page, not only the first screen, as `test-artifacts/browser/<case>.png`.
    pub(crate) async fn screenshot(&self, case: &str) {
        let height = self.script("return Math.ceil(document.documentElement.scrollHeight);", vec![]).await;
        let height = height.as_u64().expect("height").max(u64::from(self.device.height));
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": self.device.width, "height": height,
                "deviceScaleFactor": if self.device.mobile { 2 } else { 1 }, "mobile": self.device.mobile,
            }),
        )
        .await;
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(ARTIFACTS);
        std::fs::create_dir_all(&dir).expect("test-artifacts/browser");
        std::fs::write(dir.join(format!("{case}.png")), png).expect("screenshot file");
    }

    pub(crate) async fn close(self) {
        self.client.close().await.expect("close the session");
    }
}

/// What every device that can install sees: the button leading to this build's manifest, no
/// Safari hint, no QR code.
async fn assert_offers_install(browser: &Browser, build: &Value) {
    assert_eq!(browser.kind().await, "ios");
    assert!(browser.shown("#install-button").await, "the Install button is displayed");
    assert_eq!(browser.text("#install-button").await, "Install");
    assert!(browser.in_first_screen("#install-button").await, "the Install button is on the first screen");
    let (_, height) = browser.size("#install-button").await;
    assert!(height >= 44.0, "the Install button is a comfortable tap target ({height} px high)");
    let link = browser.attr("#install-button", "href").await;
    assert_eq!(manifest_url_of(&link), text_of(build, "manifest_url"));
    assert!(!browser.shown("#open-in-safari").await, "no hint to open Safari: this is Safari");
    assert!(!browser.shown("#copy-link").await);
    assert!(!browser.shown("#qr-section").await, "no QR code on the device that installs");
    assert!(!browser.shown("#not-installable").await);
    browser.assert_page_sound().await;
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn iphone_safari_gets_the_install_button() {
    let mut server = Server::start().await;
    let build = server.upload_with_notes(installable_ipa(false), "Fixes the crash when saving a note.").await;
    assert_eq!(build["installable"]["ok"], true, "{build}");
    let browser = Browser::open(IPHONE).await;
    browser.load(text_of(&build, "install_url")).await;
    assert_offers_install(&browser, &build).await;
    assert_eq!(browser.text("#app-name").await, "Field Notes");
    browser.screenshot("iphone-safari").await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test]
async fn ipados_safari_in_desktop_mode_counts_as_an_ipad() {
    let mut server = Server::start().await;
    let build = server.upload_with_notes(installable_ipa(true), "In-house build for the field team.").await;
    assert_eq!(build["installable"]["ok"], true, "{build}");
    let browser = Browser::open(IPAD_DESKTOP_MODE).await;
    browser.load(text_of(&build, "install_url")).await;
    let seen = browser.script("return [navigator.userAgent, navigator.maxTouchPoints];", vec![]).await;
    assert_eq!(seen, json!([MAC_SAFARI, 5]), "the emulation is in place");
    assert_offers_install(&browser, &build).await;
    browser.screenshot("ipados-desktop-mode").await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test]
async fn mac_safari_without_touch_counts_as_a_computer() {
    let mut server = Server::start().await;
    let build = server.upload_with_notes(installable_ipa(false), "").await;
    let browser = Browser::open(MAC).await;
    browser.load(text_of(&build, "install_url")).await;
    let seen = browser.script("return [navigator.userAgent, navigator.maxTouchPoints];", vec![]).await;
    assert_eq!(seen, json!([MAC_SAFARI, 0]));
    assert_eq!(browser.kind().await, "desktop");
    assert!(browser.shown("#qr-section svg").await, "the QR code is displayed");
    assert!(!browser.shown("#open-in-safari").await);
    browser.assert_page_sound().await;
    browser.screenshot("macos-safari").await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test]
async fn in_app_and_other_browsers_on_iphone_are_sent_to_safari() {
    let mut server = Server::start().await;
    let build = server.upload_with_notes(installable_ipa(false), "").await;
    let install_url = text_of(&build, "install_url");
    for (case, user_agent, reason) in [
        ("iphone-wechat", IPHONE_WECHAT, "Apps cannot be installed from inside this app's browser."),
        ("iphone-chrome", IPHONE_CHROME, "Only Safari can install apps."),
    ] {
        let browser = Browser::open(Device { user_agent, ..IPHONE }).await;
        browser.load(install_url).await;
        assert_eq!(browser.kind().await, "ios", "{case}");
        assert!(browser.shown("#open-in-safari").await, "{case}: the Safari hint is displayed");
        assert!(browser.in_first_screen("#open-in-safari").await, "{case}: on the first screen");
        let hint = browser.text("#open-in-safari").await;
        assert!(hint.contains("Open this page in Safari."), "{case}: {hint}");
        assert!(hint.contains(reason), "{case}: {hint}");
        assert!(browser.shown("#copy-link").await, "{case}: the copy button is displayed");
        assert_eq!(browser.text("#copy-link").await, "Copy link");
        assert_eq!(browser.attr("#copy-link", "data-url").await, install_url);
        assert!(!browser.shown("#copy-done").await);
        assert!(!browser.shown("#install-button").await, "{case}: no Install button that would do nothing");
        assert!(!browser.shown("#qr-section").await, "{case}");
        browser.assert_page_sound().await;

        // The button copies the page's address and says so.
        let permissions = ["clipboardReadWrite", "clipboardSanitizedWrite"];
        browser.cdp("Browser.grantPermissions", json!({ "origin": server.base, "permissions": permissions })).await;
        browser.client.find(Locator::Css("#copy-link")).await.expect("button").click().await.expect("click");
        browser.wait_until_shown("#copy-done").await;
        assert!(browser.text("#copy-done").await.starts_with("Copied."), "{case}");
        let copied = browser
            .client
            .execute_async("navigator.clipboard.readText().then(arguments[0], arguments[0]);", vec![])
            .await
            .expect("clipboard");
        assert_eq!(copied, json!(install_url), "{case}");
        browser.assert_page_sound().await;
        browser.screenshot(case).await;
        browser.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_computer_gets_the_qr_code() {
    let mut server = Server::start().await;
    let build = server.upload_with_notes(installable_ipa(false), "").await;
    for (case, user_agent) in [("linux-chrome", LINUX_CHROME), ("windows-chrome", WINDOWS_CHROME)] {
        let browser = Browser::open(Device { user_agent, ..COMPUTER }).await;
        browser.load(text_of(&build, "install_url")).await;
        assert_eq!(browser.kind().await, "desktop", "{case}");
        assert!(browser.shown("#qr-section").await, "{case}");
        assert!(browser.shown("#qr-section svg").await, "{case}: the QR code is an inline SVG, displayed");
        let (width, height) = browser.size("#qr-section svg").await;
        assert!(width >= 150.0 && height >= 150.0, "{case}: the QR code is large enough to scan ({width}x{height})");
        assert!(browser.in_first_screen("#qr-section svg").await, "{case}: the QR code is on the first screen");
        let text = browser.text("#qr-section").await;
        assert!(text.contains("Scan this code with the iPhone or iPad camera"), "{case}: {text}");
        assert!(!browser.shown("#open-in-safari").await, "{case}");
        browser.assert_page_sound().await;
        browser.screenshot(case).await;
        browser.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_build_that_cannot_install_says_why_on_iphone() {
    let mut server = Server::start().await;
    for (case, file, wanted) in [
        ("iphone-app-store-build", "app-info-ipad.ipa", "signed with an App Store profile"),
        ("iphone-unsigned-build", "IPAParser-Example.ipa", "is not signed for devices"),
    ] {
        let build = server.upload_with_notes(fixture(file), "").await;
        assert_eq!(build["installable"]["ok"], false, "{case}");
        let browser = Browser::open(IPHONE).await;
        browser.load(text_of(&build, "install_url")).await;
        assert_eq!(browser.kind().await, "ios", "{case}");
        assert!(!browser.exists("#install-button").await, "{case}: no Install button");
        assert!(!browser.exists("a[href^='itms-services:']").await, "{case}: no install link at all");
        assert!(browser.shown("#not-installable").await, "{case}: the reason is displayed");
        assert!(browser.in_first_screen("#not-installable strong").await, "{case}: on the first screen");
        let said = browser.text("#not-installable").await;
        assert!(said.contains("This build cannot be installed."), "{case}: {said}");
        assert!(said.contains(wanted), "{case}: {said}");
        for problem in build["installable"]["problems"].as_array().expect("problems") {
            let message = text_of(problem, "message");
            assert!(said.contains(message), "{case}: every problem is told: {message}");
            assert!(!said.contains(text_of(problem, "code")), "{case}: in words, not codes: {said}");
        }
        assert!(!browser.shown("#open-in-safari").await, "{case}");
        assert!(!browser.shown("#qr-section").await, "{case}");
        if build["icon_url"].is_string() {
            let loaded = browser
                .script("var i = document.querySelector('img.icon'); return i.complete && i.naturalWidth;", vec![])
                .await;
            assert!(loaded.as_u64().is_some_and(|width| width > 0), "{case}: the icon is drawn ({loaded})");
        }
        browser.assert_page_sound().await;
        browser.screenshot(case).await;
        browser.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn an_iphone_is_told_when_the_build_does_not_fit_it() {
    let mut server = Server::start().await;
    let far = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let devices: &[&str] = &["00008030-001544522E60802E"];
    let ipad_only = IpaBuilder::new("com.example.tablet")
        .info("UIDeviceFamily", plist::Value::Array(vec![2.into()]))
        .info("MinimumOSVersion", "18.2")
        .profile(profile_plist("ABCDE12345.com.example.tablet", Some(devices), false, false, far))
        .to_bytes();
    let build = server.upload_with_notes(ipad_only, "").await;
    let browser = Browser::open(IPHONE).await;
    browser.load(text_of(&build, "install_url")).await;
    browser.wait_until_shown("#device-warning").await;
    let warning = browser.text("#device-warning").await;
    assert!(warning.contains("runs only on iPad"), "{warning}");
    assert!(warning.contains("needs iOS 18.2 or later; this device runs iOS 18.1.0"), "{warning}");
    browser.assert_page_sound().await;
    browser.screenshot("iphone-ipad-only-build").await;
    browser.close().await;

    // The iPad it was made for hears nothing of the kind.
    let browser = Browser::open(IPAD_DESKTOP_MODE).await;
    browser.load(text_of(&build, "install_url")).await;
    assert!(!browser.shown("#device-warning").await);
    browser.close().await;
    server.stop().await;
}

/// Bytes that do not compress, so that an upload takes several progress events.
fn noise(length: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if index <= chunk.len() { char::from(ALPHABET[((n >> shift) & 63) as usize]) } else { '=' });
        }
    }
    out
}

#[tokio::test]
async fn uploaders_sign_in_drop_an_ipa_watch_it_progress_and_delete_it() {
    let mut server = Server::start().await;
    let browser = Browser::open(COMPUTER).await;
    browser.client.goto(&format!("{}/", server.base)).await.expect("home");
    let token = browser.client.wait().at_most(PATIENCE).for_element(Locator::Css("#token")).await.expect("sign-in");
    token.send_keys(&server.token).await.expect("type the token");
    browser.client.find(Locator::Css("#token-form button")).await.expect("button").click().await.expect("click");
    if browser.client.wait().at_most(PATIENCE).for_element(Locator::Css("#drop-zone")).await.is_err() {
        let html = browser.client.source().await.expect("source");
        panic!("not signed in: {html}");
    }
    assert!(browser.shown("#no-apps").await);
    browser.assert_page_sound().await;
    browser.screenshot("uploader-empty").await;
    let cookie_seen_by_script = browser.script("return document.cookie;", vec![]).await;
    assert_eq!(cookie_seen_by_script, json!(""), "the session cookie is HttpOnly");

    // Drop a 3 MB build on the zone, recording the progress events the page gets.
    let ipa = IpaBuilder::new("com.example.dropped")
        .info("CFBundleDisplayName", "Dropped & <Loaded>")
        .app_file("Assets.bin", noise(3 << 20))
        .to_bytes();
    let record = "sessionStorage.setItem('progress', '[]');\
        var open = XMLHttpRequest.prototype.open;\
        XMLHttpRequest.prototype.open = function () {\
          this.upload.addEventListener('progress', function (e) {\
            var seen = JSON.parse(sessionStorage.getItem('progress')); seen.push([e.loaded, e.total]);\
            sessionStorage.setItem('progress', JSON.stringify(seen));\
          });\
          return open.apply(this, arguments);\
        };";
    browser.script(record, vec![]).await;
    browser.script("document.getElementById('notes').value = arguments[0];", vec![json!("Dropped <b>in</b>")]).await;
    let drop = "var bytes = Uint8Array.from(atob(arguments[0]), function (c) { return c.charCodeAt(0); });\
        var transfer = new DataTransfer();\
        transfer.items.add(new File([bytes], 'Dropped.ipa', { type: 'application/octet-stream' }));\
        var zone = document.getElementById('drop-zone');\
        zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));\
        zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));";
    browser.script(drop, vec![json!(base64(&ipa))]).await;
    browser
        .client
        .wait()
        .at_most(PATIENCE)
        .for_url(&format!("{}/apps/com.example.dropped", server.base).parse().expect("url"))
        .await
        .expect("sent to the app page");
    browser
        .client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#builds .build"))
        .await
        .expect("the build is listed");
    let progress = browser.script("return JSON.parse(sessionStorage.getItem('progress'));", vec![]).await;
    let events = progress.as_array().expect("events");
    assert!(!events.is_empty(), "the page saw upload progress");
    let last = &events[events.len() - 1];
    assert_eq!(last[0], last[1], "the progress reached the whole body: {progress}");
    assert!(last[1].as_u64().is_some_and(|total| total > (3 << 20)), "{progress}");
    assert_eq!(browser.text("#app-name").await, "Dropped & <Loaded>");
    assert!(browser.text("#builds .build").await.contains("Dropped <b>in</b>"), "the notes, as text");
    browser.assert_page_sound().await;
    browser.screenshot("uploader-app-page").await;

    // Delete asks first; accepting removes the build and, as it was the last, the app.
    browser.client.find(Locator::Css(".delete-form button")).await.expect("delete").click().await.expect("click");
    browser.client.accept_alert().await.expect("the confirmation");
    browser.client.wait().at_most(PATIENCE).for_element(Locator::Css("#no-apps")).await.expect("back to no apps");
    assert!(server.blob_keys().await.is_empty(), "the files are gone");
    browser.close().await;
    server.stop().await;
}

/// An iPhone that registered in this browser is told, on each install page, whether the build
/// will install on it and why not; before registering, the page offers to register it.
#[tokio::test]
async fn the_install_page_tells_an_enrolled_iphone_whether_each_build_installs() {
    use crate::devices::{build_for, enroll, test_device};
    let udid = "00008030-001544522E60802E";
    let mut server = Server::start().await;
    let upload = |ipa: Vec<u8>| {
        let server = &server;
        async move {
            let response = server.upload(ipa).await;
            assert_eq!(response.status(), reqwest::StatusCode::CREATED);
            response.json::<Value>().await.expect("JSON")
        }
    };
    let listed = upload(build_for("com.example.listed", Some(&[udid]), None, "15.0")).await;
    let missing = upload(build_for("com.example.missing", Some(&["00008030-00154452AAAAAAAA"]), None, "15.0")).await;
    let in_house = upload(build_for("com.example.inhouse", None, None, "15.0")).await;
    let too_new = upload(build_for("com.example.toonew", Some(&[udid]), None, "19.0")).await;

    let browser = Browser::open(IPHONE).await;
    browser.load(text_of(&listed, "install_url")).await;
    assert!(browser.shown("#enroll-hint").await, "an unknown device is offered registration");
    assert!(browser.shown("#developer-mode").await, "ad hoc on iOS 18: the Developer Mode note");
    assert!(!browser.exists("#device-check").await);
    browser.screenshot("device-not-registered").await;

    // Chromium cannot be a Profile Service: the test posts the device's signed reply, and the
    // browser opens the 301's Location, as Safari does after Settings installed the profile.
    let location = enroll(&server, test_device(), udid, "22B83", None).await;
    browser.client.goto(&location).await.expect("result page");
    browser.wait_until_shown("#udid").await;
    assert_eq!(browser.text("#udid").await, udid);
    assert!(browser.shown("#copy-udid").await);
    assert_eq!(browser.text("#device-ios").await, "18.1 (build 22B83)");
    browser.screenshot("device-registered").await;

    browser.load(text_of(&listed, "install_url")).await;
    browser.wait_until_shown("#device-check").await;
    assert!(
        browser
            .text("#device-check")
            .await
            .contains(&format!("Your iPhone 14 Pro ({udid}) is in this build's provisioning profile."))
    );
    assert!(browser.shown("#install-button").await && !browser.shown("#copy-udid").await);
    assert!(!browser.shown("#enroll-hint").await);
    browser.assert_page_sound().await;
    browser.screenshot("device-listed").await;

    browser.load(text_of(&missing, "install_url")).await;
    let text = browser.text("#device-check").await;
    assert!(
        text.contains("is not in this build's provisioning profile")
            && text.contains("Send this UDID to the developer"),
        "{text}"
    );
    assert!(browser.shown("#copy-udid").await, "the UDID can be copied to send it");
    browser.screenshot("device-not-listed").await;

    browser.load(text_of(&in_house, "install_url")).await;
    assert!(browser.text("#device-check").await.contains("installs on any device"));
    assert!(!browser.exists("#developer-mode").await, "enterprise builds need no Developer Mode");
    browser.screenshot("device-enterprise").await;

    browser.load(text_of(&too_new, "install_url")).await;
    let text = browser.text("#device-check").await;
    assert!(text.contains("This build needs iOS 19.0 or later; your iPhone 14 Pro runs iOS 18.1."), "{text}");
    assert!(!browser.shown("#device-warning").await, "said once, by the device panel");
    browser.screenshot("device-ios-too-old").await;

    browser.close().await;
    server.stop().await;
}

/// The registration page: on an iPhone the steps and the profile; on a computer also the QR
/// code that opens it on the phone; in another browser on the iPhone, a hint to use Safari.
#[tokio::test]
async fn the_registration_page_guides_each_device() {
    let mut server = Server::start().await;
    let url = format!("{}/devices/enroll", server.base);
    let iphone = Browser::open(IPHONE).await;
    iphone.client.goto(&url).await.expect("page");
    iphone.wait_until_shown("#download-profile").await;
    assert!(!iphone.shown("#enroll-qr").await && !iphone.shown("#enroll-open-in-safari").await);
    assert_eq!(iphone.attr("#download-profile", "href").await, "/devices/enroll.mobileconfig");
    iphone.screenshot("enroll-iphone").await;
    iphone.close().await;

    let computer = Browser::open(COMPUTER).await;
    computer.client.goto(&url).await.expect("page");
    computer.wait_until_shown("#enroll-qr svg").await;
    computer.close().await;

    let chrome = Browser::open(Device { user_agent: IPHONE_CHROME, ..IPHONE }).await;
    chrome.client.goto(&url).await.expect("page");
    chrome.wait_until_shown("#enroll-open-in-safari").await;
    chrome.close().await;
    server.stop().await;
}

#[tokio::test]
async fn an_iphone_passes_a_share_links_password_and_the_installer_needs_no_cookie() {
    let mut server = Server::start().await;
    let ipa = installable_ipa(true);
    let build = server.upload_with_notes(ipa.clone(), "Shared with the client.").await;
    let response = server
        .client()
        .post(format!("{}/api/v1/builds/{}/links", server.base, text_of(&build, "id")))
        .bearer_auth(&server.token)
        .json(&json!({"password": "open sesame", "label": "Client"}))
        .send()
        .await
        .expect("create link");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let link: Value = response.json().await.expect("link");
    let browser = Browser::open(IPHONE).await;
    browser.client.goto(text_of(&link, "url")).await.expect("page");
    let field = browser.client.wait().at_most(PATIENCE).for_element(Locator::Css("#password")).await.expect("form");
    assert!(!browser.exists("#install-button").await, "nothing to install before the password");
    browser.screenshot("share-password").await;

    // A wrong password: said so, still locked.
    field.send_keys("guess").await.expect("type");
    browser.client.find(Locator::Css("#unlock")).await.expect("button").click().await.expect("click");
    browser.client.wait().at_most(PATIENCE).for_element(Locator::Css("#password-error")).await.expect("error shown");
    assert!(browser.text("#password-error").await.contains("not right"));

    // The right one: the install page, whose button needs no cookie.
    let field = browser.client.find(Locator::Css("#password")).await.expect("field");
    field.send_keys("open sesame").await.expect("type");
    browser.client.find(Locator::Css("#unlock")).await.expect("button").click().await.expect("click");
    browser.client.wait().at_most(PATIENCE).for_element(Locator::Css("#install-button")).await.expect("install page");
    browser
        .client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("html.is-ios"))
        .await
        .expect("the page's script ran");
    assert!(browser.shown("#install-button").await);
    assert_eq!(browser.text("#app-name").await, "Field Notes");
    let manifest_url = manifest_url_of(&browser.attr("#install-button", "href").await);
    assert!(manifest_url.starts_with(&format!("{}/", text_of(&link, "url"))), "{manifest_url}");
    browser.assert_page_sound().await;
    assert_eq!(browser.script("return document.cookie;", vec![]).await, json!(""), "the pass cookie is HttpOnly");
    browser.screenshot("share-unlocked").await;
    browser.close().await;

    // The installer: no cookies at all.
    let installer = reqwest::Client::new();
    let manifest = installer.get(&manifest_url).send().await.expect("manifest");
    assert_eq!(manifest.status(), reqwest::StatusCode::OK);
    let manifest = plist::Value::from_reader_xml(manifest.bytes().await.expect("body").as_ref()).expect("plist");
    let item = &manifest.as_dictionary().expect("dict")["items"].as_array().expect("items")[0];
    let asset = &item.as_dictionary().expect("item")["assets"].as_array().expect("assets")[0];
    let package_url = asset.as_dictionary().expect("asset")["url"].as_string().expect("url").to_owned();
    let bytes = installer.get(&package_url).send().await.expect("ipa").bytes().await.expect("bytes");
    assert_eq!(bytes.as_ref(), ipa.as_slice());
    server.stop().await;
}

/// Release notes are Markdown: headings, lists, tables and safe links render as elements;
/// raw HTML shows as text and unsafe links as their words, so no payload runs, loads anything
/// or changes the page, on the install page (in Chromium) or the app page.
#[tokio::test]
async fn release_notes_render_markdown_and_run_no_payload() {
    const PAYLOADS: &[&str] = &[
        "<script>window.__xss = 1</script>",
        "<img src=x onerror=\"window.__xss = 2\">",
        "<svg onload=\"window.__xss = 3\"></svg>",
        "<details open ontoggle=\"window.__xss = 4\"><summary>s</summary></details>",
        "<iframe srcdoc=\"<script>parent.__xss = 5</script>\"></iframe>",
        "<img src=x onerror=\"document.title = 'pwned'\">",
        "<input autofocus onfocus=\"window.__xss = 6\">",
        "<video><source onerror=\"window.__xss = 7\"></video>",
        "<object data=\"javascript:window.__xss = 8\"></object>",
        "<style>body { display: none }</style>",
        "<a id=\"evil\" href=\"javascript:window.__xss = 9\">raw link</a>",
        "[md link](javascript:window.__xss=10)",
        "[cased link](JaVaScRiPt:window.__xss=11)",
        "[entity link](&#106;avascript:window.__xss=12)",
        "[data link](data:text/html,<script>parent.__xss=13</script>)",
        "![image link](javascript:window.__xss=14)",
        "![pixel](https://evil.example/pixel.png)",
        "<javascript:window.__xss=15>",
        "[quote](https://example.com/\"onmouseover=\"window.__xss=16)",
        "<!-- <script>window.__xss = 17</script> -->",
    ];
    let notes = format!(
        "# Release 2.4.1\n\n- Fixed the crash on save\n- [x] Checked the export\n\n| Area | State |\n|---|---|\n\
         | Sync | faster |\n\n**Bold** and [the docs](https://example.com/docs).\n\n{}\n",
        PAYLOADS.join("\n\n")
    );
    let mut server = Server::start().await;
    let build = server.upload_with_notes(installable_ipa(false), &notes).await;
    let browser = Browser::open(IPHONE).await;
    browser.load(text_of(&build, "install_url")).await;

    // The Markdown, as elements.
    assert!(browser.shown("#release-notes .release-notes h1").await);
    assert_eq!(browser.text("#release-notes h1").await, "Release 2.4.1");
    assert_eq!(browser.text("#release-notes ul > li:first-child").await, "Fixed the crash on save");
    assert!(browser.shown("#release-notes ul > li:nth-child(2) input[type=checkbox][disabled]").await);
    assert_eq!(browser.text("#release-notes td:first-child").await, "Sync");
    assert_eq!(browser.text("#release-notes p strong").await, "Bold");
    assert_eq!(browser.attr("a[href='https://example.com/docs']", "rel").await, "nofollow noopener noreferrer");

    // No payload ran, and none is there to run later.
    let ran = browser.script("return [typeof window.__xss, document.title];", vec![]).await;
    assert_eq!(ran, json!(["undefined", "Install Field Notes 2.4.1"]));
    let active = "script, img, svg, iframe, object, embed, style, video, audio, source, details, form, body, math, \
        link, meta, base, input:not([type=checkbox][disabled])";
    let found = browser
        .script("return document.querySelectorAll('#release-notes ' + arguments[0].split(', ').join(', #release-notes ')).length;", vec![json!(active)])
        .await;
    assert_eq!(found, json!(0), "no active element in the notes");
    let handlers = "return Array.prototype.concat.apply([], Array.from(document.querySelectorAll('#release-notes *'))\
        .map(function (e) { return Array.from(e.attributes).map(function (a) { return a.name; }); }))\
        .filter(function (name) { return /^on/i.test(name) || name === 'style' || name === 'srcdoc'; });";
    assert_eq!(browser.script(handlers, vec![]).await, json!([]), "no handler or style attribute");
    let links = "return Array.from(document.querySelectorAll('#release-notes a'))\
        .map(function (a) { return [a.protocol, a.rel, a.textContent]; });";
    let links = browser.script(links, vec![]).await;
    for link in links.as_array().expect("links") {
        assert!(matches!(link[0].as_str(), Some("https:" | "http:" | "mailto:")), "{link}");
        assert_eq!(link[1], "nofollow noopener noreferrer", "{link}");
    }
    let texts: Vec<&str> = links.as_array().expect("links").iter().filter_map(|link| link[2].as_str()).collect();
    assert_eq!(texts, ["the docs", "pixel", "quote"], "only the safe links are links");
    assert!(!browser.exists("#evil").await);
    let shown = browser.text("#release-notes").await;
    for words in
        ["<script>window.__xss = 1</script>", "md link", "entity link", "image link", "javascript:window.__xss=15"]
    {
        assert!(shown.contains(words), "{words} is shown as text: {shown}");
    }
    browser.assert_page_sound().await;
    browser.screenshot("release-notes-markdown").await;
    browser.close().await;

    // The app page renders the same notes the same way.
    let mut uploader = crate::support::UiClient::new(&server);
    uploader.sign_in(&server.token.clone()).await;
    let html = uploader.get("/apps/com.example.fieldnotes").await.text().await.expect("html");
    assert!(html.contains("<h1>Release 2.4.1</h1>"), "{html}");
    assert!(html.contains("&lt;script&gt;window.__xss = 1&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<script>window.__xss") && !html.contains("<img src=x"), "{html}");
    server.stop().await;
}
