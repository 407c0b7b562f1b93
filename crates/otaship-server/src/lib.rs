//! The otaship server: upload a build, get an install page that installs.
//!
//! It owns start-up (configuration, data directory, database, reconciliation of what a crash
//! left behind), the HTTP routes (`http`), the upload pipeline (`ingest`), blob storage
//! (`storage`) and API tokens (`tokens`). It knows nothing of zip or plist formats: that is
//! `otaship-ipa`'s job.

pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod ingest;
pub mod self_check;
pub mod storage;
pub mod tls;
pub mod tokens;
pub mod uploads;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
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
        let db = Db::open(&config.database_path)
            .await
            .with_context(|| format!("cannot open the database {}", config.database_path.display()))?;
        let tls = tls::Tls::start(&config.tls, &config.data_dir)?.map(Arc::new);
        let state = AppState {
            storage: Storage::new(config.blob_dir()),
            config: Arc::new(config),
            db,
            tls,
            bound: Arc::default(),
            self_check: Arc::default(),
            in_flight: Arc::default(),
        };
        ingest::reconcile(&state).await.context("cannot clean up the data directory")?;
        uploads::sweep_expired(&state).await.context("cannot delete abandoned uploads")?;
        uploads::remove_orphan_files(&state).await.context("cannot clean up the uploads directory")?;
        Ok(state)
    }

    /// Seeds `OTASHIP_ADMIN_TOKEN` as a token, so automation can start with a known secret.
    pub async fn seed_token(&self, token: &str) -> Result<()> {
        let hash = tokens::hash(token);
        if !self.db.token_exists(&hash).await? {
            self.db.insert_token(&tokens::random_hex(8), "OTASHIP_ADMIN_TOKEN", &hash).await?;
        }
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
    let helper = listeners.http_helper.map(|listener| {
        let router = http::helper_router(state.clone());
        tokio::spawn(axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned()).into_future())
    });
    let router = http::router(state.clone());
    let served = match &state.tls {
        Some(tls) => {
            tls::serve(listeners.main, tls.server_config.clone(), router, stop.clone().cancelled_owned()).await
        }
        None => axum::serve(listeners.main, router)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .await
            .context("the server stopped"),
    };
    stop.cancel();
    if let Some(helper) = helper {
        helper.await.context("the HTTP helper failed")?.context("the HTTP helper stopped")?;
    }
    served
}
