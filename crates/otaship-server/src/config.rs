//! Server configuration: one validated [`Config`] built from four layers with one precedence,
//! defaults < TOML file < `OTASHIP_*` environment < command-line flags.
//!
//! Flags and environment variables are read by clap (a flag wins over its variable); the file
//! fills what neither gave. Nothing after start-up reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::db::DatabaseUrl;

/// `otaship serve` flags; each can also come from `OTASHIP_*` or the TOML file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "OTASHIP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the database, blobs and secrets live [default: ./otaship-data].
    #[arg(long, env = "OTASHIP_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:8443 with HTTPS, 127.0.0.1:8080 with --tls off].
    #[arg(long, env = "OTASHIP_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Plain-HTTP helper: the trust onboarding page, the CA profile, and redirects to HTTPS;
    /// `off` to disable [default: 0.0.0.0:8080 with the local CA, else off].
    #[arg(long, env = "OTASHIP_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Another name the local CA's server certificate must cover (repeat or separate with
    /// commas), e.g. ota.office.lan.
    #[arg(long = "host", env = "OTASHIP_HOST", value_name = "NAME", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Base of every absolute URL the server writes (links, manifests), e.g.
    /// https://ota.example.com. Without it, URLs come from the request's Host.
    #[arg(long, env = "OTASHIP_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Honour X-Forwarded-Proto/Host/Port from a reverse proxy.
    #[arg(long, env = "OTASHIP_TRUST_PROXY", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub trust_proxy: Option<bool>,
    /// `local-ca` (a private CA testers trust once), `cert` (--tls-cert and --tls-key), `acme`
    /// (--acme), or `off` (plain HTTP behind a TLS proxy) [default: cert when the files are
    /// given, acme when --acme is, else local-ca].
    #[arg(long, env = "OTASHIP_TLS", value_name = "MODE")]
    pub tls: Option<String>,
    /// PEM certificate chain for HTTPS, leaf first (with --tls-key).
    #[arg(long, env = "OTASHIP_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (unencrypted).
    #[arg(long, env = "OTASHIP_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Domains to get a certificate for from an ACME CA (Let's Encrypt), comma-separated. The
    /// server must be reachable on port 443 under these names (TLS-ALPN-01).
    #[arg(long = "acme", env = "OTASHIP_ACME", value_name = "DOMAIN", value_delimiter = ',')]
    pub acme_domains: Vec<String>,
    /// Contact address for the ACME account.
    #[arg(long, env = "OTASHIP_ACME_EMAIL", value_name = "ADDR")]
    pub acme_email: Option<String>,
    /// ACME directory [default: Let's Encrypt production]; e.g. its staging directory.
    #[arg(long, env = "OTASHIP_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<String>,
    /// PEM root to trust for the ACME directory's own HTTPS (a private or test CA).
    #[arg(long, env = "OTASHIP_ACME_CA_CERT", value_name = "FILE")]
    pub acme_ca_cert: Option<PathBuf>,
    /// Allow an http:// --public-url. iOS will not install from it; every page says so.
    #[arg(long, env = "OTASHIP_INSECURE_HTTP", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub insecure_http: Option<bool>,
    /// Database URL [default: sqlite://<data-dir>/otaship.db].
    #[arg(long, env = "OTASHIP_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Where the builds' files live: `file:///path` (local disk) or `s3://BUCKET/PREFIX`
    /// (S3-compatible object storage; credentials from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN) [default: file://<data-dir>/blobs].
    #[arg(long, env = "OTASHIP_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// The S3 endpoint for non-AWS stores (MinIO, R2, Ceph), e.g. https://minio.lan:9000
    /// [default: AWS, or AWS_ENDPOINT_URL].
    #[arg(long, env = "OTASHIP_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "OTASHIP_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Address buckets as BUCKET.endpoint instead of endpoint/BUCKET (path style, the default,
    /// is what MinIO and Ceph expect).
    #[arg(long, env = "OTASHIP_S3_VIRTUAL_HOSTED", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub s3_virtual_hosted: Option<bool>,
    /// S3 access key id [default: none, then AWS's usual sources: AWS_WEB_IDENTITY_TOKEN_FILE,
    /// the instance's role, ...].
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true, value_name = "ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (prefer the environment variable to the flag).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true, value_name = "KEY")]
    pub s3_secret_access_key: Option<String>,
    /// Answer `.ipa` downloads with a redirect to a short-lived presigned URL of the object
    /// store instead of streaming them through otaship (S3 only).
    #[arg(long, env = "OTASHIP_STORAGE_REDIRECT", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub storage_redirect: Option<bool>,
    /// Largest upload accepted, e.g. 4GiB, 500MB, 1048576 [default: 4GiB].
    #[arg(long, env = "OTASHIP_MAX_UPLOAD_SIZE", value_name = "SIZE")]
    pub max_upload_size: Option<String>,
    /// How long a resumable upload may sit untouched before it is deleted, e.g. 24h, 90m, 3600s
    /// [default: 24h].
    #[arg(long, env = "OTASHIP_UPLOAD_EXPIRY", value_name = "DURATION")]
    pub upload_expiry: Option<String>,
    /// A PEM file of CAs that issue device identity certificates, trusted beside Apple's device
    /// CA when enrolled devices are marked verified (a test lab's own CA, say).
    #[arg(long, env = "OTASHIP_DEVICE_CA_CERT", value_name = "FILE")]
    pub device_ca_cert: Option<PathBuf>,
    /// How often the retention rules are applied (first a minute after start-up, or sooner
    /// with a shorter interval), e.g. 1h, 30m; `off` to apply them only on demand [default: 1h].
    #[arg(long, env = "OTASHIP_RETENTION_INTERVAL", value_name = "DURATION")]
    pub retention_interval: Option<String>,
    /// How long a failed webhook delivery waits before its first retry; each further retry
    /// waits four times longer (at most an hour), e.g. 10s, 500ms [default: 10s].
    #[arg(long, env = "OTASHIP_WEBHOOK_RETRY_BASE", value_name = "DURATION")]
    pub webhook_retry_base: Option<String>,
}

