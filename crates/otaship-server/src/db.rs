//! The metadata database: apps, builds, API tokens, sessions, resumable uploads, shared secrets,
//! enrolled devices (`devices`), named accounts with failed sign-ins (`accounts`), share
//! links, channel pages and install analytics (`sharing`), retention rules (`retention`) and
//! webhooks with their deliveries (`webhooks`), on SQLite (one instance) or PostgreSQL (one or
//! several instances).
//!
//! Methods are use cases, not generic CRUD. Every statement is written once, in the SQL both
//! engines speak (`$1` placeholders, `ON CONFLICT`, `RETURNING`-free), and runs on whichever
//! pool the URL chose ([`with_pool!`]); the schema lives in one migration set per engine, kept
//! column-for-column alike. Timestamps are RFC 3339 UTC text with milliseconds, so that text
//! order is time order on both engines; ids are random hex.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::accounts::Role;
use crate::tokens::Scope;

/// Errors of the database boundary.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// Anything the driver reports.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// Migrations failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// What a database failure means for the request that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// The row does not exist.
    NotFound,
    /// The database cannot be reached now: stopped, restarting, shutting down, unreachable, or
    /// no connection came free in time. Nothing is wrong with the request; it may succeed later,
    /// and the pool reconnects by itself once the database answers again.
    Unavailable,
    /// The database could not write because its disk is full.
    DiskFull,
    /// The request carried text the database cannot store (PostgreSQL refuses NUL characters).
    /// Inputs are checked before they reach the database; this is the net under those checks.
    UnstorableText,
    /// Anything else: a bug, a damaged database, a statement the database refused.
    Other,
}

/// SQLite's primary result code for a full disk (`SQLITE_FULL`); extended codes carry it in
/// their low byte.
const SQLITE_FULL: i32 = 13;

/// PostgreSQL's SQLSTATEs of a database that is going away or not there yet: `admin_shutdown`
/// (a fast or immediate stop), `crash_shutdown` (another backend crashed), `cannot_connect_now`
/// (starting up or shutting down), and `too_many_connections`.
const PG_UNAVAILABLE: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];

/// PostgreSQL's SQLSTATE for a full disk (`disk_full`).
const PG_DISK_FULL: &str = "53100";

/// PostgreSQL's SQLSTATE for a character its encoding cannot hold (`character_not_in_repertoire`):
/// a NUL in text.
const PG_UNSTORABLE_CHARACTER: &str = "22021";

impl DbError {
    /// Classifies the failure: whether to tell the client to come back later, that the disk is
    /// full, or that the server failed.
    pub fn failure(&self) -> DbFailure {
        match self {
            DbError::NotFound => DbFailure::NotFound,
            DbError::Sqlx(error) => classify(error),
            DbError::Migrate(
                sqlx::migrate::MigrateError::Execute(error) | sqlx::migrate::MigrateError::ExecuteMigration(error, _),
            ) => classify(error),
            DbError::Migrate(_) => DbFailure::Other,
        }
    }
}

fn classify(error: &sqlx::Error) -> DbFailure {
    match error {
        // A write SQLite could not make (its file is local), or the connection to PostgreSQL.
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) => {
            DbFailure::DiskFull
        }
        // Refused, reset, cut off; a TLS handshake with a server that went away; every
        // connection attempt refused until the acquire timeout; the pool closing on shutdown.
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            DbFailure::Unavailable
        }
        sqlx::Error::Database(database) => {
            let code = database.code();
            if database.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // An extended result code, in decimal.
                let primary = code.and_then(|code| code.parse::<i32>().ok()).map(|code| code & 0xff);
                return if primary == Some(SQLITE_FULL) { DbFailure::DiskFull } else { DbFailure::Other };
            }
            match code.as_deref() {
                Some(PG_DISK_FULL) => DbFailure::DiskFull,
                Some(PG_UNSTORABLE_CHARACTER) => DbFailure::UnstorableText,
                Some(code) if PG_UNAVAILABLE.contains(&code) => DbFailure::Unavailable,
                // Class 08: connection exceptions.
                Some(code) if code.starts_with("08") => DbFailure::Unavailable,
                _ => DbFailure::Other,
            }
        }
        _ => DbFailure::Other,
    }
}

/// Which database, from `--database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file (one instance).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user:password@host/db?sslmode=...`).
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `sqlite:///path`, `sqlite://relative/path` or `postgres://...`/`postgresql://...`.
    pub fn parse(url: &str) -> Option<DatabaseUrl> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Some(DatabaseUrl::Postgres(url.to_owned()));
        }
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Some(DatabaseUrl::Sqlite(PathBuf::from(path))),
            _ => None,
        }
    }

    /// The URL for messages, without a password.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => crate::config::redact_password(url),
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database handle.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
}

/// Runs `$body` with `$pool` bound to the concrete pool: the same statements, compiled once per
/// engine.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

mod accounts;
mod devices;
mod retention;
mod sharing;
mod webhooks;

pub use accounts::AccountRow;
pub use devices::{DeviceRow, Enrolled};
pub use retention::{BuildSummary, ChannelUsage, RetentionRule};
pub use sharing::{ChannelRow, DeviceCount, Event, EventCounts, EventKind, LinkFilter, LinkRow};
pub use webhooks::{AttemptOutcome, ClaimedDelivery, DeliveryRow, NewDelivery, WebhookRow};

