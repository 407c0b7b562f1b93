//! `otaship migrate` and `otaship migrate-storage`: operator commands that act on the server's
//! database and storage directly (run them where the server's settings are).

use anyhow::Context;
use otaship_server::config::{S3Options, StorageSetting};
use otaship_server::db::Db;
use otaship_server::relocate::{Moved, move_blobs};
use otaship_server::storage::Storage;
use otaship_server::{Config, ServeArgs};

use super::{Failure, print, runtime};

/// `otaship migrate`: the server's settings (the database is what matters).
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    server: ServeArgs,
}

/// `otaship migrate-storage`.
#[derive(Debug, clap::Args)]
pub struct MigrateStorageArgs {
    /// Where the blobs go: file:///path or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "URL")]
    to: String,
    /// S3 endpoint of the destination [default: --s3-endpoint].
    #[arg(long, value_name = "URL")]
    to_s3_endpoint: Option<String>,
    /// S3 region of the destination [default: --s3-region].
    #[arg(long, value_name = "REGION")]
    to_s3_region: Option<String>,
    /// Delete each build's blobs from the current storage once they are verified in the new one.
    #[arg(long)]
    delete_source: bool,
    /// The server's current settings (--storage and the rest, as for `serve`).
    #[command(flatten)]
    server: ServeArgs,
}

/// Applies pending database migrations and says what was done.
pub fn migrate(args: &MigrateArgs) -> Result<(), Failure> {
    let config = Config::load(&args.server)?;
    runtime()?.block_on(async {
        let db = connect(&config).await?;
        let applied = db
            .migrate()
            .await
            .context("the migrations failed; the database is as it was before the one that failed")?;
        let known = db.known_migrations();
        let latest = known.last().map(|(version, description)| format!("{version} ({description})"));
        let mut out = String::new();
        for (version, description) in known.iter().filter(|(version, _)| applied.contains(version)) {
            out.push_str(&format!("applied {version} {description}\n"));
        }
        out.push_str(&format!(
            "the {} database {} is up to date{}\n",
            db.engine(),
            config.database.redacted(),
            latest.map(|latest| format!(" at migration {latest}")).unwrap_or_default()
        ));
        db.close().await;
        print(&out)
    })
}

/// Copies every blob to another storage, resumably.
pub fn migrate_storage(args: &MigrateStorageArgs) -> Result<(), Failure> {
    let config = Config::load(&args.server)?;
    let destination = StorageSetting::parse(
        &args.to,
        &S3Options {
            endpoint: args.to_s3_endpoint.clone().or_else(|| args.server.s3_endpoint.clone()),
            region: args.to_s3_region.clone().or_else(|| args.server.s3_region.clone()),
            virtual_hosted: args.server.s3_virtual_hosted.unwrap_or(false),
            access_key_id: args.server.s3_access_key_id.clone(),
            secret_access_key: args.server.s3_secret_access_key.clone().map(otaship_server::config::Secret),
        },
    )?;
    if destination == config.storage {
        return Err(Failure::Refused {
            code: "same-storage".into(),
            message: format!("--to {} is the storage in use already; name another one", destination.url()),
        });
    }
    runtime()?.block_on(async {
        let db = connect(&config).await?;
        let from = Storage::open(&config.storage).context("cannot open the current storage")?;
        from.check().await.with_context(|| format!("cannot use the storage {}", config.storage.url()))?;
        let to = Storage::open(&destination).context("cannot open the new storage")?;
        to.check().await.with_context(|| format!("cannot use the storage {}", destination.url()))?;
        print(&format!("moving blobs from {} to {}\n", config.storage.url(), destination.url()))?;
        let mut printed = Ok(());
        let report = move_blobs(&db, &from, &to, args.delete_source, |step| {
            let line = match &step.moved {
                Moved::Copied { bytes } => format!("copied  {} ({bytes} bytes)\n", step.key),
                Moved::AlreadyThere => format!("present {}\n", step.key),
                Moved::Missing => format!("MISSING {} (in neither storage)\n", step.key),
            };
            if printed.is_ok() {
                printed = print(&line);
            }
        })
        .await
        .map_err(|error| Failure::Failed(error.context("the move stopped; run the same command again to resume")))?;
        printed?;
        db.close().await;
        let mut out = format!(
            "{} builds: {} blobs copied ({} bytes), {} already there",
            report.builds, report.copied, report.bytes, report.already_there
        );
        if args.delete_source {
            out.push_str(&format!(", {} builds deleted from the old storage", report.deleted_from_source));
        }
        out.push('\n');
        if !report.missing.is_empty() {
            out.push_str(&format!(
                "{} blobs are in neither storage (their builds cannot be downloaded): {}\n",
                report.missing.len(),
                report.missing.join(", ")
            ));
        }
        out.push_str(&format!("next: restart every instance with --storage {}\n", destination.url()));
        print(&out)?;
        if report.missing.is_empty() {
            Ok(())
        } else {
            Err(Failure::Failed(anyhow::anyhow!("some builds' files are missing; see above")))
        }
    })
}

async fn connect(config: &Config) -> anyhow::Result<Db> {
    if let otaship_server::db::DatabaseUrl::Sqlite(path) = &config.database
        && let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Db::connect(&config.database)
        .await
        .with_context(|| format!("cannot open the database {}", config.database.redacted()))
}
