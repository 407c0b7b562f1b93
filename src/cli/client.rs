//! The API client of the remote commands (`push`, `apps`, `builds`): where the server is, the
//! token, extra trusted roots, and how the server's answers become [`Failure`]s.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::Failure;

/// How to reach the server; shared by every remote command.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// The server's URL, e.g. https://ota.example.com.
    #[arg(long, env = "OTASHIP_SERVER", value_name = "URL")]
    pub server: String,
    /// An API token (`otaship token create` on the server).
    #[arg(long, env = "OTASHIP_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: String,
    /// A root certificate (PEM) to trust besides the system's, e.g. the server's local CA
    /// (repeatable).
    #[arg(long = "ca", value_name = "FILE")]
    pub cas: Vec<PathBuf>,
}

/// A connection to one server's API.
#[derive(Debug, Clone)]
pub struct Remote {
    base: Url,
    token: String,
    http: reqwest::Client,
}

/// Why a call failed, sorted by what the caller may do about it.
#[derive(Debug)]
pub enum CallError {
    /// The request never got an answer (connection refused or cut, timeout): worth retrying.
    Transport(reqwest::Error),
    /// The file to send could not be read here.
    Local(anyhow::Error),
    /// The server answered with an error.
    Status {
        /// HTTP status.
        status: StatusCode,
        /// The API's stable code, when the body had one.
        code: String,
        /// The API's sentence (or the status text).
        message: String,
    },
}

impl CallError {
    /// Whether sending the same request again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            // A certificate the client does not trust stays untrusted; trying again only delays
            // the advice to pass --ca.
            CallError::Transport(error) => !transport_sentence(error).contains("certificate"),
            CallError::Local(_) => false,
            CallError::Status { status, code, .. } => {
                status.is_server_error()
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || code == "part-checksum-mismatch"
                    || code == "upload-interrupted"
            }
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(error) => write!(f, "{}", transport_sentence(error)),
            CallError::Local(error) => write!(f, "{error:#}"),
            CallError::Status { status, message, .. } => write!(f, "{message} (HTTP {})", status.as_u16()),
        }
    }
}

fn transport_sentence(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.contains("certificate") {
        format!(
            "the server's HTTPS certificate is not trusted ({text}); if it uses its own CA, pass that CA with \
             --ca (e.g. the .crt from the server's /trust page)"
        )
    } else if error.is_timeout() {
        format!("the server did not answer in time ({text})")
    } else if error.is_connect() {
        format!("cannot connect to the server ({text})")
    } else {
        text
    }
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Status { status: StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, message, .. } => {
                Failure::Denied(message)
            }
            // The bytes, not the request, were wrong (changed on the way, or the file changed
            // during the push): running the command again is the cure, as for a network error.
            CallError::Status { code, message, .. }
                if code == "checksum-mismatch" || code == "part-checksum-mismatch" =>
            {
                Failure::Failed(anyhow!("{message} Run the same command again."))
            }
            CallError::Status { status, code, message } if status.is_client_error() => {
                Failure::Refused { code: code.into(), message }
            }
            other => Failure::Failed(anyhow!("{other}")),
        }
    }
}

impl Remote {
    /// A client for `args.server`, trusting the system's roots and `--ca`.
    pub fn new(args: &RemoteArgs) -> Result<Self, Failure> {
        let text = args.server.trim().trim_end_matches('/');
        let base = Url::parse(text)
            .ok()
            .filter(|url| matches!(url.scheme(), "https" | "http") && url.host().is_some())
            .ok_or_else(|| Failure::Refused {
                code: "bad-server-url".into(),
                message: format!("--server {text:?} is not a URL such as https://ota.example.com"),
            })?;
        let token = args.token.trim().to_owned();
        if token.is_empty() {
            return Err(Failure::Denied(
                "no API token: pass --token or set OTASHIP_TOKEN (create one with `otaship token create`)".into(),
            ));
        }
        let mut roots = Vec::new();
        for path in &args.cas {
            let pem = std::fs::read(path).with_context(|| format!("cannot read --ca {}", path.display()))?;
            let found = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca {} is not a PEM certificate", path.display()))?;
            if found.is_empty() {
                return Err(Failure::Failed(anyhow!("--ca {} holds no certificate", path.display())));
            }
            roots.extend(found);
        }
        let http = reqwest::Client::builder()
            .tls_certs_merge(roots)
            .connect_timeout(Duration::from_secs(15))
            // Between bytes, not for the whole transfer: a large part on a slow link is fine.
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("otaship/", env!("CARGO_PKG_VERSION")))
            // Parallel parts on parallel HTTP/1.1 connections: each is decrypted and written by
            // its own task on the server, where one HTTP/2 connection funnels every part
            // through one.
            .http1_only()
            .build()
            .context("cannot set up HTTPS")?;
        Ok(Remote { base, token, http })
    }

    /// The server's URL without a trailing slash.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// A request to `path` (starting with `/`) with the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base())).bearer_auth(&self.token)
    }

    /// Sends a request and returns the response if its status is a success.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, CallError> {
        let response = request.send().await.map_err(CallError::Transport)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        let error = &body["error"];
        Err(CallError::Status {
            status,
            code: error["code"].as_str().unwrap_or("http-error").to_owned(),
            message: error["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("the server answered {status} (is --server the otaship server?)")),
        })
    }

    /// Sends a request and reads its JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, CallError> {
        self.send(request).await?.json().await.map_err(CallError::Transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: &str) -> CallError {
        CallError::Status {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            code: code.to_owned(),
            message: "m.".to_owned(),
        }
    }

    #[test]
    fn answers_become_the_documented_exit_codes() {
        assert!(matches!(Failure::from(status(401, "unauthorized")), Failure::Denied(_)));
        assert!(matches!(Failure::from(status(400, "bad-channel")), Failure::Refused { .. }));
        assert!(matches!(Failure::from(status(422, "checksum-mismatch")), Failure::Failed(_)));
        assert!(matches!(Failure::from(status(422, "part-checksum-mismatch")), Failure::Failed(_)));
        assert!(matches!(Failure::from(status(503, "internal-error")), Failure::Failed(_)));
        let local = CallError::Local(anyhow!("cannot read app.ipa"));
        assert!(!local.is_transient());
        assert!(matches!(Failure::from(local), Failure::Failed(_)));
    }
}