/// The settings as the TOML file may give them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    http_listen: Option<String>,
    host: Option<Vec<String>>,
    public_url: Option<String>,
    trust_proxy: Option<bool>,
    tls: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    acme: Option<Vec<String>>,
    acme_email: Option<String>,
    acme_directory: Option<String>,
    acme_ca_cert: Option<PathBuf>,
    insecure_http: Option<bool>,
    database: Option<String>,
    storage: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_virtual_hosted: Option<bool>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    storage_redirect: Option<bool>,
    max_upload_size: Option<String>,
    upload_expiry: Option<String>,
    device_ca_cert: Option<PathBuf>,
    retention_interval: Option<String>,
    webhook_retry_base: Option<String>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory (created if missing).
    pub data_dir: PathBuf,
    /// Listen address (HTTPS unless TLS is off).
    pub listen: SocketAddr,
    /// The plain-HTTP helper's address, if it runs.
    pub http_listen: Option<SocketAddr>,
    /// Base URL for absolute links, without a trailing slash.
    pub public_url: Option<String>,
    /// Whether `X-Forwarded-*` headers are trusted.
    pub trust_proxy: bool,
    /// How the server speaks TLS.
    pub tls: TlsSetting,
    /// The database.
    pub database: DatabaseUrl,
    /// Where blobs live.
    pub storage: StorageSetting,
    /// Whether downloads redirect to presigned object-store URLs.
    pub storage_redirect: bool,
    /// Largest accepted upload, in bytes.
    pub max_upload_size: u64,
    /// How long an untouched resumable upload is kept.
    pub upload_expiry: std::time::Duration,
    /// Extra CAs trusted to issue device certificates (PEM), read at start-up.
    pub device_ca_pem: Option<Vec<u8>>,
    /// How often retention runs in the background; `None`: only on demand.
    pub retention_interval: Option<std::time::Duration>,
    /// The wait before a failed webhook delivery's first retry.
    pub webhook_retry_base: std::time::Duration,
}

