//! `otaship doctor` from the command line, on local files (the network cases are tested in the
//! doctor crate against servers on loopback): its exit codes are its verdict.
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/third-party/");

fn doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otaship")).arg("doctor").args(args).output().expect("runs")
}

#[test]
fn exit_codes_are_the_verdict() {
    let manifest = format!("{FIXTURES}manifest/ipa_distribution-manifest.plist");
    let healthy = doctor(&[&manifest]);
    assert_eq!(healthy.status.code(), Some(0), "{}", String::from_utf8_lossy(&healthy.stdout));
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("manifest-ok"));

    let unsigned = doctor(&[&format!("{FIXTURES}ipa/IPAParser-Example.ipa"), "--json"]);
    assert_eq!(unsigned.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&unsigned.stdout).expect("JSON");
    assert_eq!(report["ok"], false);
    assert_eq!(report["findings"][0]["code"], "unsigned");
    assert_eq!(report["findings"][0]["severity"], "error");

    let nothing = doctor(&["no-such-target"]);
    assert_eq!(nothing.status.code(), Some(2), "the doctor could not run");
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("is not an install page URL"));
    let bad_resolve = doctor(&[&manifest, "--resolve", "nonsense"]);
    assert_eq!(bad_resolve.status.code(), Some(2));
}

#[test]
fn links_are_judged_without_fetching_when_they_are_broken() {
    let output =
        doctor(&["itms-services://?action=download-manifest&amp;amp;url=https%3A%2F%2Fota.example.com%2Fm.plist"]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("link-double-escaped"), "{text}");
}
