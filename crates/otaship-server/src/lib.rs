//! The otaship server: upload a build, get an install page that installs.
//!
//! It owns start-up (configuration, data directory, database, reconciliation of what a crash
//! left behind), the HTTP routes (`http`), the upload pipeline (`ingest`, `uploads`), blob
//! storage on local disk or S3 (`storage`, and moving it: `relocate`), API tokens (`tokens`),
//! share links (`sharing`), install analytics (`analytics`), named accounts (`accounts`), limits
//! on failed attempts (`ratelimit`), removing old builds by rule (`retention`), release notes in
//! Markdown (`markdown`) and webhooks (`webhooks`).
//! Every instance keeps its state in the database and the storage, so several can serve the same
//! builds. It knows nothing of zip or plist formats: that is
//! `otaship-ipa`'s job.

pub mod accounts;
pub mod analytics;
pub mod config;
pub mod db;
pub mod devices;
pub mod error;
pub mod http;
pub mod ingest;
pub mod markdown;
pub mod ratelimit;
pub mod relocate;
pub mod retention;
pub mod self_check;
pub mod sharing;
pub mod storage;
pub mod tls;
pub mod tokens;
pub mod uploads;
pub mod webhooks;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ServeArgs, TlsSetting};
use db::Db;
use storage::Storage;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Metadata.
    pub db: Db,
    /// Blobs.
    pub storage: Storage,
    /// HTTPS, when the server speaks TLS itself.
    pub tls: Option<Arc<tls::Tls>>,
    /// The addresses actually bound (the configured ones may say port 0).
    pub bound: Arc<std::sync::OnceLock<BoundAddresses>>,
    /// The latest self-check.
    pub self_check: Arc<std::sync::RwLock<Option<self_check::SelfCheck>>>,
    /// Checksums of resumable uploads' received prefixes, computed while parts arrive.
    pub in_flight: Arc<uploads::InFlight>,
    /// Device enrollment: cookie key, trusted device CAs, profile-signing identity.
    pub devices: Arc<devices::Devices>,
    /// Share links' capability key.
    pub sharing: Arc<sharing::Sharing>,
    /// The webhook delivery worker's wake-up call and HTTP client.
    pub webhooks: Arc<webhooks::Webhooks>,
    /// Install events on their way to the database.
    pub analytics: Arc<analytics::Recorder>,
}

/// Where the server really listens.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddresses {
    /// `--listen`.
    pub main: SocketAddr,
    /// `--http-listen`.
    pub http_helper: Option<SocketAddr>,
}

impl AppState {
    /// The base URL devices use (`--public-url`, else this machine's reachable address), once
    /// the server listens.
    pub fn device_base_url(&self) -> Option<String> {
        let bound = self.bound.get()?;
        Some(StartupUrls::new(self, bound.main, bound.http_helper).web.trim_end_matches('/').to_owned())
    }

    /// The HTTPS (or, with `--tls off`, HTTP) port.
    pub fn main_port(&self) -> u16 {
        self.bound.get().map_or(self.config.listen.port(), |bound| bound.main.port())
    }

    /// The plain-HTTP helper's port, when it runs.
    pub fn helper_port(&self) -> Option<u16> {
        match self.bound.get() {
            Some(bound) => bound.http_helper.map(|address| address.port()),
            None => self.config.http_listen.map(|address| address.port()),
        }
    }

    /// Prepares the data directory, opens the database and reconciles storage.
    pub async fn open(config: Config) -> Result<Self> {
        config::prepare_data_dir(&config)?;
        let db = Db::open(&config.database)
            .await
            .with_context(|| format!("cannot open the database {}", config.database.redacted()))?;
        let storage = Storage::open(&config.storage)?;
        storage.check().await.with_context(|| format!("cannot use the storage {}", config.storage.url()))?;
        let local_ca = match &config.tls {
            TlsSetting::LocalCa { .. } => Some(tls::local_ca::shared_ca(&db, &config.data_dir).await?),
            _ => None,
        };
        let tls = tls::Tls::start(&config.tls, &config.data_dir, local_ca)?.map(Arc::new);
        let devices = Arc::new(devices::Devices::open(&db, config.device_ca_pem.as_deref()).await?);
        let sharing = Arc::new(sharing::Sharing::open(&db).await?);
        let state = AppState {
            devices,
            sharing,
            webhooks: Arc::new(webhooks::Webhooks::new().context("cannot set up the webhook client")?),
            analytics: Arc::new(analytics::Recorder::start(db.clone())),
            storage,
            config: Arc::new(config),
            db,
            tls,
            bound: Arc::default(),
            self_check: Arc::default(),
            in_flight: Arc::default(),
        };
        ingest::clear_temp(&state).await.context("cannot clean up the data directory")?;
        ingest::reconcile(&state).await.context("cannot clean up the storage")?;
        uploads::sweep_expired(&state).await.context("cannot delete abandoned uploads")?;
        uploads::remove_leftovers(&state).await.context("cannot clean up abandoned uploads")?;
        Ok(state)
    }

    /// Seeds `OTASHIP_ADMIN_TOKEN` as a token, so automation can start with a known secret.
    pub async fn seed_token(&self, token: &str) -> Result<()> {
        self.db.insert_token_once(&tokens::random_hex(8), "OTASHIP_ADMIN_TOKEN", &tokens::hash(token)).await?;
        Ok(())
    }
}

/// The URLs to announce at start-up.
#[derive(Debug, Clone)]
pub struct StartupUrls {
    /// The web UI (and base of install pages).
    pub web: String,
    /// The trust onboarding page on the HTTP helper, with the local CA.
    pub onboarding: Option<String>,
}