impl Config {
    /// Merges the layers and validates them; errors say how to fix the setting.
    pub fn load(args: &ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
                toml::from_str::<FileSettings>(&text)
                    .with_context(|| format!("the configuration file {} is not valid", path.display()))?
            }
            None => FileSettings::default(),
        };
        let tls = TlsSetting::choose(args, &file)?;
        let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("otaship-data"));
        let default_listen = if matches!(tls, TlsSetting::Off) { "127.0.0.1:8080" } else { "0.0.0.0:8443" };
        let listen_text = args.listen.clone().or(file.listen).unwrap_or_else(|| default_listen.to_owned());
        let listen = parse_address("--listen", &listen_text)?;
        let http_listen = match args.http_listen.clone().or(file.http_listen) {
            Some(text) if text.trim() == "off" => None,
            Some(text) if matches!(tls, TlsSetting::Off) => {
                bail!("--http-listen {text:?} needs HTTPS: with --tls off the server already speaks plain HTTP")
            }
            Some(text) => Some(parse_address("--http-listen", &text)?),
            None if matches!(tls, TlsSetting::LocalCa { .. }) => Some(parse_address("--http-listen", "0.0.0.0:8080")?),
            None => None,
        };
        if http_listen == Some(listen) && listen.port() != 0 {
            bail!("--listen and --http-listen are both {listen}; give the HTTP helper another port");
        }
        let public_url = match args.public_url.clone().or(file.public_url) {
            Some(url) => Some(validate_public_url(&url)?),
            None => None,
        };
        // The local CA's certificate must name the host devices are sent to.
        let tls = match (tls, &public_url) {
            (TlsSetting::LocalCa { mut hosts }, Some(url)) => {
                if let Some(host) = url_host(url)
                    && !hosts.iter().any(|known| known.eq_ignore_ascii_case(&host))
                {
                    hosts.push(host);
                }
                TlsSetting::LocalCa { hosts }
            }
            (tls, _) => tls,
        };
        let insecure_http = args.insecure_http.or(file.insecure_http).unwrap_or(false);
        if let Some(url) = &public_url
            && url.starts_with("http://")
            && !insecure_http
        {
            bail!(
                "--public-url {url} is plain HTTP, and iOS installs apps only over HTTPS: give the https:// URL \
                 of your TLS proxy, or add --insecure-http to serve it anyway (nothing will install)"
            );
        }
        let database = args.database.clone().or(file.database);
        let database = match database {
            None => DatabaseUrl::Sqlite(data_dir.join("otaship.db")),
            Some(url) => DatabaseUrl::parse(&url).with_context(|| {
                format!(
                    "--database {:?} is not supported: use sqlite:///path/to/otaship.db or \
                     postgres://user:password@host:5432/otaship",
                    redact_password(&url)
                )
            })?,
        };
        let s3 = S3Options {
            endpoint: args.s3_endpoint.clone().or(file.s3_endpoint),
            region: args.s3_region.clone().or(file.s3_region),
            virtual_hosted: args.s3_virtual_hosted.or(file.s3_virtual_hosted).unwrap_or(false),
            access_key_id: args.s3_access_key_id.clone().or(file.s3_access_key_id),
            secret_access_key: args.s3_secret_access_key.clone().or(file.s3_secret_access_key).map(Secret),
        };
        let storage = match args.storage.clone().or(file.storage) {
            None => StorageSetting::Local(data_dir.join("blobs")),
            Some(url) => StorageSetting::parse(&url, &s3)?,
        };
        let storage_redirect = args.storage_redirect.or(file.storage_redirect).unwrap_or(false);
        if storage_redirect && !matches!(storage, StorageSetting::S3 { .. }) {
            bail!("--storage-redirect needs object storage (--storage s3://BUCKET): local files are served by otaship");
        }
        let size_text = args.max_upload_size.clone().or(file.max_upload_size).unwrap_or_else(|| "4GiB".to_owned());
        let max_upload_size = parse_size(&size_text)
            .with_context(|| format!("--max-upload-size {size_text:?} is not a size; write it like 4GiB or 500MB"))?;
        let expiry_text = args.upload_expiry.clone().or(file.upload_expiry).unwrap_or_else(|| "24h".to_owned());
        // Capped so that "now + expiry" can never overflow a timestamp.
        let upload_expiry = parse_duration(&expiry_text)
            .filter(|duration| !duration.is_zero() && duration.as_secs() <= 366 * 86_400)
            .with_context(|| {
                format!("--upload-expiry {expiry_text:?} is not a duration up to 366d; write it like 24h, 90m or 3600s")
            })?;
        let device_ca_pem = match args.device_ca_cert.clone().or(file.device_ca_cert) {
            Some(path) => {
                Some(std::fs::read(&path).with_context(|| format!("cannot read --device-ca-cert {}", path.display()))?)
            }
            None => None,
        };
        let retention_text =
            args.retention_interval.clone().or(file.retention_interval).unwrap_or_else(|| "1h".to_owned());
        let retention_interval = match retention_text.trim() {
            "off" => None,
            text => Some(
                parse_duration(text)
                    .filter(|duration| !duration.is_zero() && duration.as_secs() <= 366 * 86_400)
                    .with_context(|| {
                        format!(
                            "--retention-interval {retention_text:?} is not a duration up to 366d; write it like 1h \
                             or 30m, or `off`"
                        )
                    })?,
            ),
        };
        let retry_text =
            args.webhook_retry_base.clone().or(file.webhook_retry_base).unwrap_or_else(|| "10s".to_owned());
        let webhook_retry_base = parse_duration(&retry_text)
            .filter(|duration| duration.as_millis() >= 1 && duration.as_secs() <= 3600)
            .with_context(|| {
                format!(
                    "--webhook-retry-base {retry_text:?} is not a duration from 1ms to 1h; write it like 10s or 500ms"
                )
            })?;
        Ok(Config {
            webhook_retry_base,
            retention_interval,
            device_ca_pem,
            upload_expiry,
            data_dir,
            listen,
            http_listen,
            public_url,
            trust_proxy: args.trust_proxy.or(file.trust_proxy).unwrap_or(false),
            tls,
            database,
            storage,
            storage_redirect,
            max_upload_size,
        })
    }

    /// Whether the server itself speaks HTTPS (so cookies are `Secure` and URLs `https`).
    pub fn serves_https(&self) -> bool {
        !matches!(self.tls, TlsSetting::Off)
    }

    /// Where uploads are written before they are checked and moved into place.
    pub fn temp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }

    /// Where resumable uploads keep their bytes until they complete.
    pub fn uploads_dir(&self) -> PathBuf {
        self.data_dir.join("uploads")
    }
}