/// What differs between the engines beyond the SQL text: how a transaction that reads then
/// writes, or reads twice, gets the isolation it needs.
trait Engine: sqlx::Database {
    /// A transaction that writes: one at a time, like SQLite's single writer.
    fn begin_write(
        pool: &sqlx::Pool<Self>,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self>, sqlx::Error>> + Send;
    /// A transaction whose reads all see one snapshot.
    fn begin_read(
        pool: &sqlx::Pool<Self>,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self>, sqlx::Error>> + Send;
}

impl Engine for sqlx::Sqlite {
    /// Takes SQLite's write lock at once. A deferred transaction that reads and then writes
    /// fails with "database is locked" (without waiting) when another connection wrote in
    /// between; an immediate one waits its turn (the busy timeout) instead.
    async fn begin_write(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn begin_read(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        pool.begin().await
    }
}

/// The advisory lock every PostgreSQL write transaction holds ("otaship" in ASCII). Writes are
/// few and short (a build, a part, a token); taking them one at a time across every instance
/// gives the read-then-write steps the same guarantees as on SQLite, without row-lock puzzles.
const WRITE_LOCK: i64 = 0x006f_7461_7368_6970;

impl Engine for sqlx::Postgres {
    async fn begin_write(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        let mut transaction = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK).execute(&mut *transaction).await?;
        Ok(transaction)
    }

    async fn begin_read(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        // READ COMMITTED takes a new snapshot per statement; two reads that must agree need one.
        pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await
    }
}

/// The session lock `migrate` holds on PostgreSQL ("otaship" + 1).
const MIGRATE_LOCK: i64 = WRITE_LOCK + 1;

const APPLIED_VERSIONS: &str = "SELECT version FROM _sqlx_migrations WHERE success";

/// The versions a read of [`APPLIED_VERSIONS`] found (none before the first migration, when
/// the bookkeeping table does not exist yet).
fn applied_versions(rows: Result<Vec<i64>, sqlx::Error>) -> Result<HashSet<i64>, DbError> {
    match rows {
        Ok(rows) => Ok(rows.into_iter().collect()),
        Err(sqlx::Error::Database(error))
            if error.message().contains("_sqlx_migrations") || error.code().as_deref() == Some("42P01") =>
        {
            Ok(HashSet::new())
        }
        Err(error) => Err(error.into()),
    }
}

async fn begin_write<E: Engine>(pool: &sqlx::Pool<E>) -> Result<sqlx::Transaction<'static, E>, DbError> {
    Ok(E::begin_write(pool).await?)
}

async fn begin_read<E: Engine>(pool: &sqlx::Pool<E>) -> Result<sqlx::Transaction<'static, E>, DbError> {
    Ok(E::begin_read(pool).await?)
}

/// The migrations of an engine. A database migrated further than this binary knows is
/// accepted: migrations only add tables and columns, so during a rolling upgrade an instance of
/// the previous release keeps working (and can restart) beside migrated ones.
fn migrator(sqlite: bool) -> sqlx::migrate::Migrator {
    let mut migrator =
        if sqlite { sqlx::migrate!("./migrations/sqlite") } else { sqlx::migrate!("./migrations/postgres") };
    migrator.set_ignore_missing(true);
    migrator
}

/// A build row as stored.
#[derive(sqlx::FromRow)]
struct BuildRecord {
    id: String,
    install_token: String,
    bundle_id: String,
    name: Option<String>,
    version: Option<String>,
    build: Option<String>,
    size: i64,
    sha256: String,
    notes: Option<String>,
    channel: String,
    metadata: String,
    created_at: String,
    has_icon: bool,
    report: String,
}

#[derive(sqlx::FromRow)]
struct AppRecord {
    #[sqlx(flatten)]
    latest: BuildRecord,
    build_count: i64,
}

#[derive(sqlx::FromRow)]
struct UploadRecord {
    id: String,
    file_name: String,
    size: i64,
    sha256: String,
    part_size: i64,
    notes: Option<String>,
    channel: String,
    metadata: String,
    created_at: String,
    expires_at: String,
}

#[derive(sqlx::FromRow)]
struct TokenRecord {
    id: String,
    name: String,
    scope: String,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

#[derive(sqlx::FromRow)]
struct PartRecord {
    number: i64,
    size: i64,
    sha256: String,
    object: Option<String>,
}

/// A received part of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRow {
    /// 1-based number.
    pub number: u32,
    /// Bytes.
    pub size: u64,
    /// SHA-256 hex.
    pub sha256: String,
    /// Its object's key in object storage (none on local disk, where parts share one file).
    pub object: Option<String>,
}

/// What recording a part did.
#[derive(Debug, PartialEq, Eq)]
pub enum PartRecorded {
    /// The upload is no longer open (completed, completing, or gone); nothing was recorded.
    Closed,
    /// Recorded; `replaced` is the object of the part it replaced, now unused.
    Recorded {
        /// The earlier object of this part, if it had another one.
        replaced: Option<String>,
    },
}

/// A stored build.
#[derive(Debug, Clone)]
pub struct BuildRow {
    /// Random id used by the API.
    pub id: String,
    /// Capability used in public URLs.
    pub install_token: String,
    /// The app.
    pub bundle_id: String,
    /// Display name.
    pub name: Option<String>,
    /// `CFBundleShortVersionString`.
    pub version: Option<String>,
    /// `CFBundleVersion`.
    pub build: Option<String>,
    /// Bytes.
    pub size: u64,
    /// SHA-256 hex.
    pub sha256: String,
    /// Release notes.
    pub notes: Option<String>,
    /// The channel it was pushed to.
    pub channel: String,
    /// Uploader-supplied key/value pairs (git branch, commit, CI run URL).
    pub metadata: BTreeMap<String, String>,
    /// Upload time.
    pub created_at: OffsetDateTime,
    /// Whether an icon blob exists.
    pub has_icon: bool,
    /// The inspection report as JSON.
    pub report: String,
}

