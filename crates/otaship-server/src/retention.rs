//! Retention: which builds the rules doom, and deleting them.
//!
//! A rule belongs to an app, for one channel or (channel `""`) for every channel of the app
//! that has no rule of its own. A build goes when it is beyond the newest `keep_last` builds
//! of its channel, or older than `max_age_days`; either suffices. The newest build of every
//! (app, channel) always stays, whatever the rules say: testers' links to "the latest beta"
//! must keep working.
//!
//! [`plan`] only reads. [`apply`] plans afresh and deletes build by build, each with a
//! statement that deletes only while a newer build of the same channel exists
//! ([`Db::delete_build_unless_latest`]): an upload, a deletion or another instance's
//! retention running at the same moment cannot make it delete the newest build. Files go
//! after the row, as for any deletion ([`crate::ingest::remove_files`]). Every instance runs
//! [`apply`] in the background (`--retention-interval`); running it twice at once only makes
//! the second find less to do.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::AppState;
use crate::db::{BuildSummary, Db, DbError, RetentionRule};

/// Longest `keep_last` a rule may have.
pub const MAX_KEEP_LAST: u32 = 100_000;
/// Longest `max_age_days` a rule may have (a century; keeps date arithmetic far from overflow).
pub const MAX_AGE_DAYS: u32 = 36_500;

/// A build the rules remove, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doomed {
    /// The build.
    pub build: BuildSummary,
    /// Why, in words: "beyond the newest 5 of beta", "older than 30 days", or both.
    pub reason: String,
}

/// The builds that `rules` remove from `builds` at `now`, by app and channel, newest first
/// within each. Never the newest build of an (app, channel).
pub fn doomed(rules: &[RetentionRule], builds: &[BuildSummary], now: OffsetDateTime) -> Vec<Doomed> {
    let rule_of: HashMap<(&str, &str), &RetentionRule> =
        rules.iter().map(|rule| ((rule.bundle_id.as_str(), rule.channel.as_str()), rule)).collect();
    let mut channels: HashMap<(&str, &str), Vec<&BuildSummary>> = HashMap::new();
    for build in builds {
        channels.entry((build.bundle_id.as_str(), build.channel.as_str())).or_default().push(build);
    }
    let mut keys: Vec<(&str, &str)> = channels.keys().copied().collect();
    keys.sort_unstable();
    let mut out = Vec::new();
    for key in keys {
        let (bundle_id, channel) = key;
        // A channel's own rule replaces the app-wide one.
        let Some(rule) = rule_of.get(&(bundle_id, channel)).or_else(|| rule_of.get(&(bundle_id, ""))) else {
            continue;
        };
        let mut members = channels.remove(&key).unwrap_or_default();
        // Newest first; equal times are ordered by id, as everywhere else.
        members.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let cutoff = rule.max_age_days.map(|days| now - time::Duration::days(i64::from(days)));
        for (position, build) in members.into_iter().enumerate().skip(1) {
            let mut reasons = Vec::new();
            if let Some(keep) = rule.keep_last
                && position >= usize::try_from(keep).unwrap_or(usize::MAX)
            {
                reasons.push(match keep {
                    1 => format!("not the newest of {channel}"),
                    keep => format!("beyond the newest {keep} of {channel}"),
                });
            }
            if let (Some(days), Some(cutoff)) = (rule.max_age_days, cutoff)
                && build.created_at < cutoff
            {
                reasons.push(match days {
                    1 => "older than 1 day".to_owned(),
                    days => format!("older than {days} days"),
                });
            }
            if !reasons.is_empty() {
                out.push(Doomed { build: build.clone(), reason: reasons.join(", and ") });
            }
        }
    }
    out
}

/// What the rules would remove now.
pub async fn plan(db: &Db) -> Result<Vec<Doomed>, DbError> {
    let rules = db.retention_rules().await?;
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    Ok(doomed(&rules, &db.build_summaries().await?, OffsetDateTime::now_utc()))
}

/// Removes what the rules doom now; returns what was removed (a build found to be the newest
/// of its channel by the time its turn came stays, and is not listed).
pub async fn apply(state: &AppState) -> Result<Vec<Doomed>, DbError> {
    let mut removed = Vec::new();
    for doomed in plan(&state.db).await? {
        let Some(build) = state.db.delete_build_unless_latest(&doomed.build.id).await? else {
            continue;
        };
        crate::ingest::remove_files(state, &build).await;
        tracing::info!(
            build.id = %build.id, bundle_id = %build.bundle_id, channel = %build.channel, reason = %doomed.reason,
            "retention removed build {}", build.id
        );
        removed.push(doomed);
    }
    Ok(removed)
}

