//! Named accounts, their web sessions, and failed sign-in attempts (the rate limiter's memory,
//! shared by every instance through the database).

use time::OffsetDateTime;

use super::{Db, DbError, Pool, begin_write, parse_time, timestamp};
use crate::accounts::Role;

/// An account as stored.
#[derive(sqlx::FromRow)]
struct AccountRecord {
    id: String,
    username: String,
    password_hash: String,
    role: String,
    created_at: String,
    password_changed_at: String,
    last_sign_in_at: Option<String>,
}

const ACCOUNT_COLUMNS: &str = "id, username, password_hash, role, created_at, password_changed_at, last_sign_in_at";

/// An account, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Random id (used in the accounts page's forms).
    pub id: String,
    /// As given at creation.
    pub username: String,
    /// What it may do.
    pub role: Role,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// When its password was last set.
    pub password_changed_at: OffsetDateTime,
    /// Last successful sign-in.
    pub last_sign_in_at: Option<OffsetDateTime>,
}

impl AccountRecord {
    fn into_row(self) -> Result<(AccountRow, String), DbError> {
        // An unknown role (written by a newer release) gets the lesser one.
        let role = Role::parse(&self.role).unwrap_or(Role::Uploader);
        let row = AccountRow {
            id: self.id,
            username: self.username,
            role,
            created_at: parse_time(self.created_at)?,
            password_changed_at: parse_time(self.password_changed_at)?,
            last_sign_in_at: self.last_sign_in_at.map(parse_time).transpose()?,
        };
        Ok((row, self.password_hash))
    }
}

impl Db {
    /// Stores a new account; false (and nothing written) when the username is taken, whatever
    /// its case.
    pub async fn insert_account(
        &self,
        id: &str,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<bool, DbError> {
        let now = timestamp(OffsetDateTime::now_utc());
        let affected = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO accounts (id, username, password_hash, role, created_at, password_changed_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(username)
            .bind(password_hash)
            .bind(role.as_str())
            .bind(&now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Every account, by username.
    pub async fn accounts(&self) -> Result<Vec<AccountRow>, DbError> {
        let records: Vec<AccountRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY lower(username)"
            )))
            .fetch_all(pool)
            .await?
        });
        records.into_iter().map(|record| record.into_row().map(|(row, _)| row)).collect()
    }

    /// The account with this username (any case), with its password hash.
    pub async fn account_by_username(&self, username: &str) -> Result<Option<(AccountRow, String)>, DbError> {
        let record: Option<AccountRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE lower(username) = lower($1)"
            )))
            .bind(username)
            .fetch_optional(pool)
            .await?
        });
        record.map(AccountRecord::into_row).transpose()
    }

    /// The account with this id, with its password hash.
    pub async fn account(&self, id: &str) -> Result<Option<(AccountRow, String)>, DbError> {
        let record: Option<AccountRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        record.map(AccountRecord::into_row).transpose()
    }

    /// Replaces an account's password hash and ends its sessions, but for `keep` (the session
    /// of the person changing their own password). False when there is no such account.
    pub async fn set_account_password(
        &self,
        id: &str,
        password_hash: &str,
        keep: Option<&str>,
    ) -> Result<bool, DbError> {
        with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            let affected = sqlx::query("UPDATE accounts SET password_hash = $2, password_changed_at = $3 WHERE id = $1")
                .bind(id)
                .bind(password_hash)
                .bind(timestamp(OffsetDateTime::now_utc()))
                .execute(&mut *transaction)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM account_sessions WHERE account_id = $1 AND id_hash <> $2")
                .bind(id)
                .bind(keep.unwrap_or(""))
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok(affected == 1)
        })
    }

    /// Changes an account's role (its sessions see the new role at their next request). False
    /// when there is no such account.
    pub async fn set_account_role(&self, id: &str, role: Role) -> Result<bool, DbError> {
        let affected = with_pool!(self, pool => {
            sqlx::query("UPDATE accounts SET role = $2 WHERE id = $1")
                .bind(id)
                .bind(role.as_str())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Deletes an account and ends its sessions. False when there is no such account.
    pub async fn delete_account(&self, id: &str) -> Result<bool, DbError> {
        with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            // The foreign key cascades too; deleting first does not depend on it.
            sqlx::query("DELETE FROM account_sessions WHERE account_id = $1").bind(id).execute(&mut *transaction).await?;
            let affected =
                sqlx::query("DELETE FROM accounts WHERE id = $1").bind(id).execute(&mut *transaction).await?.rows_affected();
            transaction.commit().await?;
            Ok(affected == 1)
        })
    }

    /// Opens a web session for an account until `expires_at`, records the sign-in, and drops
    /// expired sessions.
    pub async fn insert_account_session(
        &self,
        id_hash: &str,
        account_id: &str,
        csrf_token: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), DbError> {
        let now = timestamp(OffsetDateTime::now_utc());
        with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            sqlx::query("DELETE FROM account_sessions WHERE expires_at <= $1").bind(&now).execute(&mut *transaction).await?;
            sqlx::query(
                "INSERT INTO account_sessions (id_hash, account_id, csrf_token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id_hash)
            .bind(account_id)
            .bind(csrf_token)
            .bind(&now)
            .bind(timestamp(expires_at))
            .execute(&mut *transaction)
            .await?;
            sqlx::query("UPDATE accounts SET last_sign_in_at = $2 WHERE id = $1")
                .bind(account_id)
                .bind(&now)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
        });
        Ok(())
    }

    /// Records a failed attempt under `key_hash`, and forgets attempts made before `prune_before`.
    pub async fn record_auth_failure(
        &self,
        key_hash: &str,
        at: OffsetDateTime,
        prune_before: OffsetDateTime,
    ) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO auth_failures (key, at) VALUES ($1, $2)")
                .bind(key_hash)
                .bind(timestamp(at))
                .execute(pool)
                .await?;
            sqlx::query("DELETE FROM auth_failures WHERE at < $1").bind(timestamp(prune_before)).execute(pool).await?;
        });
        Ok(())
    }

    /// The times of the newest `limit` failures under `key_hash` since `since`, newest first.
    pub async fn recent_auth_failures(
        &self,
        key_hash: &str,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OffsetDateTime>, DbError> {
        let times: Vec<String> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT at FROM auth_failures WHERE key = $1 AND at > $2 ORDER BY at DESC LIMIT $3")
                .bind(key_hash)
                .bind(timestamp(since))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        times.into_iter().map(parse_time).collect()
    }

    /// Forgets the failures under `key_hash`.
    pub async fn clear_auth_failures(&self, key_hash: &str) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM auth_failures WHERE key = $1").bind(key_hash).execute(pool).await?;
        });
        Ok(())
    }
}