/// An app and its newest build.
#[derive(Debug, Clone)]
pub struct AppRow {
    /// Bundle id.
    pub bundle_id: String,
    /// Name of the newest build.
    pub name: Option<String>,
    /// How many builds it has.
    pub build_count: u64,
    /// The newest build.
    pub latest: BuildRow,
}

/// An API token, without its secret.
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Id (shown by `token list`, used by `token revoke`).
    pub id: String,
    /// Name given at creation.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last successful use.
    pub last_used_at: Option<OffsetDateTime>,
    /// Revocation time.
    pub revoked_at: Option<OffsetDateTime>,
}

/// A live API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveToken {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
}

/// Who a web session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOwner {
    /// An admin-scoped API token, pasted on the sign-in page.
    Token {
        /// The token's id.
        id: String,
        /// Its name.
        name: String,
    },
    /// A named account, signed in with its password.
    Account {
        /// The account's id.
        id: String,
        /// Its username.
        username: String,
        /// Its role now (a change applies to its open sessions at once).
        role: Role,
    },
}

/// A signed-in web UI session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// The token or account the session belongs to.
    pub owner: SessionOwner,
    /// The value every state-changing request of the session must echo.
    pub csrf_token: String,
}

const BUILD_COLUMNS: &str = "id, install_token, bundle_id, name, version, build, size, sha256, notes, channel, \
     metadata, created_at, has_icon, report";

const UPLOAD_COLUMNS: &str = "id, file_name, size, sha256, part_size, notes, channel, metadata, created_at, expires_at";

/// What recording a build did.
#[derive(Debug)]
pub enum Recorded {
    /// The build is new.
    Inserted,
    /// A build with the same SHA-256 already existed; nothing was written.
    Existing(Box<BuildRow>),
}

/// A resumable upload in progress.
#[derive(Debug, Clone)]
pub struct UploadRow {
    /// Random id.
    pub id: String,
    /// The file name the client gave (for logs and the build's record).
    pub file_name: String,
    /// Bytes of the whole file.
    pub size: u64,
    /// SHA-256 hex the whole file must have.
    pub sha256: String,
    /// Bytes per part (the last may be shorter).
    pub part_size: u64,
    /// Release notes for the build.
    pub notes: Option<String>,
    /// Channel for the build.
    pub channel: String,
    /// Metadata for the build.
    pub metadata: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// When it is abandoned unless more parts arrive.
    pub expires_at: OffsetDateTime,
    /// Part numbers received and checked, ascending.
    pub received: Vec<u32>,
}

