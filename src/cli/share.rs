//! `otaship share`: share links on a server, through its API. A link is the page to hand to
//! testers; it can carry a password (typed once on the page; the iOS installer needs no cookie),
//! an expiry and an install limit, and can be revoked.

use std::io::BufRead as _;

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Remote, RemoteArgs};
use super::remote::{path_segment, print_json, table, text};
use super::{Failure, print, runtime};

/// `otaship share`.
#[derive(Debug, clap::Args)]
pub struct ShareArgs {
    #[command(subcommand)]
    command: ShareCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ShareCommand {
    /// Create a share link to a build, or to a channel (always its newest build).
    Create {
        /// The build to share (its id).
        #[arg(long, conflicts_with_all = ["app", "channel"], required_unless_present = "app")]
        build: Option<String>,
        /// The app whose channel to share (its bundle id); with --channel.
        #[arg(long, requires = "channel")]
        app: Option<String>,
        /// The channel to share, such as `beta`; with --app.
        #[arg(long, requires = "app")]
        channel: Option<String>,
        /// Read a password for the link from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// When the link stops working: RFC 3339 (`2026-12-01T18:00:00Z`).
        #[arg(long, conflicts_with = "expires_in", value_name = "TIME")]
        expires_at: Option<String>,
        /// How long the link works: `12h`, `7d`, `30m`.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// How many installs the link allows.
        #[arg(long, value_name = "N")]
        max_installs: Option<u64>,
        /// A name for the link in lists.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// List share links, newest first.
    List {
        /// Only the links to this build.
        #[arg(long)]
        build: Option<String>,
        /// Only the links of this app.
        #[arg(long)]
        app: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a share link: its page answers "revoked" from now on.
    Revoke {
        /// The link's id.
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// Runs `otaship share ...`.
pub fn run(args: &ShareArgs) -> Result<(), Failure> {
    match &args.command {
        ShareCommand::Create {
            build,
            app,
            channel,
            password_stdin,
            expires_at,
            expires_in,
            max_installs,
            label,
            remote,
            json,
        } => {
            let remote = Remote::new(remote)?;
            let path = match (build, app, channel) {
                (Some(build), _, _) => format!("/api/v1/builds/{}/links", path_segment(build)),
                (None, Some(app), Some(channel)) => {
                    format!("/api/v1/apps/{}/channels/{}/links", path_segment(app), path_segment(channel))
                }
                _ => return Err(refused("give --build ID, or --app BUNDLE_ID with --channel NAME")),
            };
            let password = if *password_stdin { Some(password_from_stdin()?) } else { None };
            let expires_at = match (expires_at, expires_in) {
                (Some(at), _) => Some(at.clone()),
                (None, Some(duration)) => Some(expiry_after(duration)?),
                (None, None) => None,
            };
            let body = json!({
                "password": password,
                "expires_at": expires_at,
                "max_installs": max_installs,
                "label": label,
            });
            let link: Value = runtime()?.block_on(remote.json(remote.request(Method::POST, &path).json(&body)))?;
            if *json {
                return print_json(&link);
            }
            print(&format!("{}\n", text(&link["url"])))
        }
        ShareCommand::List { build, app, remote, json } => {
            let remote = Remote::new(remote)?;
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            if let Some(build) = build {
                query.append_pair("build_id", build);
            }
            if let Some(app) = app {
                query.append_pair("app", app);
            }
            let path = format!("/api/v1/links?{}", query.finish());
            let answer: Value = runtime()?.block_on(remote.json(remote.request(Method::GET, &path)))?;
            if *json {
                return print_json(&answer);
            }
            let links = answer["links"].as_array().map(Vec::as_slice).unwrap_or_default();
            if links.is_empty() {
                return print("no share links yet: create one with `otaship share create --build ID`\n");
            }
            let rows: Vec<Vec<String>> = links
                .iter()
                .map(|link| {
                    let target = match link["channel"].as_str() {
                        Some(channel) => format!("{} @ {channel}", text(&link["bundle_id"])),
                        None => format!("build {}", text(&link["build_id"])),
                    };
                    let installs = match link["max_installs"].as_u64() {
                        Some(max) => format!("{}/{max}", link["installs"].as_u64().unwrap_or(0)),
                        None => link["installs"].as_u64().unwrap_or(0).to_string(),
                    };
                    vec![
                        text(&link["id"]),
                        text(&link["state"]),
                        target,
                        if link["password_protected"].as_bool().unwrap_or(false) { "yes" } else { "no" }.to_owned(),
                        text(&link["expires_at"]),
                        installs,
                        text(&link["label"]),
                        text(&link["url"]),
                    ]
                })
                .collect();
            print(&table(&["ID", "STATE", "SHARES", "PASSWORD", "EXPIRES", "INSTALLS", "LABEL", "URL"], &rows))
        }
        ShareCommand::Revoke { id, remote } => {
            let remote = Remote::new(remote)?;
            let path = format!("/api/v1/links/{}", path_segment(id));
            runtime()?.block_on(remote.send(remote.request(Method::DELETE, &path)))?;
            print(&format!("revoked share link {id}\n"))
        }
    }
}

fn refused(message: &str) -> Failure {
    Failure::Refused { code: "bad-arguments".into(), message: message.to_owned() }
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| refused(&format!("cannot read the password from standard input: {error}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(refused("--password-stdin read an empty line; pipe the password in"));
    }
    Ok(password)
}

/// Now plus `12h`, `7d`, `30m` or `45s`, as RFC 3339.
fn expiry_after(text: &str) -> Result<String, Failure> {
    let bad = || refused(&format!("--expires-in {text:?}: give a number with a unit, such as 12h, 7d or 30m"));
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(number.checked_mul(seconds).ok_or_else(bad)?);
    at.format(&time::format_description::well_known::Rfc3339).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::expiry_after;

    #[test]
    fn expiries_are_a_number_and_a_unit() {
        let week = expiry_after("7d").expect("valid");
        let parsed = time::OffsetDateTime::parse(&week, &time::format_description::well_known::Rfc3339).expect("time");
        let days = (parsed - time::OffsetDateTime::now_utc()).whole_hours();
        assert!((167..=168).contains(&days), "{days}");
        for bad in ["", "7", "d", "7x", "-1d", "99999999999999999w"] {
            assert!(expiry_after(bad).is_err(), "{bad}");
        }
    }
}
