//! The metadata database: apps, builds and API tokens, on SQLite.
//!
//! Methods are use cases, not generic CRUD, so that a PostgreSQL backend (a later issue) can
//! implement the same set. Timestamps are RFC 3339 UTC text; ids are random hex.

use std::collections::BTreeMap;
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

const BUILD_COLUMNS: &str = "id, install_token, bundle_id, name, version, build, size, sha256, notes, channel, \
     metadata, created_at, has_icon, report";

const UPLOAD_COLUMNS: &str =
    "id, file_name, size, sha256, part_size, notes, channel, metadata, state, created_at, expires_at";

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

    /// A transaction that takes SQLite's write lock at once. A deferred transaction that reads
    /// and then writes fails with "database is locked" (without waiting) when another connection
    /// wrote in between; an immediate one waits its turn (the busy timeout) instead.
    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, DbError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Records a build (and its app) in one transaction, unless a build with the same SHA-256
    /// exists: then that build is returned and nothing is written.
    pub async fn insert_build(&self, build: &BuildRow) -> Result<Recorded, DbError> {
        let mut transaction = self.write_transaction().await?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE sha256 = ?1 ORDER BY created_at LIMIT 1"
        )))
        .bind(&build.sha256)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(row) = existing {
            return Ok(Recorded::Existing(Box::new(build_from_row(&row)?)));
        }
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
            "INSERT INTO builds (id, install_token, bundle_id, name, version, build, size, sha256, notes, channel, \
             metadata, created_at, has_icon, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
    }

    /// The build whose file has this SHA-256, if any.
    pub async fn build_by_sha256(&self, sha256: &str) -> Result<Option<BuildRow>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE sha256 = ?1 ORDER BY created_at LIMIT 1"
        )))
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(build_from_row).transpose()
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
        let mut transaction = self.write_transaction().await?;
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
        let Some(row) = sqlx::query("SELECT id, last_used_at FROM tokens WHERE token_hash = ?1 AND revoked_at IS NULL")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let id: String = row.try_get("id")?;
        let last_used: Option<String> = row.try_get("last_used_at")?;
        // A push sends hundreds of requests a minute; the time of use is kept to the minute, so
        // that requests do not all queue for SQLite's single writer.
        let now = OffsetDateTime::now_utc();
        let stale = last_used.map(parse_time).transpose()?.is_none_or(|at| now - at > time::Duration::MINUTE);
        if stale {
            sqlx::query("UPDATE tokens SET last_used_at = ?2 WHERE id = ?1")
                .bind(&id)
                .bind(timestamp(now))
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(id))
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

    /// The open, unexpired upload of a file with this content, to resume it.
    pub async fn open_upload_for(&self, sha256: &str, size: u64) -> Result<Option<UploadRow>, DbError> {
        let id: Option<String> = sqlx::query(
            "SELECT id FROM uploads WHERE sha256 = ?1 AND size = ?2 AND state = 'open' AND expires_at > ?3 \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(sha256)
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(timestamp(OffsetDateTime::now_utc()))
        .fetch_optional(&self.pool)
        .await?
        .map(|row| row.try_get("id"))
        .transpose()?;
        match id {
            Some(id) => self.upload(&id).await,
            None => Ok(None),
        }
    }

    /// Records a new upload.
    pub async fn insert_upload(&self, upload: &UploadRow) -> Result<(), DbError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?10)"
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces what the build will be recorded with (a resumed push may bring new notes) and
    /// the expiry.
    pub async fn update_upload(&self, upload: &UploadRow) -> Result<(), DbError> {
        sqlx::query("UPDATE uploads SET notes = ?2, channel = ?3, metadata = ?4, expires_at = ?5 WHERE id = ?1")
            .bind(&upload.id)
            .bind(&upload.notes)
            .bind(&upload.channel)
            .bind(metadata_json(&upload.metadata))
            .bind(timestamp(upload.expires_at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An unexpired upload with the parts received so far.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>, DbError> {
        // One read transaction: a completion deleting the upload in between must not make it
        // look as if it had no parts.
        let mut transaction = self.pool.begin().await?;
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1 AND expires_at > ?2"
        )))
        .bind(id)
        .bind(timestamp(OffsetDateTime::now_utc()))
        .fetch_optional(&mut *transaction)
        .await?
        else {
            return Ok(None);
        };
        let received = sqlx::query("SELECT number FROM upload_parts WHERE upload_id = ?1 ORDER BY number")
            .bind(id)
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(|part| part.try_get::<i64, _>("number").map(|number| u32::try_from(number).unwrap_or(0)))
            .collect::<Result<Vec<_>, _>>()?;
        upload_from_row(&row, received).map(Some)
    }

    /// Records a checked part and pushes the upload's expiry to `expires_at`. False when the
    /// upload is no longer open (completed, completing, or gone).
    pub async fn record_part(
        &self,
        upload_id: &str,
        number: u32,
        size: u64,
        sha256: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, DbError> {
        let mut transaction = self.write_transaction().await?;
        let now = OffsetDateTime::now_utc();
        let open =
            sqlx::query("UPDATE uploads SET expires_at = ?2 WHERE id = ?1 AND state = 'open' AND expires_at > ?3")
                .bind(upload_id)
                .bind(timestamp(expires_at))
                .bind(timestamp(now))
                .execute(&mut *transaction)
                .await?
                .rows_affected()
                == 1;
        if !open {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO upload_parts (upload_id, number, size, sha256, received_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (upload_id, number) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, \
             received_at = excluded.received_at",
        )
        .bind(upload_id)
        .bind(i64::from(number))
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(sha256)
        .bind(timestamp(now))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Forgets part `number` before it is written again, so that a resend that fails half-way
    /// (after overwriting the earlier bytes) is not counted. False when the upload is not open.
    pub async fn forget_part(&self, upload_id: &str, number: u32) -> Result<bool, DbError> {
        let mut transaction = self.write_transaction().await?;
        let open = sqlx::query("SELECT 1 FROM uploads WHERE id = ?1 AND state = 'open'")
            .bind(upload_id)
            .fetch_optional(&mut *transaction)
            .await?
            .is_some();
        if open {
            sqlx::query("DELETE FROM upload_parts WHERE upload_id = ?1 AND number = ?2")
                .bind(upload_id)
                .bind(i64::from(number))
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(open)
    }

    /// The SHA-256 recorded for part `number`, if it was received.
    pub async fn part_sha256(&self, upload_id: &str, number: u32) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT sha256 FROM upload_parts WHERE upload_id = ?1 AND number = ?2")
            .bind(upload_id)
            .bind(i64::from(number))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| row.try_get("sha256")).transpose().map_err(DbError::from)
    }

    /// Moves an open upload to `completing`, so that exactly one request assembles it.
    pub async fn begin_completing(&self, upload_id: &str) -> Result<bool, DbError> {
        let result = sqlx::query("UPDATE uploads SET state = 'completing' WHERE id = ?1 AND state = 'open'")
            .bind(upload_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Forgets an upload and its parts.
    pub async fn delete_upload(&self, upload_id: &str) -> Result<bool, DbError> {
        let result = sqlx::query("DELETE FROM uploads WHERE id = ?1").bind(upload_id).execute(&self.pool).await?;
        Ok(result.rows_affected() == 1)
    }

    /// Ids of uploads past their expiry.
    pub async fn expired_upload_ids(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT id FROM uploads WHERE expires_at <= ?1")
            .bind(timestamp(OffsetDateTime::now_utc()))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| row.try_get("id").map_err(DbError::from)).collect()
    }

    /// Ids of uploads in the middle of completing (at start-up: cut off by a crash).
    pub async fn completing_upload_ids(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT id FROM uploads WHERE state = 'completing'").fetch_all(&self.pool).await?;
        rows.iter().map(|row| row.try_get("id").map_err(DbError::from)).collect()
    }

    /// Ids of every upload (expired or not), for reconciling files at start-up.
    pub async fn upload_ids(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT id FROM uploads").fetch_all(&self.pool).await?;
        rows.iter().map(|row| row.try_get("id").map_err(DbError::from)).collect()
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
        channel: row.try_get("channel")?,
        metadata: parse_metadata(row.try_get("metadata")?)?,
        created_at: parse_time(row.try_get("created_at")?)?,
        has_icon: row.try_get("has_icon")?,
        report: row.try_get("report")?,
    })
}

fn upload_from_row(row: &sqlx::sqlite::SqliteRow, received: Vec<u32>) -> Result<UploadRow, DbError> {
    let size: i64 = row.try_get("size")?;
    let part_size: i64 = row.try_get("part_size")?;
    Ok(UploadRow {
        id: row.try_get("id")?,
        file_name: row.try_get("file_name")?,
        size: u64::try_from(size).unwrap_or(0),
        sha256: row.try_get("sha256")?,
        part_size: u64::try_from(part_size).unwrap_or(1),
        notes: row.try_get("notes")?,
        channel: row.try_get("channel")?,
        metadata: parse_metadata(row.try_get("metadata")?)?,
        created_at: parse_time(row.try_get("created_at")?)?,
        expires_at: parse_time(row.try_get("expires_at")?)?,
        received,
    })
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
