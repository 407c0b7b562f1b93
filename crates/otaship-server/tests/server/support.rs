//! What the server's tests share: an in-process server on loopback with a seeded token, the
//! real fixtures, a throwaway certificate authority, and readers of install links.

use std::path::{Path, PathBuf};

use otaship_server::{AppState, Config, ServeArgs, tokens};

use crate::backends;
use serde_json::Value;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/third-party/ipa/");

pub struct Server {
    pub base: String,
    pub token: String,
    /// The plain-HTTP helper, when it runs.
    pub http_base: Option<String>,
    /// The CA the client trusts when the server speaks HTTPS.
    pub trusted_ca: Option<reqwest::Certificate>,
    pub data_dir: tempfile::TempDir,
    /// The settings it was started with (database, storage, ...): to start it again, or
    /// another instance beside it.
    pub args: ServeArgs,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(ServeArgs::default()).await
    }

    pub async fn start_with(mut args: ServeArgs) -> Server {
        if backends::selected() == backends::Backend::PostgresS3 {
            backends::use_postgres_s3(&mut args).await;
        }
        Server::start_exactly(args).await
    }

    /// Starts a server with these settings, on whatever backend they name.
    pub async fn start_exactly(args: ServeArgs) -> Server {
        Server::start_on(tempfile::tempdir().expect("tempdir"), args).await
    }

    /// Starts a server with these settings (whatever the selected backend: SQLite and local disk
    /// unless they name others) whose data directory is a new folder in `parent`, such as a
    /// small filesystem a test mounted.
    pub async fn start_in(parent: &Path, args: ServeArgs) -> Server {
        Server::start_on(tempfile::tempdir_in(parent).expect("data directory"), args).await
    }

    async fn start_on(data_dir: tempfile::TempDir, mut args: ServeArgs) -> Server {
        args.data_dir = Some(data_dir.path().to_owned());
        if args.listen.is_none() {
            args.listen = Some("127.0.0.1:0".into());
        }
        // Plain HTTP unless a test asks for a TLS mode: most tests are about other things.
        if args.tls.is_none() && args.tls_cert.is_none() && args.acme_domains.is_empty() {
            args.tls = Some("off".into());
        }
        if args.http_listen.is_none() && args.tls.as_deref() != Some("off") {
            args.http_listen = Some("127.0.0.1:0".into());
        }
        let config = Config::load(&args).expect("config");
        let args = ServeArgs { data_dir: None, ..args };
        let state = AppState::open(config).await.expect("state");
        let token = tokens::generate();
        state.seed_token(&token).await.expect("token");
        let listeners = otaship_server::bind(&state).await.expect("bind");
        let scheme = if state.config.serves_https() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listeners.main.local_addr().expect("address"));
        let http_base = listeners
            .http_helper
            .as_ref()
            .map(|listener| format!("http://{}", listener.local_addr().expect("address")));
        let trusted_ca = state
            .tls
            .as_ref()
            .and_then(|tls| tls.local_ca.as_ref())
            .map(|ca| reqwest::Certificate::from_pem(ca.ca_pem().as_bytes()).expect("CA"));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(otaship_server::serve(state.clone(), listeners, async {
            let _ = stopped.await;
        }));
        Server { base, http_base, token, trusted_ca, data_dir, args, state, stop: Some(stop), task: Some(task) }
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("clean shutdown");
        }
    }

    pub fn client(&self) -> reqwest::Client {
        // No cookie store: every request is as cookie-less as the iOS installer's.
        let builder = reqwest::Client::builder();
        match &self.trusted_ca {
            Some(ca) => builder.tls_certs_only([ca.clone()]),
            None => builder,
        }
        .build()
        .expect("client")
    }

    /// A client that neither follows redirects nor keeps cookies.
    pub fn client_without_redirects(&self) -> reqwest::Client {
        let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        match &self.trusted_ca {
            Some(ca) => builder.tls_certs_only([ca.clone()]),
            None => builder,
        }
        .build()
        .expect("client")
    }

    /// A page's HTML, fetched with one cookie (`name=value`).
    pub async fn page_with_cookie(&self, url: &str, cookie: &str) -> String {
        let response = self.client().get(url).header("cookie", cookie).send().await.expect("page");
        response.text().await.expect("html")
    }

    pub async fn upload(&self, bytes: Vec<u8>) -> reqwest::Response {
        self.client()
            .post(format!("{}/api/v1/builds", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("request")
    }

    /// Uploads a build with release notes (multipart) and returns the API's JSON for it.
    pub async fn upload_with_notes(&self, ipa: Vec<u8>, notes: &str) -> Value {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(ipa).file_name("App.ipa"))
            .text("notes", notes.to_owned());
        let response = self
            .client()
            .post(format!("{}/api/v1/builds", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let build: Value = response.json().await.expect("JSON");
        assert!(build["install_url"].as_str().expect("install_url").starts_with(&self.base));
        build
    }

    /// An authenticated API GET, with extra headers, as JSON.
    pub async fn api_json(&self, path: &str, headers: &[(&str, &str)]) -> Value {
        let mut request = self.client().get(format!("{}{path}", self.base)).bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request").json().await.expect("JSON")
    }

    /// A new API token with this scope; returns its secret.
    pub async fn create_token(&self, name: &str, scope: tokens::Scope) -> String {
        let token = tokens::generate();
        self.state
            .db
            .insert_scoped_token(&tokens::random_hex(8), name, &tokens::hash(&token), scope)
            .await
            .expect("token");
        token
    }

    /// A token that was made with this scope and then revoked; returns its secret.
    pub async fn revoked_token(&self, name: &str, scope: tokens::Scope) -> String {
        let token = self.create_token(name, scope).await;
        let listed = self.state.db.list_tokens().await.expect("tokens");
        let id = listed.into_iter().find(|listed| listed.name == name).expect("the token is listed").id;
        self.state.db.revoke_token(&id).await.expect("revoke");
        token
    }

    /// A new account with this role and a generated password; returns the password.
    pub async fn create_account(&self, username: &str, role: otaship_server::accounts::Role) -> String {
        let password = otaship_server::accounts::generate_password();
        let hash = otaship_server::accounts::hash_password(password.clone()).await.expect("hash");
        let created =
            self.state.db.insert_account(&tokens::random_hex(8), username, &hash, role).await.expect("insert");
        assert!(created, "the username {username} is free");
        password
    }

    /// The settings to open this server's data again (after `stop`): same data directory,
    /// database and storage.
    pub fn restart_args(&self) -> ServeArgs {
        ServeArgs { data_dir: Some(self.data_dir.path().to_owned()), ..self.args.clone() }
    }

    /// Every stored blob (`builds/<id>/app.ipa`, ...), on whichever storage the server uses.
    pub async fn blob_keys(&self) -> Vec<String> {
        self.state.storage.list_blobs().await.expect("list blobs").into_iter().map(|blob| blob.key).collect()
    }

    /// What holds the bytes of resumable uploads: upload files on local disk, part objects on
    /// object storage.
    pub async fn upload_leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> =
            self.files_under("uploads").iter().map(|path| path.display().to_string()).collect();
        found
            .extend(self.state.storage.list_part_objects().await.expect("list parts").into_iter().map(|part| part.key));
        found
    }

    pub fn files_under(&self, dir: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.data_dir.path().join(dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.path().is_dir() { stack.push(entry.path()) } else { found.push(entry.path()) }
            }
        }
        found
    }
}

