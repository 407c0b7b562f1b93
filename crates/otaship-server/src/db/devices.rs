//! Devices and their enrollments: what the Profile Service taught the server about each
//! iPhone or iPad, and the one-time challenges that bind a device's reply to a profile the
//! server handed out.

use otaship_ipa::device::DeviceAttributes;
use time::OffsetDateTime;

use super::{Db, DbError, Pool, begin_write, parse_time, timestamp};

/// How long a result page (`/devices/enrolled/{token}`) keeps showing its device.
const RESULT_LIFETIME: time::Duration = time::Duration::DAY;

/// A device as stored.
#[derive(sqlx::FromRow)]
struct DeviceRecord {
    id: String,
    udid: String,
    name: Option<String>,
    device_name: Option<String>,
    product: Option<String>,
    os_build: Option<String>,
    os_version: Option<String>,
    serial: Option<String>,
    verified: bool,
    first_seen_at: String,
    last_seen_at: String,
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Its id in the API.
    pub id: String,
    /// Its UDID, canonical.
    pub udid: String,
    /// The name an uploader gave it.
    pub name: Option<String>,
    /// The name it reported.
    pub device_name: Option<String>,
    /// Model identifier (`iPhone15,2`).
    pub product: Option<String>,
    /// OS build (`22A3354`).
    pub os_build: Option<String>,
    /// iOS version as Safari on it reported, when it agrees with the build.
    pub os_version: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Its reply was signed by a certificate of Apple's device CA.
    pub verified: bool,
    /// First enrollment.
    pub first_seen_at: OffsetDateTime,
    /// Last enrollment or install-page visit.
    pub last_seen_at: OffsetDateTime,
}

impl DeviceRecord {
    fn into_row(self) -> Result<DeviceRow, DbError> {
        Ok(DeviceRow {
            id: self.id,
            udid: self.udid,
            name: self.name,
            device_name: self.device_name,
            product: self.product,
            os_build: self.os_build,
            os_version: self.os_version,
            serial: self.serial,
            verified: self.verified,
            first_seen_at: parse_time(self.first_seen_at)?,
            last_seen_at: parse_time(self.last_seen_at)?,
        })
    }
}

const DEVICE_COLUMNS: &str =
    "id, udid, name, device_name, product, os_build, os_version, serial, verified, first_seen_at, last_seen_at";

/// What recording a device's reply found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// The device is stored; its result page is open.
    Recorded(Box<DeviceRow>),
    /// The challenge was never handed out, has expired, or was already answered.
    UnknownChallenge,
}