/// Where blobs live, from `--storage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSetting {
    /// A directory on local disk (one instance, or a shared filesystem).
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3 {
        /// The bucket.
        bucket: String,
        /// Key prefix inside it (no leading or trailing `/`; may be empty).
        prefix: String,
        /// How to reach it.
        options: S3Options,
    },
}

/// How to reach an S3-compatible store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint URL for non-AWS stores.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// BUCKET.endpoint addressing instead of path style.
    pub virtual_hosted: bool,
    /// Access key id, when given rather than found by AWS's usual chain.
    pub access_key_id: Option<String>,
    /// Its secret.
    pub secret_access_key: Option<Secret>,
}

/// A secret setting: never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
}

impl StorageSetting {
    /// Parses `file:///path`, `file://relative/path` or `s3://BUCKET[/PREFIX]`.
    pub fn parse(url: &str, s3: &S3Options) -> Result<StorageSetting> {
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                bail!("--storage {url:?} names no directory: write file:///var/lib/otaship/blobs");
            }
            return Ok(StorageSetting::Local(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.');
            if !valid_bucket {
                bail!(
                    "--storage {url:?}: {bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, dots or \
                     dashes); write s3://my-bucket/otaship"
                );
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|segment| matches!(segment, "." | "..")) {
                bail!("--storage {url:?}: the prefix may not contain `.` or `..` segments");
            }
            if let Some(endpoint) = &s3.endpoint
                && url::Url::parse(endpoint).map_or(true, |parsed| !matches!(parsed.scheme(), "http" | "https"))
            {
                bail!("--s3-endpoint {endpoint:?} is not an http:// or https:// URL");
            }
            return Ok(StorageSetting::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                options: s3.clone(),
            });
        }
        bail!("--storage {url:?} is not supported: use file:///path/to/blobs or s3://BUCKET/PREFIX")
    }

    /// The setting as a URL, for messages.
    pub fn url(&self) -> String {
        match self {
            StorageSetting::Local(path) => format!("file://{}", path.display()),
            StorageSetting::S3 { bucket, prefix, .. } if prefix.is_empty() => format!("s3://{bucket}"),
            StorageSetting::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

/// A URL with its password (if any) replaced, for error messages.
pub(crate) fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(unreadable URL)".to_owned(),
    }
}

