//! `otaship apps` and `otaship builds`: read and manage what a server holds, through its API.

use std::fmt::Write as _;

use reqwest::Method;
use serde_json::Value;

use super::client::{Remote, RemoteArgs};
use super::{Failure, print, runtime};

/// `otaship apps`.
#[derive(Debug, clap::Args)]
pub struct AppsArgs {
    #[command(subcommand)]
    command: AppsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AppsCommand {
    /// List apps with their newest build.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `otaship builds`.
#[derive(Debug, clap::Args)]
pub struct BuildsArgs {
    #[command(subcommand)]
    command: BuildsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BuildsCommand {
    /// List an app's builds, newest first.
    List {
        /// The app's bundle id.
        app: String,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u64,
        /// Builds per page (up to 100).
        #[arg(long, default_value_t = 20)]
        per_page: u64,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one build, with its install URL.
    Show {
        /// The build's id.
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a build and its files.
    Delete {
        /// The build's id.
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// Runs `otaship apps ...`.
pub fn apps(args: &AppsArgs) -> Result<(), Failure> {
    match &args.command {
        AppsCommand::List { remote, json } => {
            let remote = Remote::new(remote)?;
            let answer: Value = runtime()?.block_on(remote.json(remote.request(Method::GET, "/api/v1/apps")))?;
            if *json {
                return print_json(&answer);
            }
            let apps = answer["apps"].as_array().map(Vec::as_slice).unwrap_or_default();
            if apps.is_empty() {
                return print("no apps yet: upload one with `otaship push APP.ipa`\n");
            }
            let rows: Vec<Vec<String>> = apps
                .iter()
                .map(|app| {
                    let latest = &app["latest_build"];
                    vec![
                        text(&app["bundle_id"]),
                        text(&app["name"]),
                        app["build_count"].as_u64().unwrap_or(0).to_string(),
                        version_label(latest),
                        text(&latest["created_at"]),
                    ]
                })
                .collect();
            print(&table(&["BUNDLE ID", "NAME", "BUILDS", "LATEST", "UPLOADED"], &rows))
        }
    }
}

/// Runs `otaship builds ...`.
pub fn builds(args: &BuildsArgs) -> Result<(), Failure> {
    match &args.command {
        BuildsCommand::List { app, remote, page, per_page, json } => {
            let remote = Remote::new(remote)?;
            let path = format!("/api/v1/apps/{}/builds?page={page}&per_page={per_page}", path_segment(app));
            let request = remote.request(Method::GET, &path);
            let answer: Value = runtime()?.block_on(remote.json(request))?;
            if *json {
                return print_json(&answer);
            }
            let rows: Vec<Vec<String>> = answer["builds"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|build| {
                    vec![
                        text(&build["id"]),
                        text(&build["version"]),
                        text(&build["build"]),
                        text(&build["channel"]),
                        indicatif::HumanBytes(build["size"].as_u64().unwrap_or(0)).to_string(),
                        text(&build["created_at"]),
                        if build["installable"]["ok"].as_bool().unwrap_or(false) { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect();
            let mut out = table(&["ID", "VERSION", "BUILD", "CHANNEL", "SIZE", "UPLOADED", "INSTALLABLE"], &rows);
            let total = answer["total"].as_u64().unwrap_or(0);
            let shown = rows.len() as u64;
            if total > shown {
                let _ = writeln!(out, "page {page}: {shown} of {total} builds (--page for more)");
            }
            print(&out)
        }
        BuildsCommand::Show { id, remote, json } => {
            let remote = Remote::new(remote)?;
            let path = format!("/api/v1/builds/{}", path_segment(id));
            let build: Value = runtime()?.block_on(remote.json(remote.request(Method::GET, &path)))?;
            if *json {
                return print_json(&build);
            }
            print(&describe(&build))
        }
        BuildsCommand::Delete { id, remote } => {
            let remote = Remote::new(remote)?;
            let path = format!("/api/v1/builds/{}", path_segment(id));
            runtime()?.block_on(remote.send(remote.request(Method::DELETE, &path)))?;
            print(&format!("deleted build {id}\n"))
        }
    }
}

/// A build as lines of `label  value`.
fn describe(build: &Value) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        if !value.is_empty() {
            let _ = writeln!(out, "{label:<12} {value}");
        }
    };
    line("id", text(&build["id"]));
    line("app", format!("{} ({})", text(&build["name"]), text(&build["bundle_id"])));
    line("version", version_label(build));
    line("channel", text(&build["channel"]));
    line("size", indicatif::HumanBytes(build["size"].as_u64().unwrap_or(0)).to_string());
    line("sha256", text(&build["sha256"]));
    line("uploaded", text(&build["created_at"]));
    line("profile", text(&build["profile"]["kind"]));
    line("installable", if build["installable"]["ok"].as_bool().unwrap_or(false) { "yes" } else { "no" }.to_owned());
    for problem in build["installable"]["problems"].as_array().map(Vec::as_slice).unwrap_or_default() {
        line("  problem", text(&problem["message"]));
    }
    if let Some(metadata) = build["metadata"].as_object() {
        for (key, value) in metadata {
            line(&format!("meta {key}"), text(value));
        }
    }
    line("install", text(&build["install_url"]));
    line("manifest", text(&build["manifest_url"]));
    if let Some(notes) = build["notes"].as_str() {
        let _ = writeln!(out, "notes\n{notes}");
    }
    out
}

/// `1.4.0 (412)`, with `?` for what the build does not say.
fn version_label(build: &Value) -> String {
    let or_unknown = |value: &Value| Some(text(value)).filter(|text| !text.is_empty()).unwrap_or_else(|| "?".into());
    format!("{} ({})", or_unknown(&build["version"]), or_unknown(&build["build"]))
}

/// A JSON value as text for a table: strings bare, null empty.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(super) fn print_json(value: &Value) -> Result<(), Failure> {
    print(&format!("{}\n", serde_json::to_string_pretty(value).unwrap_or_default()))
}

/// One path segment, percent-encoded (bundle ids are plain, but an id typed by hand may not be).
pub(super) fn path_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Columns padded to their widest cell.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut write_row = |cells: &mut dyn Iterator<Item = &str>| {
        let line: Vec<String> =
            cells.zip(&widths).map(|(cell, width)| format!("{cell:<width$}", width = *width)).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    };
    write_row(&mut headers.iter().copied());
    for row in rows {
        write_row(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let rows = vec![vec!["com.example.app".to_owned(), "1".to_owned()], vec!["x".to_owned(), "12".to_owned()]];
        assert_eq!(table(&["ID", "N"], &rows), "ID               N\ncom.example.app  1\nx                12\n");
    }

    #[test]
    fn path_segments_cannot_climb() {
        assert_eq!(path_segment("../admin"), "%2E%2E%2Fadmin");
    }
}
