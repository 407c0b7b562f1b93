//! `otaship doctor`: why an install link fails, and how to fix it.
//!
//! Exit codes (its own, for CI): 0 nothing that stops an install, 1 at least one error found,
//! 2 the doctor could not run (bad arguments, unreadable file).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use otaship_doctor::{Options, Report, Request, Severity};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// `otaship doctor` arguments.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// An install page URL, an itms-services:// link, a manifest URL, or a local .ipa or
    /// manifest file.
    target: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The device's UDID, to check it is in the provisioning profiles.
    #[arg(long, value_name = "UDID")]
    udid: Option<String>,
    /// The device's iOS version, e.g. 17.5, to check against the build's minimum.
    #[arg(long, value_name = "VERSION")]
    ios: Option<String>,
    /// A root certificate (PEM) the devices trust, e.g. otaship's local CA (repeatable).
    #[arg(long = "ca", value_name = "FILE")]
    cas: Vec<PathBuf>,
    /// Connect to ADDR for HOST:PORT, as curl's --resolve does (repeatable).
    #[arg(long = "resolve", value_name = "HOST:PORT:ADDR")]
    resolves: Vec<String>,
    /// Download the whole .ipa instead of reading it through range requests.
    #[arg(long)]
    full: bool,
}

/// Runs the doctor and returns its exit code.
pub fn run(args: &DoctorArgs) -> ExitCode {
    match prepare(args).and_then(|request| diagnose(&request)) {
        Ok(report) => {
            let printed = if args.json { print_json(&report) } else { print_text(&report) };
            if let Err(error) = printed
                && error.kind() != std::io::ErrorKind::BrokenPipe
            {
                eprintln!("error: cannot write the report: {error}");
                return ExitCode::from(2);
            }
            if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn prepare(args: &DoctorArgs) -> Result<Request, String> {
    let mut options = Options::default();
    for path in &args.cas {
        let pem = std::fs::read(path).map_err(|error| format!("cannot read --ca {}: {error}", path.display()))?;
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|error| format!("--ca {} is not PEM: {error}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!("--ca {} holds no certificate", path.display()));
        }
        options.extra_roots.extend(certificates);
    }
    for entry in &args.resolves {
        options.resolve.push(parse_resolve(entry)?);
    }
    Ok(Request {
        target: args.target.clone(),
        options,
        device: otaship_doctor::package::DeviceFacts { udid: args.udid.clone(), ios: args.ios.clone() },
        full: args.full,
    })
}

/// `HOST:PORT:ADDR`, where ADDR may be an IPv6 address in brackets.
fn parse_resolve(entry: &str) -> Result<(String, SocketAddr), String> {
    let bad = || format!("--resolve {entry:?} must be HOST:PORT:ADDR, e.g. ota.example.com:443:192.168.1.20");
    let mut parts = entry.splitn(3, ':');
    let (Some(host), Some(port), Some(address)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip: std::net::IpAddr = address.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), SocketAddr::new(ip, port)))
}

fn diagnose(request: &Request) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    runtime.block_on(otaship_doctor::diagnose(request)).map_err(|error| error.to_string())
}

fn print_json(report: &Report) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, report).map_err(std::io::Error::other)?;
    writeln!(stdout)
}

fn print_text(report: &Report) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "otaship doctor: {}", report.target)?;
    if let Some(manifest) = &report.manifest_url {
        writeln!(out, "  manifest: {manifest}")?;
    }
    if let Some(package) = &report.package_url {
        writeln!(out, "  .ipa:     {package}")?;
    }
    for finding in &report.findings {
        let label = match finding.severity {
            Severity::Error => "error  ",
            Severity::Warning => "warning",
            Severity::Info => "ok     ",
        };
        writeln!(out, "{label} {:<28} {}", finding.code, finding.message)?;
        if !finding.fix.is_empty() && finding.severity != Severity::Info {
            writeln!(out, "        {:<28} fix: {}", "", finding.fix)?;
        }
    }
    let errors = report.findings.iter().filter(|finding| finding.severity == Severity::Error).count();
    let warnings = report.findings.iter().filter(|finding| finding.severity == Severity::Warning).count();
    let transferred = report.bytes_transferred;
    if errors == 0 {
        writeln!(
            out,
            "verdict: no problem found that stops the install ({warnings} warning(s)); {transferred} bytes transferred"
        )
    } else {
        writeln!(
            out,
            "verdict: {errors} error(s) will stop the install ({warnings} warning(s)); {transferred} bytes transferred"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::parse_resolve;

    #[test]
    fn resolve_entries_parse_like_curls() {
        assert_eq!(
            parse_resolve("ota.test:443:127.0.0.1").map(|(host, address)| (host, address.to_string())),
            Ok(("ota.test".to_owned(), "127.0.0.1:443".to_owned()))
        );
        assert_eq!(
            parse_resolve("ota.test:8443:[::1]").map(|(_, address)| address.to_string()),
            Ok("[::1]:8443".to_owned())
        );
        assert!(parse_resolve("ota.test:443").is_err());
    }
}
