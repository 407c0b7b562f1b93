//! `otaship serve` and `otaship token`: run the server, manage API tokens.

use std::path::PathBuf;

use anyhow::Context;
use otaship_server::db::Db;
use otaship_server::{AppState, Config, ServeArgs, tokens};

use super::{Failure, print, runtime};

/// Runs the server until Ctrl-C or SIGTERM.
pub fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let config = Config::load(args)?;
    let admin_token = std::env::var("OTASHIP_ADMIN_TOKEN").ok().filter(|token| !token.trim().is_empty());
    runtime()?.block_on(async move {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("OTASHIP_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .init();
        let state = AppState::open(config).await?;
        if let Some(token) = admin_token {
            state.seed_token(&token).await?;
        }
        let listeners = otaship_server::bind(&state).await?;
        let shutdown = shutdown_signal();
        announce(&state, &listeners)?;
        otaship_server::serve(state, listeners, shutdown).await
    })?;
    Ok(())
}

/// Prints where the server listens and what to open, with a QR code for phones in a terminal.
fn announce(state: &AppState, listeners: &otaship_server::Listeners) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let main = listeners.main.local_addr().context("cannot read the listening address")?;
    let helper = listeners.http_helper.as_ref().map(|listener| listener.local_addr()).transpose()?;
    let urls = otaship_server::StartupUrls::new(state, main, helper);
    let mode = match &state.config.tls {
        otaship_server::TlsSetting::Off => "plain HTTP",
        otaship_server::TlsSetting::LocalCa { .. } => "HTTPS, local CA",
        otaship_server::TlsSetting::Files { .. } => "HTTPS, your certificate",
        otaship_server::TlsSetting::Acme { .. } => "HTTPS, ACME",
    };
    match helper {
        Some(helper) => eprintln!("otaship is listening on {main} ({mode}) and {helper} (plain-HTTP helper)"),
        None => eprintln!("otaship is listening on {main} ({mode})"),
    }
    eprintln!("  web UI for uploads:  {}", urls.web);
    if let Some(onboarding) = &urls.onboarding {
        eprintln!("  on each iPhone or iPad, first open {onboarding} in Safari to trust this server");
        if std::io::stderr().is_terminal() {
            eprint!("{}", super::terminal_qr(onboarding));
        }
    }
    if urls.web.starts_with("http://") {
        eprintln!(
            "  warning: plain HTTP: iOS installs only over HTTPS; put a TLS proxy in front (--public-url https://...)"
        );
    }
    eprintln!("  data directory:      {}", state.config.data_dir.display());
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: the start-up banner tells supervisors (and tests) the server is up,
/// and a SIGTERM sent right after it must stop the server cleanly, not kill it.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let wait = |listener: std::io::Result<tokio::signal::unix::Signal>| async move {
                match listener {
                    Ok(mut listener) => {
                        listener.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `otaship token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// The server's data directory [default: ./otaship-data].
    #[arg(long, global = true, env = "OTASHIP_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's database URL [default: sqlite://<data-dir>/otaship.db].
    #[arg(long, global = true, env = "OTASHIP_DATABASE", value_name = "URL")]
    database: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token and print it (only once: it is stored hashed).
    Create {
        /// A name to recognise it by [default: api].
        #[arg(value_name = "NAME", conflicts_with = "name")]
        positional_name: Option<String>,
        /// The same as NAME.
        #[arg(long)]
        name: Option<String>,
        /// What it may do: `admin` (every API route, and signing in to the web UI) or `upload`
        /// (uploading builds only: for CI).
        #[arg(long, default_value = "admin", value_parser = ["admin", "upload"])]
        scope: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id (from `token list`).
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// Opens (and migrates) the database the server's settings name: `--database`, else the SQLite
/// file in `--data-dir`.
pub(super) async fn open_database(data_dir: Option<&PathBuf>, database: Option<&String>) -> Result<Db, Failure> {
    let config =
        Config::load(&ServeArgs { data_dir: data_dir.cloned(), database: database.cloned(), ..ServeArgs::default() })?;
    otaship_server::config::prepare_data_dir(&config)?;
    let db = Db::open(&config.database)
        .await
        .with_context(|| format!("cannot open the database {}", config.database.redacted()))?;
    Ok(db)
}

/// Runs `otaship token ...` against the data directory.
pub fn token(args: &TokenArgs) -> Result<(), Failure> {
    runtime()?.block_on(async {
        let db = open_database(args.data_dir.as_ref(), args.database.as_ref()).await?;
        match &args.command {
            TokenCommand::Create { positional_name, name, scope } => {
                let name = positional_name.as_deref().or(name.as_deref()).unwrap_or("api");
                let scope = tokens::Scope::parse(scope).unwrap_or(tokens::Scope::Admin);
                let token = tokens::generate();
                db.insert_scoped_token(&tokens::random_hex(8), name, &tokens::hash(&token), scope).await?;
                print(&format!("{token}\n"))?;
            }
            TokenCommand::List => {
                let mut out = String::from(
                    "ID                NAME                  SCOPE   CREATED               LAST USED             STATE\n",
                );
                for token in db.list_tokens().await? {
                    let day = |at: time::OffsetDateTime| {
                        otaship_server::db::timestamp(at).chars().take(16).collect::<String>()
                    };
                    out.push_str(&format!(
                        "{:<17} {:<21} {:<7} {:<21} {:<21} {}\n",
                        token.id,
                        token.name,
                        token.scope.as_str(),
                        day(token.created_at),
                        token.last_used_at.map(day).unwrap_or_else(|| "never".into()),
                        if token.revoked_at.is_some() { "revoked" } else { "active" }
                    ));
                }
                print(&out)?;
            }
            TokenCommand::Revoke { id } => match db.revoke_token(id).await {
                Ok(()) => print(&format!("revoked {id}\n"))?,
                Err(otaship_server::db::DbError::NotFound) => {
                    return Err(Failure::Failed(anyhow::anyhow!(
                        "no active token has the id {id}; see `otaship token list`"
                    )));
                }
                Err(other) => return Err(Failure::Failed(other.into())),
            },
        }
        Ok::<(), Failure>(())
    })
}