impl Db {
    /// Connects to the database `url` names and applies pending migrations (several instances
    /// starting together apply them once: PostgreSQL's migrator holds an advisory lock).
    pub async fn open(url: &DatabaseUrl) -> Result<Self, DbError> {
        let db = Db::connect(url).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Connects without migrating.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, DbError> {
        let pool = match url {
            DatabaseUrl::Sqlite(path) => {
                let options = SqliteConnectOptions::from_str("sqlite://")?
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // WAL with NORMAL is durable against application crashes; a power loss may
                    // lose the last transactions but never corrupts the file.
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(8)
                        // A COMMIT that fails on a full disk is rolled back by SQLite itself; the
                        // driver's own ROLLBACK then fails, and it keeps counting the connection
                        // as inside a transaction, so that every later transaction on it would
                        // fail. Such a connection is closed (the pool opens a fresh one). Only a
                        // connection that still counts as inside one is looked at again, after a
                        // ping that lets a rollback queued by a dropped transaction run: the
                        // usual release costs nothing.
                        .after_release(|connection, _| {
                            Box::pin(async move {
                                if !sqlx::Connection::is_in_transaction(&*connection) {
                                    return Ok(true);
                                }
                                sqlx::Connection::ping(&mut *connection).await?;
                                Ok(!sqlx::Connection::is_in_transaction(&*connection))
                            })
                        })
                        .connect_with(options)
                        .await?,
                )
            }
            DatabaseUrl::Postgres(url) => {
                let options = PgConnectOptions::from_str(url)?.application_name("otaship");
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(16)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_with(options)
                        .await?,
                )
            }
        };
        Ok(Db { pool })
    }

    /// Applies pending migrations; returns the versions this call applied (none when another
    /// instance applied them meanwhile).
    pub async fn migrate(&self) -> Result<Vec<i64>, DbError> {
        let (before, after) = match &self.pool {
            Pool::Sqlite(pool) => {
                // One writer at a time on the file already.
                let mut connection = pool.acquire().await?;
                let before = applied_versions(sqlx::query_scalar(APPLIED_VERSIONS).fetch_all(&mut *connection).await)?;
                migrator(true).run(&mut *connection).await?;
                (before, applied_versions(sqlx::query_scalar(APPLIED_VERSIONS).fetch_all(&mut *connection).await)?)
            }
            Pool::Postgres(pool) => {
                // The migrator locks too, but only around its own work: what was applied before
                // must be read under the same lock to tell who applied what.
                let mut connection = pool.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATE_LOCK).execute(&mut *connection).await?;
                let migrated = async {
                    let before =
                        applied_versions(sqlx::query_scalar(APPLIED_VERSIONS).fetch_all(&mut *connection).await)?;
                    migrator(false).run(&mut *connection).await?;
                    Ok::<_, DbError>((
                        before,
                        applied_versions(sqlx::query_scalar(APPLIED_VERSIONS).fetch_all(&mut *connection).await)?,
                    ))
                }
                .await;
                sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATE_LOCK).execute(&mut *connection).await?;
                migrated?
            }
        };
        let mut applied: Vec<i64> = after.into_iter().filter(|version| !before.contains(version)).collect();
        applied.sort_unstable();
        Ok(applied)
    }

    /// Versions of the migrations this binary knows, with their descriptions.
    pub fn known_migrations(&self) -> Vec<(i64, String)> {
        migrator(matches!(self.pool, Pool::Sqlite(_)))
            .iter()
            .map(|migration| (migration.version, migration.description.to_string()))
            .collect()
    }

    /// Versions applied so far (none on a new database).
    pub async fn applied_migrations(&self) -> Result<HashSet<i64>, DbError> {
        with_pool!(self, pool => {
            let mut connection = pool.acquire().await?;
            applied_versions(sqlx::query_scalar(APPLIED_VERSIONS).fetch_all(&mut *connection).await)
        })
    }

    /// `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (tests and `migrate` end with it).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }

    /// Records a build (and its app) in one transaction, unless a build with the same SHA-256
    /// exists: then that build is returned and nothing is written.
    pub async fn insert_build(&self, build: &BuildRow) -> Result<Recorded, DbError> {
        with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            let existing: Option<BuildRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE sha256 = $1 ORDER BY created_at LIMIT 1"
            )))
            .bind(&build.sha256)
            .fetch_optional(&mut *transaction)
            .await?;
            if let Some(record) = existing {
                return Ok(Recorded::Existing(Box::new(record.into_row()?)));
            }
            let now = timestamp(build.created_at);
            sqlx::query(
                "INSERT INTO apps (bundle_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (bundle_id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
            )
            .bind(&build.bundle_id)
            .bind(&build.name)
            .bind(&now)
            .execute(&mut *transaction)
            .await?;
            sqlx::query(
                "INSERT INTO builds (id, install_token, bundle_id, name, version, build, size, sha256, notes, \
                 channel, metadata, created_at, has_icon, report) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&build.id)
            .bind(&build.install_token)
            .bind(&build.bundle_id)
            .bind(&build.name)
            .bind(&build.version)
            .bind(&build.build)
            .bind(i64::try_from(build.size).unwrap_or(i64::MAX))
            .bind(&build.sha256)
            .bind(&build.notes)
            .bind(&build.channel)
            .bind(metadata_json(&build.metadata))
            .bind(&now)
            .bind(build.has_icon)
            .bind(&build.report)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            Ok(Recorded::Inserted)
        })
    }

    /// The build whose file has this SHA-256, if any.
    pub async fn build_by_sha256(&self, sha256: &str) -> Result<Option<BuildRow>, DbError> {
        let record: Option<BuildRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE sha256 = $1 ORDER BY created_at LIMIT 1"
            )))
            .bind(sha256)
            .fetch_optional(pool)
            .await?
        });
        record.map(BuildRecord::into_row).transpose()
    }

    /// A build by its API id.
    pub async fn build_by_id(&self, id: &str) -> Result<BuildRow, DbError> {
        let record: Option<BuildRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        record.ok_or(DbError::NotFound)?.into_row()
    }

    /// A build by its install token.
    pub async fn build_by_token(&self, token: &str) -> Result<BuildRow, DbError> {
        let record: Option<BuildRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE install_token = $1"
            )))
            .bind(token)
            .fetch_optional(pool)
            .await?
        });
        record.ok_or(DbError::NotFound)?.into_row()
    }

    /// Every build id, oldest first: for reconciling storage, and for moving it.
    pub async fn build_ids(&self) -> Result<Vec<String>, DbError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM builds ORDER BY created_at, id").fetch_all(pool).await?
        }))
    }

    /// Deletes a build; removes its app when it was the last one.
    pub async fn delete_build(&self, id: &str) -> Result<BuildRow, DbError> {
        with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            let record: Option<BuildRecord> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1")))
                    .bind(id)
                    .fetch_optional(&mut *transaction)
                    .await?;
            let build = record.ok_or(DbError::NotFound)?.into_row()?;
            sqlx::query("DELETE FROM builds WHERE id = $1").bind(id).execute(&mut *transaction).await?;
            // Its links stay (and say that the build is gone); its analytics go with it.
            sqlx::query("DELETE FROM install_events WHERE build_id = $1").bind(id).execute(&mut *transaction).await?;
            sqlx::query(
                "DELETE FROM apps WHERE bundle_id = $1 AND NOT EXISTS (SELECT 1 FROM builds WHERE bundle_id = $1)",
            )
            .bind(&build.bundle_id)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            Ok(build)
        })
    }

    /// Apps with their newest build, most recently updated first.
    pub async fn list_apps(&self) -> Result<Vec<AppRow>, DbError> {
        let records: Vec<AppRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS}, (SELECT COUNT(*) FROM builds counted WHERE counted.bundle_id = b.bundle_id) \
                 AS build_count FROM builds b WHERE b.id = (SELECT newest.id FROM builds newest \
                 WHERE newest.bundle_id = b.bundle_id ORDER BY newest.created_at DESC, newest.id DESC LIMIT 1) \
                 ORDER BY b.created_at DESC, b.id DESC"
            )))
            .fetch_all(pool)
            .await?
        });
        records
            .into_iter()
            .map(|record| {
                let latest = record.latest.into_row()?;
                Ok(AppRow {
                    bundle_id: latest.bundle_id.clone(),
                    name: latest.name.clone(),
                    build_count: u64::try_from(record.build_count).unwrap_or(0),
                    latest,
                })
            })
            .collect()
    }

    /// An app's builds, newest first, one page at a time.
    pub async fn list_builds(&self, bundle_id: &str, offset: u64, limit: u64) -> Result<(Vec<BuildRow>, u64), DbError> {
        let (total, records): (i64, Vec<BuildRecord>) = with_pool!(self, pool => {
            let mut transaction = begin_read(pool).await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM builds WHERE bundle_id = $1")
                .bind(bundle_id)
                .fetch_one(&mut *transaction)
                .await?;
            let records = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE bundle_id = $1 ORDER BY created_at DESC, id DESC \
                 LIMIT $2 OFFSET $3"
            )))
            .bind(bundle_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&mut *transaction)
            .await?;
            transaction.commit().await?;
            (total, records)
        });
        let builds = records.into_iter().map(BuildRecord::into_row).collect::<Result<_, _>>()?;
        Ok((builds, u64::try_from(total).unwrap_or(0)))
    }

    /// Stores a new admin token's hash.
    pub async fn insert_token(&self, id: &str, name: &str, token_hash: &str) -> Result<(), DbError> {
        self.insert_scoped_token(id, name, token_hash, Scope::Admin).await
    }

    /// Stores a new token's hash with its scope.
    pub async fn insert_scoped_token(
        &self,
        id: &str,
        name: &str,
        token_hash: &str,
        scope: Scope,
    ) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO tokens (id, name, token_hash, created_at, scope) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(name)
                .bind(token_hash)
                .bind(timestamp(OffsetDateTime::now_utc()))
                .bind(scope.as_str())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Stores a token's hash unless a token (even revoked) has it already; true when stored.
    /// Instances starting together with the same `OTASHIP_ADMIN_TOKEN` all succeed.
    pub async fn insert_token_once(&self, id: &str, name: &str, token_hash: &str) -> Result<bool, DbError> {
        let affected = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (token_hash) DO NOTHING",
            )
            .bind(id)
            .bind(name)
            .bind(token_hash)
            .bind(timestamp(OffsetDateTime::now_utc()))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Every token, newest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, DbError> {
        let records: Vec<TokenRecord> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, scope, created_at, last_used_at, revoked_at FROM tokens ORDER BY created_at DESC, id",
            )
            .fetch_all(pool)
            .await?
        });
        records
            .into_iter()
            .map(|record| {
                Ok(TokenRow {
                    id: record.id,
                    name: record.name,
                    scope: token_scope(&record.scope),
                    created_at: parse_time(record.created_at)?,
                    last_used_at: record.last_used_at.map(parse_time).transpose()?,
                    revoked_at: record.revoked_at.map(parse_time).transpose()?,
                })
            })
            .collect()
    }

    /// Revokes a token by id; `NotFound` if none matches.
    pub async fn revoke_token(&self, id: &str) -> Result<(), DbError> {
        let affected = with_pool!(self, pool => {
            sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(timestamp(OffsetDateTime::now_utc()))
                .execute(pool)
                .await?
                .rows_affected()
        });
        if affected == 0 { Err(DbError::NotFound) } else { Ok(()) }
    }

    /// The id of the live token with this hash, recording its use.
    pub async fn live_token_id(&self, token_hash: &str) -> Result<Option<String>, DbError> {
        Ok(self.live_token(token_hash).await?.map(|token| token.id))
    }

    /// The live token with this hash, recording its use.
    pub async fn live_token(&self, token_hash: &str) -> Result<Option<LiveToken>, DbError> {
        let found: Option<(String, String, String, Option<String>)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, scope, last_used_at FROM tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
        });
        let Some((id, name, scope, last_used)) = found else {
            return Ok(None);
        };
        // A push sends hundreds of requests a minute; the time of use is kept to the minute, so
        // that requests do not all queue for the single writer.
        let now = OffsetDateTime::now_utc();
        let stale = last_used.map(parse_time).transpose()?.is_none_or(|at| now - at > time::Duration::MINUTE);
        if stale {
            // Only a record for people: a database that cannot write now (a full disk) must not
            // turn away the request, which may be the download or the delete that frees space.
            let recorded: Result<(), sqlx::Error> = with_pool!(self, pool => {
                sqlx::query("UPDATE tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(timestamp(now))
                    .execute(pool)
                    .await
                    .map(|_| ())
            });
            if let Err(error) = recorded {
                tracing::warn!(token.id = %id, %error, "could not record when the token was used");
            }
        }
        Ok(Some(LiveToken { id, name, scope: token_scope(&scope) }))
    }

    /// Opens a web session for a token until `expires_at`, and drops expired sessions.
    pub async fn insert_session(
        &self,
        id_hash: &str,
        token_id: &str,
        csrf_token: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), DbError> {
        let now = timestamp(OffsetDateTime::now_utc());
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(&now).execute(pool).await?;
            sqlx::query(
                "INSERT INTO sessions (id_hash, token_id, csrf_token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id_hash)
            .bind(token_id)
            .bind(csrf_token)
            .bind(&now)
            .bind(timestamp(expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The live session with this hash: not expired, and its admin token not revoked (nor its
    /// scope narrowed), or its account not deleted. Sessions opened with a token live in
    /// `sessions`, those opened with a password in `account_sessions` (see migration 8).
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>, DbError> {
        let found: Option<(String, String, String, String, String)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT 'token' AS kind, tokens.id, tokens.name, 'admin' AS role, sessions.csrf_token FROM sessions \
                 JOIN tokens ON tokens.id = sessions.token_id \
                 WHERE sessions.id_hash = $1 AND sessions.expires_at > $2 AND tokens.revoked_at IS NULL \
                 AND tokens.scope = 'admin' \
                 UNION ALL \
                 SELECT 'account' AS kind, accounts.id, accounts.username, accounts.role, account_sessions.csrf_token \
                 FROM account_sessions JOIN accounts ON accounts.id = account_sessions.account_id \
                 WHERE account_sessions.id_hash = $1 AND account_sessions.expires_at > $2",
            )
            .bind(id_hash)
            .bind(timestamp(OffsetDateTime::now_utc()))
            .fetch_optional(pool)
            .await?
        });
        Ok(found.map(|(kind, id, name, role, csrf_token)| {
            let owner = if kind == "account" {
                SessionOwner::Account { id, username: name, role: Role::parse(&role).unwrap_or(Role::Uploader) }
            } else {
                SessionOwner::Token { id, name }
            };
            SessionRow { owner, csrf_token }
        }))
    }

    /// Ends a session (signing out), whichever kind it is.
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(pool).await?;
            sqlx::query("DELETE FROM account_sessions WHERE id_hash = $1").bind(id_hash).execute(pool).await?;
        });
        Ok(())
    }

    /// The open, unexpired upload of a file with this content, to resume it.
    pub async fn open_upload_for(&self, sha256: &str, size: u64) -> Result<Option<UploadRow>, DbError> {
        let id: Option<String> = with_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM uploads WHERE sha256 = $1 AND size = $2 AND state = 'open' AND expires_at > $3 \
                 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(sha256)
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .bind(timestamp(OffsetDateTime::now_utc()))
            .fetch_optional(pool)
            .await?
        });
        match id {
            Some(id) => self.upload(&id).await,
            None => Ok(None),
        }
    }

    /// Records a new upload.
    pub async fn insert_upload(&self, upload: &UploadRow) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO uploads ({UPLOAD_COLUMNS}, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open')"
            )))
            .bind(&upload.id)
            .bind(&upload.file_name)
            .bind(i64::try_from(upload.size).unwrap_or(i64::MAX))
            .bind(&upload.sha256)
            .bind(i64::try_from(upload.part_size).unwrap_or(i64::MAX))
            .bind(&upload.notes)
            .bind(&upload.channel)
            .bind(metadata_json(&upload.metadata))
            .bind(timestamp(upload.created_at))
            .bind(timestamp(upload.expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Replaces what the build will be recorded with (a resumed push may bring new notes) and
    /// the expiry.
    pub async fn update_upload(&self, upload: &UploadRow) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query(
                "UPDATE uploads SET notes = $2, channel = $3, metadata = $4, expires_at = $5 \
                 WHERE id = $1 AND state = 'open'",
            )
            .bind(&upload.id)
            .bind(&upload.notes)
            .bind(&upload.channel)
            .bind(metadata_json(&upload.metadata))
            .bind(timestamp(upload.expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// An unexpired upload with the parts received so far.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>, DbError> {
        // One snapshot: a completion deleting the upload in between must not make it look as if
        // it had no parts.
        let found: Option<(UploadRecord, Vec<i64>)> = with_pool!(self, pool => {
            let mut transaction = begin_read(pool).await?;
            let record: Option<UploadRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND expires_at > $2"
            )))
            .bind(id)
            .bind(timestamp(OffsetDateTime::now_utc()))
            .fetch_optional(&mut *transaction)
            .await?;
            let numbers: Vec<i64> = match record {
                Some(_) => sqlx::query_scalar("SELECT number FROM upload_parts WHERE upload_id = $1 ORDER BY number")
                    .bind(id)
                    .fetch_all(&mut *transaction)
                    .await?,
                None => Vec::new(),
            };
            transaction.commit().await?;
            record.map(|record| (record, numbers))
        });
        let Some((record, numbers)) = found else {
            return Ok(None);
        };
        let received = numbers.into_iter().map(|number| u32::try_from(number).unwrap_or(0)).collect();
        record.into_row(received).map(Some)
    }

    /// Records a checked part (stored in `object`, or in the upload's file when `None`) and
    /// pushes the upload's expiry to `expires_at`.
    pub async fn record_part(
        &self,
        upload_id: &str,
        part: &PartRow,
        expires_at: OffsetDateTime,
    ) -> Result<PartRecorded, DbError> {
        let now = OffsetDateTime::now_utc();
        with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            let open = sqlx::query(
                "UPDATE uploads SET expires_at = $2 WHERE id = $1 AND state = 'open' AND expires_at > $3",
            )
            .bind(upload_id)
            .bind(timestamp(expires_at))
            .bind(timestamp(now))
            .execute(&mut *transaction)
            .await?
            .rows_affected()
                == 1;
            if !open {
                return Ok(PartRecorded::Closed);
            }
            let earlier: Option<Option<String>> =
                sqlx::query_scalar("SELECT object FROM upload_parts WHERE upload_id = $1 AND number = $2")
                    .bind(upload_id)
                    .bind(i64::from(part.number))
                    .fetch_optional(&mut *transaction)
                    .await?;
            sqlx::query(
                "INSERT INTO upload_parts (upload_id, number, size, sha256, object, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (upload_id, number) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, \
                 object = excluded.object, received_at = excluded.received_at",
            )
            .bind(upload_id)
            .bind(i64::from(part.number))
            .bind(i64::try_from(part.size).unwrap_or(i64::MAX))
            .bind(&part.sha256)
            .bind(&part.object)
            .bind(timestamp(now))
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            let replaced = earlier.flatten().filter(|earlier| Some(earlier) != part.object.as_ref());
            Ok(PartRecorded::Recorded { replaced })
        })
    }

    /// Pushes an open upload's expiry (a part that is only checked, not stored again). False
    /// when the upload is not open.
    pub async fn touch_upload(&self, upload_id: &str, expires_at: OffsetDateTime) -> Result<bool, DbError> {
        let affected = with_pool!(self, pool => {
            sqlx::query("UPDATE uploads SET expires_at = $2 WHERE id = $1 AND state = 'open' AND expires_at > $3")
                .bind(upload_id)
                .bind(timestamp(expires_at))
                .bind(timestamp(OffsetDateTime::now_utc()))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Forgets part `number` before it is written again, so that a resend that fails half-way
    /// (after overwriting the earlier bytes) is not counted. False when the upload is not open.
    pub async fn forget_part(&self, upload_id: &str, number: u32) -> Result<bool, DbError> {
        with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            let open: Option<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE id = $1 AND state = 'open'")
                .bind(upload_id)
                .fetch_optional(&mut *transaction)
                .await?;
            if open.is_some() {
                sqlx::query("DELETE FROM upload_parts WHERE upload_id = $1 AND number = $2")
                    .bind(upload_id)
                    .bind(i64::from(number))
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
            Ok(open.is_some())
        })
    }

    /// The SHA-256 recorded for part `number`, if it was received.
    pub async fn part_sha256(&self, upload_id: &str, number: u32) -> Result<Option<String>, DbError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT sha256 FROM upload_parts WHERE upload_id = $1 AND number = $2")
                .bind(upload_id)
                .bind(i64::from(number))
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The parts received, ascending.
    pub async fn upload_parts(&self, upload_id: &str) -> Result<Vec<PartRow>, DbError> {
        let records: Vec<PartRecord> = with_pool!(self, pool => {
            sqlx::query_as("SELECT number, size, sha256, object FROM upload_parts WHERE upload_id = $1 ORDER BY number")
                .bind(upload_id)
                .fetch_all(pool)
                .await?
        });
        Ok(records
            .into_iter()
            .map(|record| PartRow {
                number: u32::try_from(record.number).unwrap_or(0),
                size: u64::try_from(record.size).unwrap_or(0),
                sha256: record.sha256,
                object: record.object,
            })
            .collect())
    }

    /// Every object a part of any upload is stored in (to tell them from leftovers).
    pub async fn part_objects(&self) -> Result<HashSet<String>, DbError> {
        let objects: Vec<String> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT object FROM upload_parts WHERE object IS NOT NULL").fetch_all(pool).await?
        });
        Ok(objects.into_iter().collect())
    }

    /// Moves an open upload to `completing`, so that exactly one request assembles it; it takes
    /// no more parts. Its expiry becomes a lease that the completing request renews
    /// ([`Db::renew_completion`]): if that instance dies, the upload expires and is swept.
    pub async fn begin_completing(&self, upload_id: &str, lease_until: OffsetDateTime) -> Result<bool, DbError> {
        let affected = with_pool!(self, pool => {
            sqlx::query("UPDATE uploads SET state = 'completing', expires_at = $2 WHERE id = $1 AND state = 'open'")
                .bind(upload_id)
                .bind(timestamp(lease_until))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Extends the lease of a completing upload.
    pub async fn renew_completion(&self, upload_id: &str, lease_until: OffsetDateTime) -> Result<bool, DbError> {
        let affected = with_pool!(self, pool => {
            sqlx::query("UPDATE uploads SET expires_at = $2 WHERE id = $1 AND state = 'completing'")
                .bind(upload_id)
                .bind(timestamp(lease_until))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Forgets an upload and its parts; returns the objects its parts were stored in (none on
    /// local disk), which nothing records any more.
    pub async fn delete_upload(&self, upload_id: &str) -> Result<Vec<String>, DbError> {
        with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            let objects: Vec<String> =
                sqlx::query_scalar("SELECT object FROM upload_parts WHERE upload_id = $1 AND object IS NOT NULL")
                    .bind(upload_id)
                    .fetch_all(&mut *transaction)
                    .await?;
            sqlx::query("DELETE FROM upload_parts WHERE upload_id = $1").bind(upload_id).execute(&mut *transaction).await?;
            sqlx::query("DELETE FROM uploads WHERE id = $1").bind(upload_id).execute(&mut *transaction).await?;
            transaction.commit().await?;
            Ok(objects)
        })
    }

    /// Ids of uploads past their expiry (abandoned, or whose completion lease lapsed).
    pub async fn expired_upload_ids(&self) -> Result<Vec<String>, DbError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM uploads WHERE expires_at <= $1")
                .bind(timestamp(OffsetDateTime::now_utc()))
                .fetch_all(pool)
                .await?
        }))
    }

    /// Ids of uploads in the middle of completing.
    pub async fn completing_upload_ids(&self) -> Result<Vec<String>, DbError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM uploads WHERE state = 'completing'").fetch_all(pool).await?
        }))
    }

    /// Ids of every upload (expired or not), for reconciling storage.
    pub async fn upload_ids(&self) -> Result<Vec<String>, DbError> {
        Ok(with_pool!(self, pool => sqlx::query_scalar("SELECT id FROM uploads").fetch_all(pool).await?))
    }

    /// The shared secret `name`, if one was stored.
    pub async fn secret(&self, name: &str) -> Result<Option<String>, DbError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1").bind(name).fetch_optional(pool).await?
        }))
    }

    /// Stores `value` as secret `name` unless one exists, and returns the stored one: when
    /// several instances start at once, they all end up with the first one written.
    pub async fn secret_or_insert(&self, name: &str, value: &str) -> Result<String, DbError> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(value)
            .bind(timestamp(OffsetDateTime::now_utc()))
            .execute(pool)
            .await?;
        });
        self.secret(name).await?.ok_or(DbError::NotFound)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// The database is sound: SQLite's `PRAGMA integrity_check`; on PostgreSQL, that it answers
    /// (the server checks its own pages).
    pub async fn integrity_ok(&self) -> Result<bool, DbError> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                let verdict: String = sqlx::query("PRAGMA integrity_check").fetch_one(pool).await?.try_get(0)?;
                Ok(verdict == "ok")
            }
            Pool::Postgres(pool) => {
                let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(pool).await?;
                Ok(one == 1)
            }
        }
    }
}

