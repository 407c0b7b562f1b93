//! Retention: the rules (per app, for one channel or for all of them), the light view of every
//! build that planning needs, what the builds take per app and channel, and the one deletion
//! retention may do: a build that is not the newest of its channel.

use time::OffsetDateTime;

use super::{BuildRecord, BuildRow, Db, DbError, Pool, begin_write, parse_time, timestamp};

/// A retention rule as stored.
#[derive(sqlx::FromRow)]
struct RuleRecord {
    bundle_id: String,
    channel: String,
    keep_last: Option<i64>,
    max_age_days: Option<i64>,
    updated_at: String,
}

/// A retention rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    /// The app.
    pub bundle_id: String,
    /// The channel it governs; empty for every channel of the app without a rule of its own.
    pub channel: String,
    /// Builds kept per channel, newest first (at least 1).
    pub keep_last: Option<u32>,
    /// Builds older than this many days go (at least 1).
    pub max_age_days: Option<u32>,
    /// When it was last set.
    pub updated_at: OffsetDateTime,
}

/// What retention needs to know of a build.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct SummaryRecord {
    id: String,
    bundle_id: String,
    channel: String,
    version: Option<String>,
    build: Option<String>,
    size: i64,
    created_at: String,
}

/// A build, without its report and notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSummary {
    /// API id.
    pub id: String,
    /// The app.
    pub bundle_id: String,
    /// Its channel.
    pub channel: String,
    /// `CFBundleShortVersionString`.
    pub version: Option<String>,
    /// `CFBundleVersion`.
    pub build: Option<String>,
    /// Bytes of the `.ipa`.
    pub size: u64,
    /// Upload time.
    pub created_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct UsageRecord {
    bundle_id: String,
    channel: String,
    builds: i64,
    bytes: i64,
    oldest: String,
    newest: String,
}

/// What the builds of one channel of one app take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelUsage {
    /// The app.
    pub bundle_id: String,
    /// The channel.
    pub channel: String,
    /// How many builds.
    pub builds: u64,
    /// Their `.ipa` bytes.
    pub bytes: u64,
    /// The oldest upload.
    pub oldest: OffsetDateTime,
    /// The newest upload.
    pub newest: OffsetDateTime,
}

impl RuleRecord {
    fn into_rule(self) -> Result<RetentionRule, DbError> {
        let count = |value: Option<i64>| value.and_then(|value| u32::try_from(value).ok());
        Ok(RetentionRule {
            bundle_id: self.bundle_id,
            channel: self.channel,
            keep_last: count(self.keep_last),
            max_age_days: count(self.max_age_days),
            updated_at: parse_time(self.updated_at)?,
        })
    }
}

impl Db {
    /// Every retention rule, by app, the app-wide rule before the channels'.
    pub async fn retention_rules(&self) -> Result<Vec<RetentionRule>, DbError> {
        let records: Vec<RuleRecord> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT bundle_id, channel, keep_last, max_age_days, updated_at FROM retention_rules \
                 ORDER BY bundle_id, channel",
            )
            .fetch_all(pool)
            .await?
        });
        records.into_iter().map(RuleRecord::into_rule).collect()
    }

    /// Sets the rule of `rule.bundle_id` and `rule.channel`, replacing the one it had.
    pub async fn set_retention_rule(&self, rule: &RetentionRule) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO retention_rules (bundle_id, channel, keep_last, max_age_days, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (bundle_id, channel) DO UPDATE SET \
                 keep_last = excluded.keep_last, max_age_days = excluded.max_age_days, updated_at = excluded.updated_at",
            )
            .bind(&rule.bundle_id)
            .bind(&rule.channel)
            .bind(rule.keep_last.map(i64::from))
            .bind(rule.max_age_days.map(i64::from))
            .bind(timestamp(rule.updated_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Removes a rule; false when there was none.
    pub async fn delete_retention_rule(&self, bundle_id: &str, channel: &str) -> Result<bool, DbError> {
        let deleted = with_pool!(self, pool => {
            sqlx::query("DELETE FROM retention_rules WHERE bundle_id = $1 AND channel = $2")
                .bind(bundle_id)
                .bind(channel)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted == 1)
    }

    /// Every build, by app and channel, newest first within each.
    pub async fn build_summaries(&self) -> Result<Vec<BuildSummary>, DbError> {
        let records: Vec<SummaryRecord> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, bundle_id, channel, version, build, size, created_at FROM builds \
                 ORDER BY bundle_id, channel, created_at DESC, id DESC",
            )
            .fetch_all(pool)
            .await?
        });
        records
            .into_iter()
            .map(|record| {
                Ok(BuildSummary {
                    id: record.id,
                    bundle_id: record.bundle_id,
                    channel: record.channel,
                    version: record.version,
                    build: record.build,
                    size: u64::try_from(record.size).unwrap_or(0),
                    created_at: parse_time(record.created_at)?,
                })
            })
            .collect()
    }

    /// What the builds take, per app and channel.
    pub async fn channel_usage(&self) -> Result<Vec<ChannelUsage>, DbError> {
        // PostgreSQL sums BIGINTs as NUMERIC; the cast brings it back to what is read.
        let records: Vec<UsageRecord> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT bundle_id, channel, COUNT(*) AS builds, CAST(SUM(size) AS BIGINT) AS bytes, \
                 MIN(created_at) AS oldest, MAX(created_at) AS newest FROM builds \
                 GROUP BY bundle_id, channel ORDER BY bundle_id, channel",
            )
            .fetch_all(pool)
            .await?
        });
        records
            .into_iter()
            .map(|record| {
                Ok(ChannelUsage {
                    bundle_id: record.bundle_id,
                    channel: record.channel,
                    builds: u64::try_from(record.builds).unwrap_or(0),
                    bytes: u64::try_from(record.bytes).unwrap_or(0),
                    oldest: parse_time(record.oldest)?,
                    newest: parse_time(record.newest)?,
                })
            })
            .collect()
    }

    /// Deletes a build only if a newer build of the same app and channel exists at that moment,
    /// in one statement: whatever uploads or deletions run meanwhile, on any instance, this
    /// never removes the newest build of a channel. Returns the deleted build; `None` when it
    /// is the newest of its channel (or already gone).
    pub async fn delete_build_unless_latest(&self, id: &str) -> Result<Option<BuildRow>, DbError> {
        let deleted: Option<BuildRecord> = with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            let record: Option<BuildRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM builds WHERE id = $1",
                super::BUILD_COLUMNS
            )))
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?;
            let deleted = sqlx::query(
                "DELETE FROM builds WHERE id = $1 AND EXISTS (SELECT 1 FROM builds newer \
                 WHERE newer.bundle_id = builds.bundle_id AND newer.channel = builds.channel \
                 AND (newer.created_at > builds.created_at \
                 OR (newer.created_at = builds.created_at AND newer.id > builds.id)))",
            )
            .bind(id)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
            if deleted == 1 {
                // As `delete_build` does: the analytics go with the build, its share links stay.
                sqlx::query("DELETE FROM install_events WHERE build_id = $1").bind(id).execute(&mut *transaction).await?;
            }
            transaction.commit().await?;
            record.filter(|_| deleted == 1)
        });
        deleted.map(BuildRecord::into_row).transpose()
    }
}