pub fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(FIXTURES).expect("fixtures").map(|entry| entry.expect("entry").path()).collect();
    files.sort();
    files
}

/// Pulls the Install button's href out of the page and undoes HTML escaping.
pub fn install_href(html: &str) -> Option<String> {
    let start = html.find("id=\"install-button\"")?;
    let rest = &html[start..];
    let href = rest.find("href=\"")? + 6;
    let end = rest[href..].find('"')?;
    Some(unescape_html(&rest[href..href + end]))
}

/// Undoes HTML escaping as askama writes it (numeric entities) and as other writers do (named).
pub fn unescape_html(text: &str) -> String {
    text.replace("&#38;", "&")
        .replace("&amp;", "&")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
}

pub fn manifest_url_of(link: &str) -> String {
    let query = link.strip_prefix("itms-services://?").expect("itms-services link");
    let mut parts = query.split('&');
    assert_eq!(parts.next(), Some("action=download-manifest"));
    let encoded = parts.next().and_then(|part| part.strip_prefix("url=")).expect("url parameter");
    assert_eq!(parts.next(), None, "nothing after url=: a raw & would truncate the manifest URL");
    assert!(!encoded.contains([':', '/', '?', '&', '#']), "the manifest URL is fully encoded: {encoded}");
    percent_decode(encoded)
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            out.push(u8::from_str_radix(&text[at + 1..at + 3], 16).expect("hex"));
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// A throwaway CA and a leaf it signed for 127.0.0.1 and localhost, as PEM files in `dir`.
pub fn write_test_certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "otaship test CA");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).expect("write");
    std::fs::write(&key, leaf_key.serialize_pem()).expect("write");
    (cert, key, ca.pem())
}