impl BuildRecord {
    fn into_row(self) -> Result<BuildRow, DbError> {
        Ok(BuildRow {
            id: self.id,
            install_token: self.install_token,
            bundle_id: self.bundle_id,
            name: self.name,
            version: self.version,
            build: self.build,
            size: u64::try_from(self.size).unwrap_or(0),
            sha256: self.sha256,
            notes: self.notes,
            channel: self.channel,
            metadata: parse_metadata(self.metadata)?,
            created_at: parse_time(self.created_at)?,
            has_icon: self.has_icon,
            report: self.report,
        })
    }
}

impl UploadRecord {
    fn into_row(self, received: Vec<u32>) -> Result<UploadRow, DbError> {
        Ok(UploadRow {
            id: self.id,
            file_name: self.file_name,
            size: u64::try_from(self.size).unwrap_or(0),
            sha256: self.sha256,
            part_size: u64::try_from(self.part_size).unwrap_or(1),
            notes: self.notes,
            channel: self.channel,
            metadata: parse_metadata(self.metadata)?,
            created_at: parse_time(self.created_at)?,
            expires_at: parse_time(self.expires_at)?,
            received,
        })
    }
}

/// The scope a stored name means; an unknown one (written by a newer release) is the narrower.
fn token_scope(name: &str) -> Scope {
    Scope::parse(name).unwrap_or(Scope::Upload)
}