/// How the server speaks TLS.
#[derive(Debug, Clone)]
pub enum TlsSetting {
    /// Plain HTTP, for a TLS-terminating proxy in front.
    Off,
    /// A private CA in the data directory signs the server certificate; testers trust the CA
    /// once through the onboarding page.
    LocalCa {
        /// Names the certificate covers besides the machine's own.
        hosts: Vec<String>,
    },
    /// The operator's certificate and key (PEM files, reloaded when they change).
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// Certificates from an ACME CA over TLS-ALPN-01, cached in the data directory.
    Acme {
        /// Domains of the certificate.
        domains: Vec<String>,
        /// Account contact.
        email: Option<String>,
        /// Directory URL.
        directory: String,
        /// Extra root to trust for the directory's HTTPS.
        directory_ca: Option<PathBuf>,
    },
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl TlsSetting {
    fn choose(args: &ServeArgs, file: &FileSettings) -> Result<Self> {
        let mode = args.tls.clone().or_else(|| file.tls.clone()).map(|mode| mode.trim().to_ascii_lowercase());
        let cert = args.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let key = args.tls_key.clone().or_else(|| file.tls_key.clone());
        let domains = if args.acme_domains.is_empty() {
            file.acme.clone().unwrap_or_default()
        } else {
            args.acme_domains.clone()
        };
        let domains: Vec<String> = domains
            .iter()
            .map(|domain| domain.trim().to_ascii_lowercase())
            .filter(|domain| !domain.is_empty())
            .collect();
        let hosts = if args.hosts.is_empty() { file.host.clone().unwrap_or_default() } else { args.hosts.clone() };
        let mode = match mode.as_deref() {
            Some(mode) => mode.to_owned(),
            None if cert.is_some() || key.is_some() => "cert".to_owned(),
            None if !domains.is_empty() => "acme".to_owned(),
            None => "local-ca".to_owned(),
        };
        if mode != "cert" && (cert.is_some() || key.is_some()) {
            bail!("--tls {mode} contradicts --tls-cert/--tls-key: drop one of them");
        }
        if mode != "acme" && !domains.is_empty() {
            bail!("--tls {mode} contradicts --acme: drop one of them");
        }
        match mode.as_str() {
            "off" => Ok(TlsSetting::Off),
            "local-ca" | "auto" => {
                for host in &hosts {
                    if host.parse::<std::net::IpAddr>().is_err() && !crate::tls::local_ca::is_dns_name(host) {
                        bail!("--host {host:?} is not a host name or IP address");
                    }
                }
                Ok(TlsSetting::LocalCa { hosts })
            }
            "cert" => match (cert, key) {
                (Some(cert), Some(key)) => {
                    crate::tls::load_certified_key(&cert, &key)?;
                    Ok(TlsSetting::Files { cert, key })
                }
                (Some(_), None) => bail!("--tls-cert needs --tls-key, the certificate's private key"),
                (None, Some(_)) => bail!("--tls-key needs --tls-cert, the certificate chain"),
                (None, None) => bail!("--tls cert needs --tls-cert FILE and --tls-key FILE"),
            },
            "acme" => {
                if domains.is_empty() {
                    bail!("--tls acme needs --acme DOMAIN: the name(s) the certificate is for");
                }
                if let Some(bad) = domains.iter().find(|domain| !crate::tls::local_ca::is_dns_name(domain)) {
                    bail!("--acme {bad:?} is not a domain name");
                }
                let directory = args
                    .acme_directory
                    .clone()
                    .or_else(|| file.acme_directory.clone())
                    .unwrap_or_else(|| LETS_ENCRYPT.to_owned());
                if !directory.starts_with("https://") {
                    bail!("--acme-directory {directory:?} must be an https:// URL");
                }
                Ok(TlsSetting::Acme {
                    domains,
                    email: args.acme_email.clone().or_else(|| file.acme_email.clone()),
                    directory,
                    directory_ca: args.acme_ca_cert.clone().or_else(|| file.acme_ca_cert.clone()),
                })
            }
            other => bail!(
                "--tls {other:?} is not a TLS mode: use local-ca (the default), cert (with --tls-cert and \
                 --tls-key), acme (with --acme) or off (plain HTTP behind a TLS proxy)"
            ),
        }
    }
}

/// The host of a validated base URL, without port or IPv6 brackets, in lower case.
fn url_host(url: &str) -> Option<String> {
    let host = url_host_part(url)?;
    Some(host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()).filter(|host| !host.is_empty())
}

/// The host of a URL as written in it (an IPv6 address keeps its brackets), without the port.
pub fn url_host_part(url: &str) -> Option<&str> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    Some(match authority.rfind(':') {
        // A colon inside brackets belongs to an IPv6 address, not to a port.
        Some(colon) if !authority[colon..].contains(']') => &authority[..colon],
        _ => authority,
    })
}