impl StartupUrls {
    /// URLs a phone on the network can open: `--public-url`, else the machine's first reachable
    /// address when listening on a wildcard.
    pub fn new(state: &AppState, main: SocketAddr, helper: Option<SocketAddr>) -> StartupUrls {
        let hosts = match &state.config.tls {
            TlsSetting::LocalCa { hosts } => hosts.clone(),
            _ => Vec::new(),
        };
        let host_of = |address: SocketAddr| -> String {
            let ip = if address.ip().is_unspecified() {
                tls::local_ca::ServerNames::of_this_machine(&hosts).reachable_ips().first().copied()
            } else {
                Some(address.ip())
            };
            match ip {
                Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
                Some(ip) => ip.to_string(),
                None => "localhost".to_owned(),
            }
        };
        let public_host = state.config.public_url.as_deref().and_then(config::url_host_part).map(str::to_owned);
        let scheme = if state.config.serves_https() { "https" } else { "http" };
        let web = match &state.config.public_url {
            Some(url) => format!("{url}/"),
            None => format!("{scheme}://{}:{}/", host_of(main), main.port()),
        };
        let onboarding = match (&state.tls, helper) {
            (Some(tls), Some(helper)) if tls.local_ca.is_some() => {
                let host = public_host.unwrap_or_else(|| host_of(helper));
                Some(format!("http://{host}:{}/", helper.port()))
            }
            _ => None,
        };
        StartupUrls { web, onboarding }
    }
}

/// The sockets the server listens on.
pub struct Listeners {
    /// `--listen`: HTTPS, or plain HTTP with `--tls off`.
    pub main: TcpListener,
    /// `--http-listen`: the plain-HTTP helper (onboarding, CA profile, redirects).
    pub http_helper: Option<TcpListener>,
}

/// Binds `--listen` and `--http-listen`, failing with a sentence that says how to fix a taken
/// port.
pub async fn bind(state: &AppState) -> Result<Listeners> {
    let config = &state.config;
    let bind_one = |address: SocketAddr, flag: &'static str| async move {
        TcpListener::bind(address).await.with_context(|| {
            format!("cannot listen on {address}: is another server using it? Choose another {flag} address")
        })
    };
    let main = bind_one(config.listen, "--listen").await?;
    let http_helper = match config.http_listen {
        Some(address) => Some(bind_one(address, "--http-listen").await?),
        None => None,
    };
    let _ = state.bound.set(BoundAddresses {
        main: main.local_addr().context("cannot read the listening address")?,
        http_helper: http_helper.as_ref().map(TcpListener::local_addr).transpose()?,
    });
    Ok(Listeners { main, http_helper })
}

/// Sends small writes at once: a response's headers and a short streamed body otherwise wait
/// for the client's delayed ACK (about 40 ms per request on a kept-alive connection).
fn no_delay(stream: &mut tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
}

/// Serves until `shutdown` resolves, then finishes the requests in flight. Keeps the TLS
/// certificate current while it runs.
pub async fn serve(
    state: AppState,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    if let Some(tls) = &state.tls {
        tokio::spawn(Arc::clone(tls).maintain(tls::Tls::maintenance_interval(), stop.clone()));
    }
    {
        // Look at ourselves as a device would, once serving, then now and again.
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Some(base) = state.device_base_url() else { return };
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = stop.cancelled() => return,
                }
                self_check::run(&state, &base).await;
                tokio::select! {
                    () = tokio::time::sleep(self_check::INTERVAL) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    {
        // Abandoned resumable uploads: checked often enough that none outlives its expiry by
        // more than a quarter of it.
        let state = state.clone();
        let stop = stop.clone();
        let period = (state.config.upload_expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(period) => {}
                    () = stop.cancelled() => return,
                }
                if let Err(error) = uploads::sweep_expired(&state).await {
                    tracing::warn!(%error, "could not sweep abandoned uploads");
                }
            }
        });
    }
    if let Some(period) = state.config.retention_interval {
        // Retention, on every instance: each deletion is safe against the others'.
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut wait = period.min(Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return,
                }
                retention::run_logged(&state).await;
                wait = period;
            }
        });
    }
    if !state.storage.is_local() {
        // Shared storage: leftovers of instances that died mid-upload are only recognisable
        // once old, so they are looked for now and again rather than only at start-up.
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(ingest::SHARED_GRACE / 4) => {}
                    () = stop.cancelled() => return,
                }
                if let Err(error) = ingest::reconcile(&state).await {
                    tracing::warn!(%error, "could not look for blobs without builds");
                }
                if let Err(error) = uploads::remove_leftovers(&state).await {
                    tracing::warn!(%error, "could not look for abandoned part objects");
                }
            }
        });
    }
    // Before accepting requests, so that the first expiry check never races the first ones.
    webhooks::start(&state, &stop).await;
    let helper = listeners.http_helper.map(|listener| {
        let router = http::helper_router(state.clone());
        tokio::spawn(
            // Every connection's peer address rides along in the requests (ConnectInfo), for
            // rate limits and logs.
            axum::serve(listener.tap_io(no_delay), router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        )
    });
    let router = http::router(state.clone());
    let served = match &state.tls {
        Some(tls) => {
            tls::serve(listeners.main, tls.server_config.clone(), router, stop.clone().cancelled_owned()).await
        }
        None => {
            axum::serve(listeners.main.tap_io(no_delay), router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .await
                .context("the server stopped")
        }
    };
    stop.cancel();
    if let Some(helper) = helper {
        helper.await.context("the HTTP helper failed")?.context("the HTTP helper stopped")?;
    }
    // The last requests' install events are still queued: a clean stop writes them.
    state.analytics.flush().await;
    served
}