/// One background pass: applies the rules and logs the outcome.
pub async fn run_logged(state: &AppState) {
    match apply(state).await {
        Ok(removed) if removed.is_empty() => {}
        Ok(removed) => {
            let bytes: u64 = removed.iter().map(|doomed| doomed.build.size).sum();
            tracing::info!(builds = removed.len(), bytes, "retention removed {} builds", removed.len());
        }
        Err(error) => tracing::warn!(%error, "could not apply the retention rules"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(channel: &str, keep_last: Option<u32>, max_age_days: Option<u32>) -> RetentionRule {
        RetentionRule {
            bundle_id: "com.example.app".into(),
            channel: channel.into(),
            keep_last,
            max_age_days,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// `count` builds of `channel`, one a day, the newest a day old; ids count up with age down.
    fn builds(channel: &str, count: usize, now: OffsetDateTime) -> Vec<BuildSummary> {
        (0..count)
            .map(|index| BuildSummary {
                id: format!("{channel}{index:02}"),
                bundle_id: "com.example.app".into(),
                channel: channel.into(),
                version: None,
                build: Some(index.to_string()),
                size: 100,
                created_at: now - time::Duration::days(i64::try_from(count - index).unwrap_or(0)),
            })
            .collect()
    }

    fn ids(doomed: &[Doomed]) -> Vec<&str> {
        doomed.iter().map(|doomed| doomed.build.id.as_str()).collect()
    }

    #[test]
    fn keep_last_dooms_the_oldest_beyond_the_count_with_a_reason() {
        let now = OffsetDateTime::now_utc();
        let all = [builds("beta", 5, now), builds("default", 3, now)].concat();
        let doomed = doomed(&[rule("beta", Some(2), None)], &all, now);
        assert_eq!(ids(&doomed), ["beta02", "beta01", "beta00"]);
        assert!(doomed.iter().all(|doomed| doomed.reason == "beyond the newest 2 of beta"));
    }

    #[test]
    fn a_channel_rule_replaces_the_app_wide_rule() {
        let now = OffsetDateTime::now_utc();
        let all = [builds("beta", 4, now), builds("default", 4, now)].concat();
        let doomed = doomed(&[rule("", Some(1), None), rule("beta", Some(3), None)], &all, now);
        assert_eq!(ids(&doomed), ["beta00", "default02", "default01", "default00"]);
        assert_eq!(doomed[1].reason, "not the newest of default");
    }

    #[test]
    fn age_and_count_each_suffice_and_both_are_told() {
        let now = OffsetDateTime::now_utc();
        let all = builds("beta", 6, now);
        // Ages 6..1 days; keep 4, and nothing older than 3 days (4, 5 and 6 days old go).
        let doomed = doomed(&[rule("beta", Some(4), Some(3))], &all, now);
        assert_eq!(ids(&doomed), ["beta02", "beta01", "beta00"]);
        assert_eq!(doomed[0].reason, "older than 3 days");
        assert_eq!(doomed[1].reason, "beyond the newest 4 of beta, and older than 3 days");
    }

    #[test]
    fn the_newest_build_of_every_channel_survives_every_rule() {
        let now = OffsetDateTime::now_utc();
        let all = [builds("beta", 3, now), builds("default", 1, now), builds("nightly", 7, now)].concat();
        for keep_last in [None, Some(1), Some(2), Some(MAX_KEEP_LAST)] {
            for max_age_days in [None, Some(1), Some(2), Some(MAX_AGE_DAYS)] {
                for channel in ["", "beta", "default", "nightly"] {
                    if keep_last.is_none() && max_age_days.is_none() {
                        continue;
                    }
                    let rules = [rule(channel, keep_last, max_age_days), rule("", Some(1), Some(1))];
                    let gone = doomed(&rules, &all, now);
                    for newest in ["beta02", "default00", "nightly06"] {
                        assert!(!ids(&gone).contains(&newest), "{rules:?} doomed {newest}");
                    }
                }
            }
        }
        // Even builds older than any rule allows: the newest of each stays.
        let ancient = builds("beta", 3, now - time::Duration::days(40_000));
        assert_eq!(ids(&doomed(&[rule("", Some(1), Some(1))], &ancient, now)), ["beta01", "beta00"]);
    }

    #[test]
    fn equal_upload_times_are_ordered_by_id() {
        let now = OffsetDateTime::now_utc();
        let mut all = builds("beta", 3, now);
        for build in &mut all {
            build.created_at = now;
        }
        assert_eq!(ids(&doomed(&[rule("beta", Some(1), None)], &all, now)), ["beta01", "beta00"]);
    }

    #[test]
    fn apps_without_rules_are_left_alone() {
        let now = OffsetDateTime::now_utc();
        let mut other = builds("beta", 3, now);
        for build in &mut other {
            build.bundle_id = "com.example.other".into();
        }
        assert!(doomed(&[rule("", Some(1), None)], &other, now).is_empty());
    }
}