impl Db {
    /// Remembers a challenge handed out in an enrollment profile until `expires_at`, and drops
    /// enrollments whose result pages have closed.
    pub async fn insert_enrollment(
        &self,
        challenge_hash: &str,
        expires_at: OffsetDateTime,
        return_token: Option<&str>,
    ) -> Result<(), DbError> {
        let now = OffsetDateTime::now_utc();
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM device_enrollments WHERE expires_at <= $1")
                .bind(timestamp(now - RESULT_LIFETIME))
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO device_enrollments (challenge_hash, created_at, expires_at, return_token) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(challenge_hash)
            .bind(timestamp(now))
            .bind(timestamp(expires_at))
            .bind(return_token)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Takes the challenge (once, before it expires) and stores the device: a device seen
    /// before keeps its id, its given name and its first-seen time. `new_id` is used for a new
    /// device; `result_hash` opens its result page.
    pub async fn record_enrollment(
        &self,
        challenge_hash: &str,
        attributes: &DeviceAttributes,
        verified: bool,
        new_id: &str,
        result_hash: &str,
    ) -> Result<Enrolled, DbError> {
        let now = timestamp(OffsetDateTime::now_utc());
        let id: Option<String> = with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            let taken = sqlx::query(
                "UPDATE device_enrollments SET used_at = $2 \
                 WHERE challenge_hash = $1 AND used_at IS NULL AND expires_at > $2",
            )
            .bind(challenge_hash)
            .bind(&now)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
            if taken == 1 {
                sqlx::query(
                    "INSERT INTO devices (id, udid, device_name, product, os_build, serial, verified, \
                     first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                     ON CONFLICT (udid) DO UPDATE SET device_name = excluded.device_name, \
                     product = excluded.product, \
                     os_version = CASE WHEN devices.os_build = excluded.os_build THEN devices.os_version END, \
                     os_build = excluded.os_build, serial = excluded.serial, \
                     verified = excluded.verified, last_seen_at = excluded.last_seen_at",
                )
                .bind(new_id)
                .bind(&attributes.udid)
                .bind(&attributes.device_name)
                .bind(&attributes.product)
                .bind(&attributes.os_build)
                .bind(&attributes.serial)
                .bind(verified)
                .bind(&now)
                .execute(&mut *transaction)
                .await?;
                let id: String = sqlx::query_scalar("SELECT id FROM devices WHERE udid = $1")
                    .bind(&attributes.udid)
                    .fetch_one(&mut *transaction)
                    .await?;
                sqlx::query("UPDATE device_enrollments SET device_id = $2, result_hash = $3 WHERE challenge_hash = $1")
                    .bind(challenge_hash)
                    .bind(&id)
                    .bind(result_hash)
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                Some(id)
            } else {
                None
            }
        });
        match id {
            Some(id) => Ok(Enrolled::Recorded(Box::new(self.device(&id).await?.ok_or(DbError::NotFound)?))),
            None => Ok(Enrolled::UnknownChallenge),
        }
    }

    /// The device a result page shows, while the page is open, and the install page (token)
    /// the enrollment started from.
    pub async fn enrolled_device(&self, result_hash: &str) -> Result<Option<(DeviceRow, Option<String>)>, DbError> {
        let found: Option<(String, Option<String>)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT device_id, return_token FROM device_enrollments \
                 WHERE result_hash = $1 AND used_at > $2 AND device_id IS NOT NULL",
            )
            .bind(result_hash)
            .bind(timestamp(OffsetDateTime::now_utc() - RESULT_LIFETIME))
            .fetch_optional(pool)
            .await?
        });
        let Some((device_id, return_token)) = found else { return Ok(None) };
        Ok(self.device(&device_id).await?.map(|device| (device, return_token)))
    }

    /// One device.
    pub async fn device(&self, id: &str) -> Result<Option<DeviceRow>, DbError> {
        let record: Option<DeviceRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        record.map(DeviceRecord::into_row).transpose()
    }

    /// Every device, most recently seen first.
    pub async fn devices(&self) -> Result<Vec<DeviceRow>, DbError> {
        let records: Vec<DeviceRecord> = with_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY last_seen_at DESC, id")))
                .fetch_all(pool)
                .await?
        });
        records.into_iter().map(DeviceRecord::into_row).collect()
    }

    /// Gives a device a name (`None` goes back to the name it reported); false when there is
    /// no such device.
    pub async fn rename_device(&self, id: &str, name: Option<&str>) -> Result<bool, DbError> {
        let changed = with_pool!(self, pool => {
            sqlx::query("UPDATE devices SET name = $2 WHERE id = $1").bind(id).bind(name).execute(pool).await?.rows_affected()
        });
        Ok(changed == 1)
    }

    /// Forgets a device; false when there is no such device.
    pub async fn delete_device(&self, id: &str) -> Result<bool, DbError> {
        let deleted = with_pool!(self, pool => {
            let mut transaction = begin_write(pool).await?;
            sqlx::query("DELETE FROM device_enrollments WHERE device_id = $1").bind(id).execute(&mut *transaction).await?;
            let deleted =
                sqlx::query("DELETE FROM devices WHERE id = $1").bind(id).execute(&mut *transaction).await?.rows_affected();
            transaction.commit().await?;
            deleted
        });
        Ok(deleted == 1)
    }

    /// Records a visit from the device: the time (to the minute) and the iOS version its Safari
    /// reported, when known.
    pub async fn device_seen(&self, device: &DeviceRow, os_version: Option<&str>) -> Result<(), DbError> {
        let now = OffsetDateTime::now_utc();
        let version_changed = os_version.is_some() && os_version != device.os_version.as_deref();
        if !version_changed && now - device.last_seen_at < time::Duration::MINUTE {
            return Ok(());
        }
        let version = os_version.map(str::to_owned).or_else(|| device.os_version.clone());
        with_pool!(self, pool => {
            sqlx::query("UPDATE devices SET last_seen_at = $2, os_version = $3 WHERE id = $1")
                .bind(&device.id)
                .bind(timestamp(now))
                .bind(version)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
