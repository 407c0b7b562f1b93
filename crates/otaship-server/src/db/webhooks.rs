//! Webhooks and their deliveries: the endpoints uploaders registered, and every event waiting to
//! be sent, being sent, sent or given up. Deliveries are claimed with a lease (the claim pushes
//! `next_attempt_at` forward inside a write transaction), so that instances sharing one
//! PostgreSQL database never send the same attempt twice, and one that dies mid-send only delays
//! a delivery until its lease lapses.

use time::OffsetDateTime;

use super::{BUILD_COLUMNS, BuildRecord, BuildRow, Db, DbError, Pool, begin_write, parse_time, timestamp};

/// A webhook as stored.
#[derive(sqlx::FromRow)]
struct WebhookRecord {
    id: String,
    url: String,
    kind: String,
    secret: String,
    events: String,
    bundle_id: Option<String>,
    expiry_days: i64,
    enabled: bool,
    created_at: String,
}

const WEBHOOK_COLUMNS: &str = "id, url, kind, secret, events, bundle_id, expiry_days, enabled, created_at";

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    /// Its id in the API.
    pub id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// `json` or `slack`.
    pub kind: String,
    /// The HMAC key of the signature header.
    pub secret: String,
    /// The events it receives (`build.uploaded`, `profile.expiring`).
    pub events: Vec<String>,
    /// Only this app's events, when set.
    pub bundle_id: Option<String>,
    /// `profile.expiring` fires this many days before a profile expires.
    pub expiry_days: u32,
    /// Whether it receives new events.
    pub enabled: bool,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

impl WebhookRow {
    /// Whether it wants `event` of the app `bundle_id` now.
    pub fn wants(&self, event: &str, bundle_id: &str) -> bool {
        self.enabled
            && self.events.iter().any(|wanted| wanted == event)
            && self.bundle_id.as_deref().is_none_or(|only| only == bundle_id)
    }
}

impl WebhookRecord {
    fn into_row(self) -> Result<WebhookRow, DbError> {
        Ok(WebhookRow {
            id: self.id,
            url: self.url,
            kind: self.kind,
            secret: self.secret,
            events: self.events.split(',').filter(|event| !event.is_empty()).map(str::to_owned).collect(),
            bundle_id: self.bundle_id,
            expiry_days: u32::try_from(self.expiry_days).unwrap_or(0),
            enabled: self.enabled,
            created_at: parse_time(self.created_at)?,
        })
    }
}

/// A delivery as stored, with its webhook's URL.
#[derive(sqlx::FromRow)]
struct DeliveryRecord {
    id: String,
    webhook_id: String,
    webhook_url: String,
    event: String,
    payload: String,
    state: String,
    attempts: i64,
    next_attempt_at: String,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: String,
    delivered_at: Option<String>,
}

/// One delivery of one event to one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// Its id (the `X-Otaship-Delivery` header).
    pub id: String,
    /// The webhook.
    pub webhook_id: String,
    /// The webhook's URL.
    pub webhook_url: String,
    /// `build.uploaded`, `profile.expiring` or `ping`.
    pub event: String,
    /// The event as JSON.
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made (or under way).
    pub attempts: u32,
    /// When a pending delivery is next tried.
    pub next_attempt_at: OffsetDateTime,
    /// The HTTP status of the last attempt, when the endpoint answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: OffsetDateTime,
    /// When an attempt succeeded.
    pub delivered_at: Option<OffsetDateTime>,
}

impl DeliveryRecord {
    fn into_row(self) -> Result<DeliveryRow, DbError> {
        Ok(DeliveryRow {
            id: self.id,
            webhook_id: self.webhook_id,
            webhook_url: self.webhook_url,
            event: self.event,
            payload: self.payload,
            state: self.state,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            next_attempt_at: parse_time(self.next_attempt_at)?,
            last_status: self.last_status.and_then(|status| u16::try_from(status).ok()),
            last_error: self.last_error,
            created_at: parse_time(self.created_at)?,
            delivered_at: self.delivered_at.map(parse_time).transpose()?,
        })
    }
}

const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, w.url AS webhook_url, d.event, d.payload, d.state, d.attempts, \
     d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.delivered_at";