/// A browser-like client that keeps the session cookie by hand and never follows redirects,
/// so every answer can be inspected.
pub struct UiClient {
    /// The HTTP client (no cookie store, no redirects followed).
    pub client: reqwest::Client,
    base: String,
    /// The session cookie, `name=value`.
    pub cookie: Option<String>,
}

impl UiClient {
    pub fn new(server: &Server) -> UiClient {
        let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        let builder = match &server.trusted_ca {
            Some(ca) => builder.tls_certs_only([ca.clone()]),
            None => builder,
        };
        UiClient { client: builder.build().expect("client"), base: server.base.clone(), cookie: None }
    }

    pub fn headers(&self) -> reqwest::header::HeaderMap {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(cookie) = &self.cookie {
            headers.insert("cookie", reqwest::header::HeaderValue::from_str(cookie).expect("cookie"));
        }
        headers
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).headers(self.headers()).send().await.expect("GET")
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> reqwest::Response {
        let mut request = self.client.post(format!("{}{path}", self.base)).headers(self.headers()).form(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send().await.expect("POST")
    }

    /// Signs in with `token` and keeps the cookie; returns the sign-in answer.
    pub async fn sign_in(&mut self, token: &str) -> reqwest::Response {
        let response = self.post_form("/signin", &[("token", token)], Some(&self.base.clone())).await;
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set.to_str().expect("ascii").split(';').next().expect("pair").to_owned();
            self.cookie = Some(pair);
        }
        response
    }

    /// Signs in with a username and password and keeps the cookie; returns the sign-in answer.
    pub async fn sign_in_with_password(&mut self, username: &str, password: &str) -> reqwest::Response {
        let form = [("username", username), ("password", password)];
        let response = self.post_form("/signin", &form, Some(&self.base.clone())).await;
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set.to_str().expect("ascii").split(';').next().expect("pair").to_owned();
            self.cookie = Some(pair);
        }
        response
    }

    /// The CSRF token the signed-in pages carry.
    pub async fn csrf(&self) -> String {
        let html = self.get("/").await.text().await.expect("html");
        let start = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
        html[start..start + 64].to_owned()
    }

    pub async fn upload(&self, ipa: Vec<u8>, notes: &str, csrf: &str, json: bool) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .text("notes", notes.to_owned())
            .part("file", reqwest::multipart::Part::bytes(ipa).file_name("App.ipa"));
        let mut request =
            self.client.post(format!("{}/upload?csrf={csrf}", self.base)).headers(self.headers()).multipart(form);
        if json {
            request = request.header("accept", "application/json");
        }
        request.send().await.expect("upload")
    }
}

/// Uploads a build with the admin token, which must be created (`201`); its JSON.
pub async fn uploaded(server: &Server, ipa: Vec<u8>) -> Value {
    let response = server.upload(ipa).await;
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    response.json().await.expect("JSON")
}

/// Uploads `ipa` to `channel` with the admin token (`query` adds parameters, such as
/// `&meta=git_branch=main`); the build must be created (`201`). Its JSON.
pub async fn upload_to(server: &Server, ipa: Vec<u8>, channel: &str, query: &str) -> Value {
    let response = server
        .client()
        .post(format!("{}/api/v1/builds?channel={channel}{query}", server.base))
        .bearer_auth(&server.token)
        .header("content-type", "application/octet-stream")
        .body(ipa)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    response.json().await.expect("JSON")
}
