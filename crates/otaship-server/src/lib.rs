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
pub mod storage;
pub mod tls;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

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
    /// The certificate HTTPS serves, when the server speaks TLS itself.
    pub certificate: Option<Arc<tls::CertificateResolver>>,
}

impl AppState {
    /// Prepares the data directory, opens the database and reconciles storage.
    pub async fn open(config: Config) -> Result<Self> {
        config::prepare_data_dir(&config)?;
        let db = Db::open(&config.database_path)
            .await
            .with_context(|| format!("cannot open the database {}", config.database_path.display()))?;
        let certificate = match &config.tls {
            TlsSetting::Off => None,
            TlsSetting::Files { cert, key } => {
                Some(Arc::new(tls::CertificateResolver::new(tls::load_certified_key(cert, key)?)))
            }
        };
        let state = AppState { storage: Storage::new(config.blob_dir()), config: Arc::new(config), db, certificate };
        ingest::reconcile(&state).await.context("cannot clean up the data directory")?;
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

/// Binds `--listen`, failing with a sentence that says how to fix a taken port.
pub async fn bind(config: &Config) -> Result<TcpListener> {
    TcpListener::bind(config.listen).await.with_context(|| {
        format!("cannot listen on {}: is another server using it? Choose another --listen address", config.listen)
    })
}

/// Serves on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let certificate = state.certificate.clone();
    let router = http::router(state);
    match certificate {
        Some(resolver) => tls::serve(listener, tls::server_config(resolver)?, router, shutdown).await,
        None => axum::serve(listener, router).with_graceful_shutdown(shutdown).await.context("the server stopped"),
    }
}
