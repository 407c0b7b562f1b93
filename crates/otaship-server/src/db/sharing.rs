//! Share links, the stable page of each (app, channel), and install analytics: what a link
//! allows (password, expiry, install limit), which build a channel serves now, and what
//! testers did with a build (page views, manifest fetches, downloads started and completed).

use time::OffsetDateTime;

use super::{BUILD_COLUMNS, BuildRecord, BuildRow, Db, DbError, Pool, parse_time, timestamp};

/// A share link as stored.
#[derive(sqlx::FromRow)]
struct LinkRecord {
    id: String,
    token: String,
    build_id: Option<String>,
    bundle_id: String,
    channel: Option<String>,
    label: Option<String>,
    password_hash: Option<String>,
    expires_at: Option<String>,
    max_installs: Option<i64>,
    installs: i64,
    created_at: String,
    revoked_at: Option<String>,
}

const LINK_COLUMNS: &str = "id, token, build_id, bundle_id, channel, label, password_hash, expires_at, max_installs, \
                            installs, created_at, revoked_at";

/// A share link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// Its id in the API.
    pub id: String,
    /// The path component of its page, `/s/{token}`.
    pub token: String,
    /// The build it serves; `None` for a channel link.
    pub build_id: Option<String>,
    /// The app.
    pub bundle_id: String,
    /// The channel whose newest build it serves (channel links only).
    pub channel: Option<String>,
    /// What the uploader called it ("QA team", "Client review").
    pub label: Option<String>,
    /// argon2id hash of its password, when it has one.
    pub password_hash: Option<String>,
    /// When it stops working.
    pub expires_at: Option<OffsetDateTime>,
    /// How many installs it allows.
    pub max_installs: Option<u64>,
    /// Installs started through it (manifest fetches).
    pub installs: u64,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
}

impl LinkRecord {
    fn into_row(self) -> Result<LinkRow, DbError> {
        Ok(LinkRow {
            id: self.id,
            token: self.token,
            build_id: self.build_id,
            bundle_id: self.bundle_id,
            channel: self.channel,
            label: self.label,
            password_hash: self.password_hash,
            expires_at: self.expires_at.map(parse_time).transpose()?,
            max_installs: self.max_installs.map(|max| u64::try_from(max).unwrap_or(0)),
            installs: u64::try_from(self.installs).unwrap_or(0),
            created_at: parse_time(self.created_at)?,
            revoked_at: self.revoked_at.map(parse_time).transpose()?,
        })
    }
}

/// Which links to list.
#[derive(Debug, Clone, Default)]
pub struct LinkFilter {
    /// Links to this build only.
    pub build_id: Option<String>,
    /// Links of this app only (build and channel links).
    pub bundle_id: Option<String>,
}

/// A channel of an app, with its newest build.
#[derive(Debug, Clone)]
pub struct ChannelRow {
    /// Its name.
    pub name: String,
    /// Builds in it.
    pub build_count: u64,
    /// The newest one.
    pub latest: BuildRow,
}

/// Something a tester (or the installer) did with a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The install page was shown.
    PageView,
    /// The installer fetched the manifest.
    Manifest,
    /// A download of the `.ipa` began (its first byte was asked for).
    DownloadStarted,
    /// A response served the `.ipa`'s last byte, and every byte it promised.
    DownloadCompleted,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::PageView => "page-view",
            EventKind::Manifest => "manifest",
            EventKind::DownloadStarted => "download-started",
            EventKind::DownloadCompleted => "download-completed",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event {
    /// The build.
    pub build_id: String,
    /// The share link it came through, if any.
    pub link_id: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// Model identifier (`iPhone15,2`) or kind of device (`iPhone`), when known.
    pub device_model: Option<String>,
    /// iOS version, when known.
    pub os_version: Option<String>,
}

/// Counts of events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct EventCounts {
    /// Install pages shown.
    pub page_views: u64,
    /// Manifests fetched by the iOS installer (install attempts).
    pub manifest_fetches: u64,
    /// `.ipa` downloads started.
    pub downloads_started: u64,
    /// `.ipa` downloads that received every byte.
    pub downloads_completed: u64,
}