/// An event to deliver to one webhook.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// Its id.
    pub id: &'a str,
    /// The webhook.
    pub webhook_id: &'a str,
    /// The event's name.
    pub event: &'a str,
    /// At most one delivery per webhook has this key.
    pub dedupe_key: &'a str,
    /// The event as JSON.
    pub payload: &'a str,
}

/// A delivery an instance has claimed: what it needs to send one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// Its id.
    pub id: String,
    /// The event's name.
    pub event: String,
    /// The event as JSON.
    pub payload: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Where to send it.
    pub url: String,
    /// `json` or `slack`.
    pub kind: String,
    /// The signing key.
    pub secret: String,
}

#[derive(sqlx::FromRow)]
struct ClaimRecord {
    id: String,
    event: String,
    payload: String,
    attempts: i64,
    url: String,
    kind: String,
    secret: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered 2xx.
    Delivered {
        /// Its status.
        status: u16,
    },
    /// It failed; try again at `next_attempt_at`.
    Retry {
        /// The status, when the endpoint answered.
        status: Option<u16>,
        /// Why it failed.
        error: String,
        /// When to try again.
        next_attempt_at: OffsetDateTime,
    },
    /// It failed for the last time.
    GaveUp {
        /// The status, when the endpoint answered.
        status: Option<u16>,
        /// Why it failed.
        error: String,
    },
}