fn metadata_json(metadata: &BTreeMap<String, String>) -> String {
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".to_owned())
}

fn parse_metadata(text: String) -> Result<BTreeMap<String, String>, DbError> {
    serde_json::from_str(&text).map_err(|error| DbError::Sqlx(sqlx::Error::Decode(Box::new(error))))
}

/// RFC 3339 in UTC with millisecond precision, so that text order is time order.
pub fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

fn parse_time(text: String) -> Result<OffsetDateTime, DbError> {
    OffsetDateTime::parse(&text, &Rfc3339).map_err(|error| DbError::Sqlx(sqlx::Error::Decode(Box::new(error))))
}

#[cfg(test)]
mod tests {
    use super::{DatabaseUrl, DbError, DbFailure};
    use sqlx::Connection;

    #[test]
    fn connection_failures_mean_unavailable() {
        let io = |kind: std::io::ErrorKind| DbError::Sqlx(sqlx::Error::Io(kind.into())).failure();
        assert_eq!(io(std::io::ErrorKind::ConnectionRefused), DbFailure::Unavailable);
        assert_eq!(io(std::io::ErrorKind::ConnectionReset), DbFailure::Unavailable);
        assert_eq!(io(std::io::ErrorKind::UnexpectedEof), DbFailure::Unavailable);
        assert_eq!(io(std::io::ErrorKind::StorageFull), DbFailure::DiskFull);
        assert_eq!(DbError::Sqlx(sqlx::Error::PoolTimedOut).failure(), DbFailure::Unavailable);
        assert_eq!(DbError::NotFound.failure(), DbFailure::NotFound);
        assert_eq!(DbError::Sqlx(sqlx::Error::RowNotFound).failure(), DbFailure::Other);
        assert_eq!(DbError::Sqlx(sqlx::Error::Protocol("garbage".into())).failure(), DbFailure::Other);
    }

