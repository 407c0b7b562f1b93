//! The metadata database: apps, builds and API tokens, on SQLite.
//!
//! Methods are use cases, not generic CRUD, so that a PostgreSQL backend (a later issue) can
//! implement the same set. Timestamps are RFC 3339 UTC text; ids are random hex.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last successful use.
    pub last_used_at: Option<OffsetDateTime>,
    /// Revocation time.
    pub revoked_at: Option<OffsetDateTime>,
}

/// A signed-in web UI session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// The token the session was opened with.
    pub token_id: String,
    /// Its name, to show who is signed in.
    pub token_name: String,
    /// The value every state-changing request of the session must echo.
    pub csrf_token: String,
}

/// The database handle.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
}

const BUILD_COLUMNS: &str =
    "id, install_token, bundle_id, name, version, build, size, sha256, notes, created_at, has_icon, report";

impl Db {
    /// Opens (creating if needed) the SQLite file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL is durable against application crashes; a power loss may lose
            // the last transactions but never corrupts the file.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Db { pool })
    }

    /// Records a build (and its app) in one transaction.
    pub async fn insert_build(&self, build: &BuildRow) -> Result<(), DbError> {
        let mut transaction = self.pool.begin().await?;
        let now = timestamp(build.created_at);
        sqlx::query(
            "INSERT INTO apps (bundle_id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3) \
             ON CONFLICT (bundle_id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
        )
        .bind(&build.bundle_id)
        .bind(&build.name)
        .bind(&now)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO builds (id, install_token, bundle_id, name, version, build, size, sha256, notes, created_at, \
             has_icon, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
        .bind(&now)
        .bind(build.has_icon)
        .bind(&build.report)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// A build by its API id.
    pub async fn build_by_id(&self, id: &str) -> Result<BuildRow, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(DbError::NotFound)?;
        build_from_row(&row)
    }

    /// A build by its install token.
    pub async fn build_by_token(&self, token: &str) -> Result<BuildRow, DbError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {BUILD_COLUMNS} FROM builds WHERE install_token = ?1")))
                .bind(token)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(DbError::NotFound)?;
        build_from_row(&row)
    }

    /// Every build id, for reconciling storage at start-up.
    pub async fn build_ids(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT id FROM builds").fetch_all(&self.pool).await?;
        rows.iter().map(|row| row.try_get("id").map_err(DbError::from)).collect()
    }

    /// Deletes a build; removes its app when it was the last one.
    pub async fn delete_build(&self, id: &str) -> Result<BuildRow, DbError> {
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?1")))
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?
            .ok_or(DbError::NotFound)?;
        let build = build_from_row(&row)?;
        sqlx::query("DELETE FROM builds WHERE id = ?1").bind(id).execute(&mut *transaction).await?;
        sqlx::query("DELETE FROM apps WHERE bundle_id = ?1 AND NOT EXISTS (SELECT 1 FROM builds WHERE bundle_id = ?1)")
            .bind(&build.bundle_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(build)
    }

    /// Apps with their newest build, most recently updated first.
    pub async fn list_apps(&self) -> Result<Vec<AppRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BUILD_COLUMNS}, (SELECT COUNT(*) FROM builds counted WHERE counted.bundle_id = b.bundle_id) \
             AS build_count FROM builds b WHERE b.id = (SELECT newest.id FROM builds newest \
             WHERE newest.bundle_id = b.bundle_id ORDER BY newest.created_at DESC, newest.id DESC LIMIT 1) \
             ORDER BY b.created_at DESC, b.id DESC"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let latest = build_from_row(row)?;
                let count: i64 = row.try_get("build_count")?;
                Ok(AppRow {
                    bundle_id: latest.bundle_id.clone(),
                    name: latest.name.clone(),
                    build_count: u64::try_from(count).unwrap_or(0),
                    latest,
                })
            })
            .collect()
    }

    /// An app's builds, newest first, one page at a time.
    pub async fn list_builds(&self, bundle_id: &str, offset: u64, limit: u64) -> Result<(Vec<BuildRow>, u64), DbError> {
        let total: i64 = sqlx::query("SELECT COUNT(*) AS total FROM builds WHERE bundle_id = ?1")
            .bind(bundle_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("total")?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE bundle_id = ?1 ORDER BY created_at DESC, id DESC \
             LIMIT ?2 OFFSET ?3"
        )))
        .bind(bundle_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let builds = rows.iter().map(build_from_row).collect::<Result<_, _>>()?;
        Ok((builds, u64::try_from(total).unwrap_or(0)))
    }

    /// Stores a new token's hash.
    pub async fn insert_token(&self, id: &str, name: &str, token_hash: &str) -> Result<(), DbError> {
        sqlx::query("INSERT INTO tokens (id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(id)
            .bind(name)
            .bind(token_hash)
            .bind(timestamp(OffsetDateTime::now_utc()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether any token (even revoked) has this hash.
    pub async fn token_exists(&self, token_hash: &str) -> Result<bool, DbError> {
        Ok(sqlx::query("SELECT 1 FROM tokens WHERE token_hash = ?1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Every token, newest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM tokens ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    created_at: parse_time(row.try_get("created_at")?)?,
                    last_used_at: row.try_get::<Option<String>, _>("last_used_at")?.map(parse_time).transpose()?,
                    revoked_at: row.try_get::<Option<String>, _>("revoked_at")?.map(parse_time).transpose()?,
                })
            })
            .collect()
    }

    /// Revokes a token by id (or unique id prefix); `NotFound` if none matches.
    pub async fn revoke_token(&self, id: &str) -> Result<(), DbError> {
        let result = sqlx::query("UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
            .bind(id)
            .bind(timestamp(OffsetDateTime::now_utc()))
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 { Err(DbError::NotFound) } else { Ok(()) }
    }

    /// The id of the live token with this hash, recording its use.
    pub async fn live_token_id(&self, token_hash: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query(
            "UPDATE tokens SET last_used_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL RETURNING id",
        )
        .bind(token_hash)
        .bind(timestamp(OffsetDateTime::now_utc()))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| row.try_get("id")).transpose().map_err(DbError::from)
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
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?1").bind(&now).execute(&self.pool).await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, token_id, csrf_token, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(id_hash)
        .bind(token_id)
        .bind(csrf_token)
        .bind(&now)
        .bind(timestamp(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live session with this hash: not expired, and its token not revoked.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>, DbError> {
        let row = sqlx::query(
            "SELECT sessions.token_id, sessions.csrf_token, tokens.name FROM sessions \
             JOIN tokens ON tokens.id = sessions.token_id \
             WHERE sessions.id_hash = ?1 AND sessions.expires_at > ?2 AND tokens.revoked_at IS NULL",
        )
        .bind(id_hash)
        .bind(timestamp(OffsetDateTime::now_utc()))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SessionRow {
                token_id: row.try_get("token_id")?,
                token_name: row.try_get("name")?,
                csrf_token: row.try_get("csrf_token")?,
            })
        })
        .transpose()
    }

    /// Ends a session (signing out).
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?1").bind(id_hash).execute(&self.pool).await?;
        Ok(())
    }

    /// `PRAGMA integrity_check` passes.
    pub async fn integrity_ok(&self) -> Result<bool, DbError> {
        let verdict: String = sqlx::query("PRAGMA integrity_check").fetch_one(&self.pool).await?.try_get(0)?;
        Ok(verdict == "ok")
    }
}

fn build_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<BuildRow, DbError> {
    let size: i64 = row.try_get("size")?;
    Ok(BuildRow {
        id: row.try_get("id")?,
        install_token: row.try_get("install_token")?,
        bundle_id: row.try_get("bundle_id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        build: row.try_get("build")?,
        size: u64::try_from(size).unwrap_or(0),
        sha256: row.try_get("sha256")?,
        notes: row.try_get("notes")?,
        created_at: parse_time(row.try_get("created_at")?)?,
        has_icon: row.try_get("has_icon")?,
        report: row.try_get("report")?,
    })
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