impl Db {
    /// Registers a webhook.
    pub async fn insert_webhook(&self, webhook: &WebhookRow) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO webhooks (id, url, kind, secret, events, bundle_id, expiry_days, enabled, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&webhook.id)
            .bind(&webhook.url)
            .bind(&webhook.kind)
            .bind(&webhook.secret)
            .bind(webhook.events.join(","))
            .bind(&webhook.bundle_id)
            .bind(i64::from(webhook.expiry_days))
            .bind(webhook.enabled)
            .bind(timestamp(webhook.created_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Every webhook, oldest first.
    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, DbError> {
        let records: Vec<WebhookRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id"
            )))
            .fetch_all(pool)
            .await?
        });
        records.into_iter().map(WebhookRecord::into_row).collect()
    }

    /// One webhook.
    pub async fn webhook(&self, id: &str) -> Result<Option<WebhookRow>, DbError> {
        let record: Option<WebhookRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        record.map(WebhookRecord::into_row).transpose()
    }

    /// Pauses or resumes a webhook; false when there is no such webhook.
    pub async fn set_webhook_enabled(&self, id: &str, enabled: bool) -> Result<bool, DbError> {
        let changed = with_pool!(self, pool => {
            sqlx::query("UPDATE webhooks SET enabled = $2 WHERE id = $1")
                .bind(id)
                .bind(enabled)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Forgets a webhook and its deliveries; false when there is no such webhook.
    pub async fn delete_webhook(&self, id: &str) -> Result<bool, DbError> {
        let deleted = with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                .bind(id)
                .execute(&mut *transaction)
                .await?;
            let deleted =
                sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(&mut *transaction).await?.rows_affected();
            transaction.commit().await?;
            deleted
        });
        Ok(deleted == 1)
    }

    /// Records an event to deliver, due now, unless the webhook already has a delivery with the
    /// same dedupe key. True when it was recorded.
    pub async fn enqueue_delivery(&self, delivery: &NewDelivery<'_>) -> Result<bool, DbError> {
        let now = timestamp(OffsetDateTime::now_utc());
        let inserted = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, webhook_id, event, dedupe_key, payload, state, attempts, \
                 next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) \
                 ON CONFLICT (webhook_id, dedupe_key) DO NOTHING",
            )
            .bind(delivery.id)
            .bind(delivery.webhook_id)
            .bind(delivery.event)
            .bind(delivery.dedupe_key)
            .bind(delivery.payload)
            .bind(&now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Claims up to `limit` pending deliveries that are due: each one's attempt count goes up
    /// and its next attempt moves to `lease_until`, so that no other instance sends it before
    /// this one records how the attempt went (or dies, and the lease lapses).
    pub async fn claim_due_deliveries(
        &self,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, DbError> {
        let now = timestamp(OffsetDateTime::now_utc());
        let records: Vec<ClaimRecord> = with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            let records: Vec<ClaimRecord> = sqlx::query_as(
                "SELECT d.id, d.event, d.payload, d.attempts, w.url, w.kind, w.secret \
                 FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE d.state = 'pending' AND d.next_attempt_at <= $1 \
                 ORDER BY d.next_attempt_at, d.id LIMIT $2",
            )
            .bind(&now)
            .bind(i64::from(limit))
            .fetch_all(&mut *transaction)
            .await?;
            for record in &records {
                sqlx::query("UPDATE webhook_deliveries SET attempts = $2, next_attempt_at = $3 WHERE id = $1")
                    .bind(&record.id)
                    .bind(record.attempts + 1)
                    .bind(timestamp(lease_until))
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
            records
        });
        Ok(records
            .into_iter()
            .map(|record| ClaimedDelivery {
                id: record.id,
                event: record.event,
                payload: record.payload,
                attempt: u32::try_from(record.attempts + 1).unwrap_or(u32::MAX),
                url: record.url,
                kind: record.kind,
                secret: record.secret,
            })
            .collect())
    }

    /// Records how attempt `attempt` of a claimed delivery went. False when the delivery is no
    /// longer that attempt (its lease lapsed and another instance took it, or it was deleted).
    pub async fn record_attempt(&self, id: &str, attempt: u32, outcome: &AttemptOutcome) -> Result<bool, DbError> {
        let now = OffsetDateTime::now_utc();
        let (state, status, error, next_attempt_at, delivered_at) = match outcome {
            AttemptOutcome::Delivered { status } => ("delivered", Some(*status), None, now, Some(timestamp(now))),
            AttemptOutcome::Retry { status, error, next_attempt_at } => {
                ("pending", *status, Some(error.as_str()), *next_attempt_at, None)
            }
            AttemptOutcome::GaveUp { status, error } => ("failed", *status, Some(error.as_str()), now, None),
        };
        let changed = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = $3, last_status = $4, last_error = $5, next_attempt_at = $6, \
                 delivered_at = $7 WHERE id = $1 AND attempts = $2 AND state = 'pending'",
            )
            .bind(id)
            .bind(i64::from(attempt))
            .bind(state)
            .bind(status.map(i64::from))
            .bind(error)
            .bind(timestamp(next_attempt_at))
            .bind(delivered_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    /// When the earliest pending delivery is due (possibly in the past), if any is pending.
    pub async fn next_delivery_due(&self) -> Result<Option<OffsetDateTime>, DbError> {
        let earliest: Option<String> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'")
                .fetch_one(pool)
                .await?
        });
        earliest.map(parse_time).transpose()
    }

    /// The newest `limit` deliveries, of one webhook or of all, newest first.
    pub async fn deliveries(&self, webhook_id: Option<&str>, limit: u32) -> Result<Vec<DeliveryRow>, DbError> {
        let records: Vec<DeliveryRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE ($1 IS NULL OR d.webhook_id = $1) ORDER BY d.created_at DESC, d.id DESC LIMIT $2"
            )))
            .bind(webhook_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        records.into_iter().map(DeliveryRecord::into_row).collect()
    }

    /// One delivery.
    pub async fn delivery(&self, id: &str) -> Result<Option<DeliveryRow>, DbError> {
        let record: Option<DeliveryRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE d.id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        record.map(DeliveryRecord::into_row).transpose()
    }

    /// The newest build of every app on every channel: what testers install, so what an
    /// expiring profile concerns.
    pub async fn newest_build_per_channel(&self) -> Result<Vec<BuildRow>, DbError> {
        let records: Vec<BuildRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS} FROM builds b WHERE b.id = (SELECT newest.id FROM builds newest \
                 WHERE newest.bundle_id = b.bundle_id AND newest.channel = b.channel \
                 ORDER BY newest.created_at DESC, newest.id DESC LIMIT 1) ORDER BY b.bundle_id, b.channel"
            )))
            .fetch_all(pool)
            .await?
        });
        records.into_iter().map(BuildRecord::into_row).collect()
    }
}