    /// SQLite says `SQLITE_FULL` when its file cannot grow: on a full disk, and, as here, past
    /// `max_page_count`.
    #[tokio::test]
    async fn a_full_sqlite_file_is_a_full_disk() {
        let mut connection = sqlx::SqliteConnection::connect("sqlite::memory:").await.expect("SQLite");
        sqlx::query("CREATE TABLE filler (bytes BLOB)").execute(&mut connection).await.expect("table");
        sqlx::query("PRAGMA max_page_count = 16").execute(&mut connection).await.expect("pragma");
        let mut failed = None;
        for _ in 0..64 {
            if let Err(error) = sqlx::query("INSERT INTO filler VALUES (zeroblob(4096))").execute(&mut connection).await
            {
                failed = Some(error);
                break;
            }
        }
        let error = DbError::from(failed.expect("the file stops growing"));
        assert_eq!(error.failure(), DbFailure::DiskFull, "{error}");
        let broken = sqlx::query("SELECT * FROM no_such_table").execute(&mut connection).await.expect_err("no table");
        assert_eq!(DbError::from(broken).failure(), DbFailure::Other);
    }

    #[test]
    fn the_engine_comes_from_the_url() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/otaship/otaship.db"),
            Some(DatabaseUrl::Sqlite("/var/lib/otaship/otaship.db".into()))
        );
        assert!(matches!(DatabaseUrl::parse("postgres://otaship@db/otaship"), Some(DatabaseUrl::Postgres(_))));
        assert!(matches!(DatabaseUrl::parse("postgresql://db/otaship"), Some(DatabaseUrl::Postgres(_))));
        assert_eq!(DatabaseUrl::parse("mysql://db/otaship"), None);
        assert_eq!(DatabaseUrl::parse("sqlite://"), None);
        let redacted = DatabaseUrl::Postgres("postgres://otaship:hunter2@db:5432/otaship".into()).redacted();
        assert!(!redacted.contains("hunter2") && redacted.contains("db:5432"), "{redacted}");
    }
}