impl EventCounts {
    fn from_rows(rows: Vec<(String, i64)>) -> EventCounts {
        let mut counts = EventCounts::default();
        for (kind, count) in rows {
            let count = u64::try_from(count).unwrap_or(0);
            match kind.as_str() {
                "page-view" => counts.page_views = count,
                "manifest" => counts.manifest_fetches = count,
                "download-started" => counts.downloads_started = count,
                "download-completed" => counts.downloads_completed = count,
                _ => {}
            }
        }
        counts
    }
}

/// Installs (manifest fetches) by device model and iOS version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCount {
    /// Model identifier, or `None` when the installer did not say.
    pub device_model: Option<String>,
    /// iOS version, or `None`.
    pub os_version: Option<String>,
    /// Manifest fetches.
    pub count: u64,
}

impl Db {
    /// Stores a new share link.
    pub async fn insert_link(&self, link: &LinkRow) -> Result<(), DbError> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO share_links (id, token, build_id, bundle_id, channel, label, password_hash, expires_at, \
                 max_installs, installs, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10)",
            )
            .bind(&link.id)
            .bind(&link.token)
            .bind(&link.build_id)
            .bind(&link.bundle_id)
            .bind(&link.channel)
            .bind(&link.label)
            .bind(&link.password_hash)
            .bind(link.expires_at.map(timestamp))
            .bind(link.max_installs.map(|max| i64::try_from(max).unwrap_or(i64::MAX)))
            .bind(timestamp(link.created_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The link whose page is `/s/{token}`.
    pub async fn link_by_token(&self, token: &str) -> Result<Option<LinkRow>, DbError> {
        self.link_where("token", token).await
    }

    /// A link by its API id.
    pub async fn link_by_id(&self, id: &str) -> Result<Option<LinkRow>, DbError> {
        self.link_where("id", id).await
    }

    async fn link_where(&self, column: &'static str, value: &str) -> Result<Option<LinkRow>, DbError> {
        let record: Option<LinkRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {LINK_COLUMNS} FROM share_links WHERE {column} = $1")))
                .bind(value)
                .fetch_optional(pool)
                .await?
        });
        record.map(LinkRecord::into_row).transpose()
    }

    /// Links, newest first.
    pub async fn links(&self, filter: &LinkFilter) -> Result<Vec<LinkRow>, DbError> {
        let records: Vec<LinkRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {LINK_COLUMNS} FROM share_links WHERE ($1 IS NULL OR build_id = $1) \
                 AND ($2 IS NULL OR bundle_id = $2) ORDER BY created_at DESC, id"
            )))
            .bind(&filter.build_id)
            .bind(&filter.bundle_id)
            .fetch_all(pool)
            .await?
        });
        records.into_iter().map(LinkRecord::into_row).collect()
    }

    /// Revokes a link (a revoked link stays revoked at its first time); false when there is no
    /// such link.
    pub async fn revoke_link(&self, id: &str) -> Result<bool, DbError> {
        let found = with_pool!(self, pool => {
            sqlx::query("UPDATE share_links SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(id)
                .bind(timestamp(OffsetDateTime::now_utc()))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(found == 1)
    }

    /// Counts an install through a link, unless its limit is reached: false then. One statement,
    /// so that concurrent installs on several instances never exceed the limit.
    pub async fn count_link_install(&self, id: &str) -> Result<bool, DbError> {
        let counted = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE share_links SET installs = installs + 1 \
                 WHERE id = $1 AND (max_installs IS NULL OR installs < max_installs)",
            )
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(counted == 1)
    }

    /// The token of the stable page of an (app, channel), made the first time it is asked for.
    /// Pages ask for it on every view: once it exists, answering takes no write (a view must
    /// work on a full disk).
    pub async fn channel_page_token(&self, bundle_id: &str, channel: &str, new_token: &str) -> Result<String, DbError> {
        with_pool!(self, pool => {
            let existing: Option<String> =
                sqlx::query_scalar("SELECT token FROM channel_pages WHERE bundle_id = $1 AND channel = $2")
                    .bind(bundle_id)
                    .bind(channel)
                    .fetch_optional(pool)
                    .await?;
            if let Some(token) = existing {
                return Ok(token);
            }
            sqlx::query(
                "INSERT INTO channel_pages (bundle_id, channel, token, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (bundle_id, channel) DO NOTHING",
            )
            .bind(bundle_id)
            .bind(channel)
            .bind(new_token)
            .bind(timestamp(OffsetDateTime::now_utc()))
            .execute(pool)
            .await?;
            Ok(sqlx::query_scalar("SELECT token FROM channel_pages WHERE bundle_id = $1 AND channel = $2")
                .bind(bundle_id)
                .bind(channel)
                .fetch_one(pool)
                .await?)
        })
    }

    /// The (app, channel) of a stable channel page.
    pub async fn channel_of_page(&self, token: &str) -> Result<Option<(String, String)>, DbError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as("SELECT bundle_id, channel FROM channel_pages WHERE token = $1")
                .bind(token)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The newest build of an app's channel.
    pub async fn latest_in_channel(&self, bundle_id: &str, channel: &str) -> Result<Option<BuildRow>, DbError> {
        let record: Option<BuildRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE bundle_id = $1 AND channel = $2 \
                 ORDER BY created_at DESC, id DESC LIMIT 1"
            )))
            .bind(bundle_id)
            .bind(channel)
            .fetch_optional(pool)
            .await?
        });
        record.map(BuildRecord::into_row).transpose()
    }

    /// An app's channels, each with its newest build, by name.
    pub async fn channels(&self, bundle_id: &str) -> Result<Vec<ChannelRow>, DbError> {
        let counts: Vec<(String, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT channel, COUNT(*) FROM builds WHERE bundle_id = $1 GROUP BY channel ORDER BY channel",
            )
            .bind(bundle_id)
            .fetch_all(pool)
            .await?
        });
        let mut channels = Vec::with_capacity(counts.len());
        for (name, count) in counts {
            // A channel emptied between the two reads is simply not listed.
            if let Some(latest) = self.latest_in_channel(bundle_id, &name).await? {
                channels.push(ChannelRow { name, build_count: u64::try_from(count).unwrap_or(0), latest });
            }
        }
        Ok(channels)
    }

    /// Records events in one transaction, each at the time it happened: one commit (one
    /// `fsync`) for a whole batch instead of one per page view. An event whose build was deleted
    /// meanwhile is dropped, as the build's other events were.
    pub async fn record_events(&self, events: &[(Event, OffsetDateTime)]) -> Result<(), DbError> {
        with_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            for (event, at) in events {
                sqlx::query(
                    "INSERT INTO install_events (id, build_id, link_id, kind, at, device_model, os_version) \
                     SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM builds WHERE id = $2)",
                )
                .bind(crate::tokens::random_hex(16))
                .bind(&event.build_id)
                .bind(&event.link_id)
                .bind(event.kind.as_str())
                .bind(timestamp(*at))
                .bind(&event.device_model)
                .bind(&event.os_version)
                .execute(&mut *transaction)
                .await?;
            }
            transaction.commit().await?;
        });
        Ok(())
    }

    /// Event counts of a build (through any page or link).
    pub async fn build_event_counts(&self, build_id: &str) -> Result<EventCounts, DbError> {
        let rows: Vec<(String, i64)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT kind, COUNT(*) FROM install_events WHERE build_id = $1 GROUP BY kind")
                .bind(build_id)
                .fetch_all(pool)
                .await?
        });
        Ok(EventCounts::from_rows(rows))
    }

    /// Event counts of a share link.
    pub async fn link_event_counts(&self, link_id: &str) -> Result<EventCounts, DbError> {
        let rows: Vec<(String, i64)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT kind, COUNT(*) FROM install_events WHERE link_id = $1 GROUP BY kind")
                .bind(link_id)
                .fetch_all(pool)
                .await?
        });
        Ok(EventCounts::from_rows(rows))
    }

    /// A build's manifest fetches by device model and iOS version, most first.
    pub async fn build_install_devices(&self, build_id: &str) -> Result<Vec<DeviceCount>, DbError> {
        let rows: Vec<(Option<String>, Option<String>, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT device_model, os_version, COUNT(*) AS installs FROM install_events \
                 WHERE build_id = $1 AND kind = 'manifest' GROUP BY device_model, os_version \
                 ORDER BY installs DESC, device_model, os_version LIMIT 100",
            )
            .bind(build_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(device_model, os_version, count)| DeviceCount {
                device_model,
                os_version,
                count: u64::try_from(count).unwrap_or(0),
            })
            .collect())
    }
}