fn parse_address(flag: &str, text: &str) -> Result<SocketAddr> {
    text.trim()
        .parse()
        .with_context(|| format!("{flag} {text:?} is not an address and port; write it like 0.0.0.0:8443 or [::]:8443"))
}

fn validate_public_url(url: &str) -> Result<String> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .with_context(|| format!("--public-url {url:?} must start with https:// (or http:// behind a TLS proxy)"))?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        bail!("--public-url {url:?} must be a base URL such as https://ota.example.com, without query or fragment");
    }
    Ok(trimmed.to_owned())
}

/// Parses `4GiB`, `500MB`, `1048576`, `10 KiB`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// Parses `24h`, `90m`, `3600s`, `2d`, `500ms`, `3600` (seconds).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" => 1,
        "" | "s" | "sec" | "secs" | "seconds" => 1000,
        "m" | "min" | "mins" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(millis).map(std::time::Duration::from_millis)
}

/// Creates the data directory and its parts, failing with a sentence that says how to fix it.
///
/// What otaship creates is its own: directories are made `0700` (they hold unreleased apps) and
/// a new SQLite database file `0600` before SQLite opens it (it holds token and password hashes
/// and the shared secrets; SQLite gives its `-wal` and `-shm` files the database file's mode).
/// Directories and files that already exist keep the modes their owner gave them.
pub fn prepare_data_dir(config: &Config) -> Result<()> {
    let mut dirs = vec![config.data_dir.clone(), config.temp_dir()];
    if let StorageSetting::Local(blobs) = &config.storage {
        // On object storage, blobs and the parts of uploads are objects.
        dirs.extend([blobs.clone(), config.uploads_dir()]);
    }
    for dir in &dirs {
        create_private_dir(dir).with_context(|| {
            format!("cannot create {}; choose a writable --data-dir or fix its permissions", dir.display())
        })?;
    }
    if let DatabaseUrl::Sqlite(path) = &config.database {
        create_private_file(path).with_context(|| {
            format!(
                "cannot create the database {}; choose a writable --data-dir or fix its permissions",
                path.display()
            )
        })?;
    }
    let probe = config.data_dir.join(".write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!(
            "the data directory {} is not writable; choose another --data-dir or fix its permissions",
            config.data_dir.display()
        )
    })?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// Creates `dir` and any missing parent, readable by this user only.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates an empty file at `path` readable by this user only, unless a file is there already.
