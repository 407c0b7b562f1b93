//! `otaship inspect`: what an `.ipa` or provisioning profile is, and whether it will install.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use otaship_ipa::{
    FileSource, Finding, InspectOptions, IpaReport, Profile, ProfileKind, Source, inspect_ipa, read_profile, sha256_hex,
};

use super::{Failure, print};

/// Arguments of `otaship inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// An .ipa, or a provisioning profile (.mobileprovision, .provisionprofile).
    pub file: PathBuf,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Write the app icon as a standard PNG to this path.
    #[arg(long, value_name = "OUT.png")]
    pub icon: Option<PathBuf>,
    /// Also compute the SHA-256 of the whole file (reads every byte).
    #[arg(long)]
    pub sha256: bool,
}

/// Runs the command.
pub fn run(args: &InspectArgs) -> Result<(), Failure> {
    let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let source = FileSource::new(file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let options = InspectOptions::default();
    if is_profile_path(&args.file) {
        if args.icon.is_some() {
            return Err(Failure::Failed(anyhow::anyhow!(
                "a provisioning profile has no icon; --icon works with an .ipa"
            )));
        }
        return inspect_profile(args, &source, &options);
    }
    let inspection = inspect_ipa(&source, &options)?;
    let mut report = inspection.report;
    if args.sha256 {
        report.sha256 = Some(sha256_hex(&source).with_context(|| format!("cannot read {}", args.file.display()))?);
    }
    if let Some(out) = &args.icon {
        let png = inspection.icon_png.ok_or_else(|| {
            Failure::Failed(anyhow::anyhow!(
                "the app has no icon that can be read (none is named, or it exists only in Assets.car)"
            ))
        })?;
        std::fs::write(out, png).with_context(|| format!("cannot write the icon to {}", out.display()))?;
    }
    if args.json { print(&format!("{}\n", to_json(&report)?)) } else { print(&summary(&report)) }
}

fn inspect_profile(args: &InspectArgs, source: &FileSource, options: &InspectOptions) -> Result<(), Failure> {
    if source.len() > options.limits.max_profile_bytes {
        return Err(otaship_ipa::IpaError::EntryTooLarge {
            name: args.file.display().to_string(),
            what: "a provisioning profile",
            limit: options.limits.max_profile_bytes,
        }
        .into());
    }
    let mut bytes = vec![0; source.len() as usize];
    source.read_exact_at(0, &mut bytes).with_context(|| format!("cannot read {}", args.file.display()))?;
    let what = args.file.display().to_string();
    let profile = read_profile(&bytes, &options.limits, options.now, &what)?;
    if args.json {
        print(&format!("{}\n", to_json(&profile)?))
    } else {
        let mut out = String::new();
        profile_lines(&mut out, &profile, "");
        print(&out)
    }
}

fn is_profile_path(path: &Path) -> bool {
    path.extension().and_then(|extension| extension.to_str()).is_some_and(|extension| {
        extension.eq_ignore_ascii_case("mobileprovision") || extension.eq_ignore_ascii_case("provisionprofile")
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value).map_err(|error| Failure::Failed(error.into()))
}

/// A short readable summary for a person.
fn summary(report: &IpaReport) -> String {
    let mut out = String::new();
    let name = report.name.as_deref().unwrap_or("(unnamed)");
    let version = report.version.as_deref().unwrap_or("?");
    let build = report.build.as_deref().unwrap_or("?");
    let _ = writeln!(out, "{name} {version} ({build})  {}", report.bundle_id);
    let families = if report.device_families.is_empty() {
        "no device family".to_owned()
    } else {
        report.device_families.join(" + ")
    };
    let platform = serde_json::to_value(report.platform)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  platform     {platform}, minimum OS {}, {families}",
        report.min_os.as_deref().unwrap_or("not set")
    );
    let _ = writeln!(out, "  size         {}", human_size(report.size));
    if let Some(sha256) = &report.sha256 {
        let _ = writeln!(out, "  sha256       {sha256}");
    }
    match &report.icon {
        Some(icon) => {
            let crushed = if icon.crushed { ", crushed CgBI" } else { "" };
            let _ = writeln!(out, "  icon         {} ({}x{}{crushed})", icon.entry, icon.width, icon.height);
        }
        None => {
            let _ = writeln!(out, "  icon         none");
        }
    }
    match &report.profile {
        Some(profile) => profile_lines(&mut out, profile, "  "),
        None => {
            let _ = writeln!(out, "  profile      none (unsigned)");
        }
    }
    for extension in &report.extensions {
        let kind = extension.profile.as_ref().map_or("no profile", |profile| kind_label(profile.kind));
        let _ = writeln!(out, "  extension    {} ({}, {kind})", extension.bundle_id, extension.path);
    }
    let verdict = if report.installable.ok { "yes" } else { "no" };
    let _ = writeln!(out, "  installable  {verdict}");
    finding_lines(&mut out, "error", &report.installable.problems);
    finding_lines(&mut out, "note", &report.installable.warnings);
    out
}

fn profile_lines(out: &mut String, profile: &Profile, indent: &str) {
    let name = profile.name.as_deref().unwrap_or("(unnamed)");
    let _ = writeln!(out, "{indent}profile      {} \"{name}\"", kind_label(profile.kind));
    let team = match (&profile.team_name, &profile.team_id) {
        (Some(team), Some(id)) => format!("{team} ({id})"),
        (None, Some(id)) => id.clone(),
        (Some(team), None) => team.clone(),
        (None, None) => "unknown".to_owned(),
    };
    let _ = writeln!(out, "{indent}  team       {team}");
    if let Some(app_id) = &profile.app_id {
        let _ = writeln!(out, "{indent}  app id     {app_id}");
    }
    if let Some(expiry) = profile.expires_at {
        let state = if profile.expired { " (expired)" } else { "" };
        let _ = writeln!(out, "{indent}  expires    {}{state}", expiry.date());
    }
    let devices = if profile.provisions_all_devices {
        "all devices".to_owned()
    } else {
        format!("{} listed", profile.devices.len())
    };
    let _ = writeln!(out, "{indent}  devices    {devices}");
    let signature = serde_json::to_value(profile.signature)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = writeln!(out, "{indent}  signature  {signature}");
}

fn finding_lines(out: &mut String, label: &str, findings: &[Finding]) {
    for finding in findings {
        let _ = writeln!(out, "    {label}[{}]: {}", finding.code, finding.message);
    }
}

fn kind_label(kind: ProfileKind) -> &'static str {
    match kind {
        ProfileKind::Development => "development",
        ProfileKind::AdHoc => "ad-hoc",
        ProfileKind::Enterprise => "enterprise",
        ProfileKind::AppStore => "app-store",
        ProfileKind::DeveloperId => "developer-id",
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = "";
    for name in UNITS {
        value /= 1000.0;
        unit = name;
        if value < 1000.0 {
            break;
        }
    }
    format!("{value:.1} {unit} ({bytes} bytes)")
}
