//! Limits on failed attempts (wrong passwords, wrong tokens at sign-in, device replies that do
//! not check out), per key: a client's address, a username, a share link; and on uses of what
//! costs the server every time ([`count_use`]: enrollment profiles, each signed and
//! remembered). Failures are rows in the database (`auth_failures`), so that every instance
//! behind a load balancer counts the same ones; rows older than [`MAX_WINDOW`] are pruned
//! whenever a failure is recorded.
//!
//! The caller takes [`one_at_a_time`], checks before doing the costly or sensitive work,
//! records a failure when the attempt fails, and clears the key when it succeeds. Within an
//! instance the turn makes check-then-record atomic, so a burst of parallel guesses cannot all
//! pass one check, and password hashing (19 MiB of memory each) never runs for many at once;
//! across instances, attempts racing each other may still get a few past the limit: it bounds
//! guessing, it is not a counter to the unit.

use std::time::Duration;

use axum::http::StatusCode;
use time::OffsetDateTime;

use crate::db::Db;
use crate::error::ApiError;
use crate::tokens;

/// How many failures a key may have within a window before it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Failures allowed within the window; the next attempt is refused.
    pub failures: u32,
    /// How far back failures count (at most [`MAX_WINDOW`]).
    pub window: std::time::Duration,
}

/// The turn every checked attempt holds from its check to its outcome.
static ATTEMPTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for this instance's turn to make a checked attempt (sign-in, a link's password, a
/// password change); the turn ends when the guard is dropped.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    ATTEMPTS.lock().await
}

/// The longest window a limit can have: failures older than this are deleted.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Err(429, code "too-many-attempts", sentence saying when to try again) when `key` had
/// `limit.failures` failures within the window.
pub async fn check(db: &Db, key: &str, limit: Limit) -> Result<(), ApiError> {
    refuse_over(db, key, limit, ("too-many-attempts", "Too many failed attempts")).await
}

/// Counts one use under `key`, unless `limit.failures` uses within the window came before it:
/// then Err(429, code "too-many-requests", with the wait). Uses are rows of the same table as
/// failures, under keys of their own.
pub async fn count_use(db: &Db, key: &str, limit: Limit) -> Result<(), ApiError> {
    let _turn = one_at_a_time().await;
    refuse_over(db, key, limit, ("too-many-requests", "Too many requests")).await?;
    record_failure(db, key).await
}

/// The key for what one client does, `what` telling the counts apart: its IPv4 address, or,
/// as an IPv6 client usually holds a whole /64, its /64.
pub fn client_key(what: &str, ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("{what}:{v4}"),
        std::net::IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{what}:{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
    }
}

/// Err(429) when `key` has `limit.failures` rows within the window, with `code` and a sentence
/// that starts with `too_many` and says how long to wait.
async fn refuse_over(db: &Db, key: &str, limit: Limit, (code, too_many): (&'static str, &str)) -> Result<(), ApiError> {
    let failures = limit.failures.max(1);
    let window = span(limit.window.min(MAX_WINDOW));
    let now = OffsetDateTime::now_utc();
    let recent = db.recent_auth_failures(&tokens::hash(key), now - window, failures).await?;
    // Newest first: the last one is the `failures`-th newest. Once it leaves the window, fewer
    // than `failures` remain and attempts are allowed again.
    match recent.get(failures as usize - 1) {
        None => Ok(()),
        Some(&oldest) => {
            let wait = (oldest + window - now).max(time::Duration::SECOND);
            let until = oldest + window;
            let wait_std = Duration::try_from(wait).unwrap_or(Duration::from_secs(1));
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code,
                format!(
                    "{too_many}; wait {} (until {} UTC) and try again.",
                    in_words(wait_std),
                    crate::db::timestamp(until).get(11..16).unwrap_or("?")
                ),
            )
            .with_retry_after(wait_std))
        }
    }
}

/// Records a failed attempt under `key`, and prunes failures older than [`MAX_WINDOW`].
pub async fn record_failure(db: &Db, key: &str) -> Result<(), ApiError> {
    let now = OffsetDateTime::now_utc();
    db.record_auth_failure(&tokens::hash(key), now, now - span(MAX_WINDOW)).await?;
    Ok(())
}

/// Forgets the failures under `key` (after a success).
pub async fn clear(db: &Db, key: &str) -> Result<(), ApiError> {
    db.clear_auth_failures(&tokens::hash(key)).await?;
    Ok(())
}

fn span(duration: Duration) -> time::Duration {
    time::Duration::try_from(duration).unwrap_or(time::Duration::DAY)
}

/// `45 seconds`, `1 minute`, `14 minutes`, `2 hours`: rounded up, so that trying again after
/// it works.
fn in_words(wait: Duration) -> String {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let (count, unit) = match seconds {
        0..60 => (seconds.max(1), "second"),
        60..7200 => (seconds.div_ceil(60), "minute"),
        _ => (seconds.div_ceil(3600), "hour"),
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::in_words;
    use std::time::Duration;

    #[test]
    fn waits_are_said_in_round_numbers_rounded_up() {
        assert_eq!(in_words(Duration::from_millis(300)), "1 second");
        assert_eq!(in_words(Duration::from_secs(45)), "45 seconds");
        assert_eq!(in_words(Duration::from_secs(60)), "1 minute");
        assert_eq!(in_words(Duration::from_secs(61)), "2 minutes");
        assert_eq!(in_words(Duration::from_secs(899)), "15 minutes");
        assert_eq!(in_words(Duration::from_secs(3 * 3600)), "3 hours");
    }
}