/// The mode is set as the file is created, so that there is no moment it is readable by others.
fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4GiB"), Some(4 << 30));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("10 KiB"), Some(10 << 10));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999999TiB"), None);
    }

    #[test]
    fn precedence_is_defaults_then_file_then_environment_and_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("otaship.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nmax_upload_size = \"1GiB\"\npublic_url = \"https://file.example\"\n",
        )
        .expect("write");
        let from_file = Config::load(&ServeArgs { config: Some(file.clone()), ..ServeArgs::default() }).expect("valid");
        assert_eq!(from_file.listen.port(), 9000);
        assert_eq!(from_file.max_upload_size, 1 << 30);
        assert_eq!(from_file.public_url.as_deref(), Some("https://file.example"));
        // A flag (or its environment variable, which clap folds into the same field) wins.
        let flagged = Config::load(&ServeArgs {
            config: Some(file),
            listen: Some("127.0.0.1:9100".into()),
            ..ServeArgs::default()
        })
        .expect("valid");
        assert_eq!(flagged.listen.port(), 9100);
        assert_eq!(flagged.max_upload_size, 1 << 30);
        let defaults = Config::load(&ServeArgs::default()).expect("valid");
        assert_eq!(defaults.listen.to_string(), "0.0.0.0:8443");
        let plain = Config::load(&ServeArgs { tls: Some("off".into()), ..ServeArgs::default() }).expect("valid");
        assert_eq!(plain.listen.to_string(), "127.0.0.1:8080", "behind a proxy, loopback by default");
        assert_eq!(defaults.max_upload_size, 4 << 30);
        assert_eq!(defaults.upload_expiry, std::time::Duration::from_secs(24 * 3600));
        assert_eq!(defaults.webhook_retry_base, std::time::Duration::from_secs(10));
        let quick = Config::load(&ServeArgs { webhook_retry_base: Some("100ms".into()), ..ServeArgs::default() })
            .expect("valid");
        assert_eq!(quick.webhook_retry_base, std::time::Duration::from_millis(100));
        assert_eq!(defaults.database, DatabaseUrl::Sqlite(PathBuf::from("otaship-data/otaship.db")));
        assert_eq!(defaults.storage, StorageSetting::Local(PathBuf::from("otaship-data/blobs")));
    }

    #[test]
    fn bad_settings_say_how_to_fix_them() {
        let error =
            Config::load(&ServeArgs { listen: Some("localhost".into()), ..ServeArgs::default() }).expect_err("refused");
        assert!(error.to_string().contains("write it like 0.0.0.0:8443"), "{error}");
        let error = Config::load(&ServeArgs { public_url: Some("ftp://x".into()), ..ServeArgs::default() })
            .expect_err("refused");
        assert!(error.to_string().contains("must start with https://"), "{error}");
        let error = Config::load(&ServeArgs { max_upload_size: Some("huge".into()), ..ServeArgs::default() })
            .expect_err("refused");
        assert!(error.to_string().contains("4GiB"), "{error}");
        let error = Config::load(&ServeArgs { upload_expiry: Some("4000000d".into()), ..ServeArgs::default() })
            .expect_err("refused");
        assert!(error.to_string().contains("up to 366d"), "{error}");
        for bad in ["0s", "2h", "soon"] {
            let error = Config::load(&ServeArgs { webhook_retry_base: Some(bad.into()), ..ServeArgs::default() })
                .expect_err("refused");
            assert!(error.to_string().contains("like 10s or 500ms"), "{bad}: {error}");
        }
        let error =
            Config::load(&ServeArgs { database: Some("mysql://u:hunter2@db/x".into()), ..ServeArgs::default() })
                .expect_err("refused");
        assert!(error.to_string().contains("postgres://") && !error.to_string().contains("hunter2"), "{error}");
        for (storage, expected) in [
            ("s3://B", "not a bucket name"),
            ("s3://ok-bucket/../x", "`..`"),
            ("ftp://x", "file:///path/to/blobs or s3://"),
            ("file://", "names no directory"),
        ] {
            let error = Config::load(&ServeArgs { storage: Some(storage.into()), ..ServeArgs::default() })
                .expect_err("refused");
            assert!(error.to_string().contains(expected), "{storage}: {error}");
        }
        let error =
            Config::load(&ServeArgs { storage_redirect: Some(true), ..ServeArgs::default() }).expect_err("refused");
        assert!(error.to_string().contains("needs object storage"), "{error}");
    }

    #[test]
    fn s3_credentials_come_from_the_aws_variables() {
        use clap::Args;
        let command = ServeArgs::augment_args(clap::Command::new("serve"));
        let env_of = |id: &str| {
            command
                .get_arguments()
                .find(|argument| argument.get_id() == id)
                .and_then(|argument| argument.get_env())
                .map(|name| name.to_string_lossy().into_owned())
        };
        assert_eq!(env_of("s3_access_key_id").as_deref(), Some("AWS_ACCESS_KEY_ID"));
        assert_eq!(env_of("s3_secret_access_key").as_deref(), Some("AWS_SECRET_ACCESS_KEY"));
        assert_eq!(env_of("storage").as_deref(), Some("OTASHIP_STORAGE"));
    }

    #[test]
    fn storage_urls_parse() {
        let s3 = S3Options { endpoint: Some("http://127.0.0.1:9000".into()), ..S3Options::default() };
        let parsed = StorageSetting::parse("s3://my-bucket/ota/builds/", &s3).expect("s3");
        assert_eq!(
            parsed,
            StorageSetting::S3 { bucket: "my-bucket".into(), prefix: "ota/builds".into(), options: s3.clone() }
        );
        assert_eq!(parsed.url(), "s3://my-bucket/ota/builds");
        assert_eq!(StorageSetting::parse("s3://my-bucket", &s3).expect("s3").url(), "s3://my-bucket");
        assert_eq!(
            StorageSetting::parse("file:///var/lib/otaship/blobs", &s3).expect("file"),
            StorageSetting::Local(PathBuf::from("/var/lib/otaship/blobs"))
        );
        let bad_endpoint = S3Options { endpoint: Some("minio:9000".into()), ..S3Options::default() };
        assert!(StorageSetting::parse("s3://my-bucket", &bad_endpoint).is_err());
        let secret = Secret("hunter2".into());
        assert_eq!(format!("{secret:?}"), "***");
    }
}
