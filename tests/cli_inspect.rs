//! `otaship inspect` as a user runs it: output formats, icon export, exit codes, and that it
//! writes nothing it was not asked to.
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use otaship_ipa::builder::{IpaBuilder, ZipBuilder, ZipEntry};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/third-party").join(path)
}

fn otaship(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otaship")).args(args).current_dir(cwd).output().expect("runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

#[test]
fn json_has_every_documented_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixture("ipa/run_loop-CalSmoke.ipa");
    let value = json(&otaship(&["inspect", "--json", file.to_str().expect("utf-8")], dir.path()));
    for field in [
        "bundle_id",
        "name",
        "version",
        "build",
        "min_os",
        "platform",
        "device_families",
        "size",
        "icon",
        "profile",
        "extensions",
        "installable",
    ] {
        assert!(value.get(field).is_some(), "missing {field}");
    }
    assert!(value.get("sha256").is_none(), "sha256 is opt-in");
    assert_eq!(value["bundle_id"], "sh.calaba.CalSmoke");
    assert_eq!(value["size"], 1_153_357);
    assert_eq!(value["icon"]["entry"], "Payload/CalSmoke.app/AppIcon60x60@3x.png");
    assert_eq!(value["icon"]["crushed"], true);
    assert_eq!(value["profile"]["kind"], "development");
    assert_eq!(value["installable"]["ok"], false);
    assert!(value["installable"]["problems"][0]["code"].is_string());
    assert!(value["installable"]["problems"][0]["message"].is_string());
    // Nothing was extracted or written.
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
}

#[test]
fn sha256_is_computed_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixture("ipa/sentry-cli-ipa.ipa");
    let value = json(&otaship(&["inspect", "--json", "--sha256", file.to_str().expect("utf-8")], dir.path()));
    // From SOURCES.md.
    assert_eq!(value["sha256"], "3a8249714ed35795b618d1d7c96dbd4c44e62125b4775aa0c08f801ecca9f670");
}

#[test]
fn icon_is_written_as_a_standard_png() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("icon.png");
    let file = fixture("ipa/app-info-ipad.ipa");
    let output =
        otaship(&["inspect", file.to_str().expect("utf-8"), "--icon", out.to_str().expect("utf-8")], dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let png = std::fs::read(&out).expect("icon written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR", "a standard PNG starts with IHDR, not CgBI");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().expect("4 bytes")), 167);

    // No icon: a clear failure, exit 1, and no file.
    let none = dir.path().join("none.png");
    let file = fixture("ipa/ipa-server-ipa.ipa");
    let output =
        otaship(&["inspect", file.to_str().expect("utf-8"), "--icon", none.to_str().expect("utf-8")], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(!none.exists());
}

#[test]
fn the_summary_is_for_people() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixture("ipa/app-info-embedded.ipa");
    let output = otaship(&["inspect", file.to_str().expect("utf-8")], dir.path());
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(text.starts_with("Demo 1.0 (1)  com.icyleaf.test.Demo\n"), "{text}");
    assert!(text.contains("profile      enterprise"), "{text}");
    assert!(text.contains("installable  no"), "{text}");
    assert!(text.contains("error[profile-expired]"), "{text}");
}

#[test]
fn profiles_are_inspected_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixture("mobileprovision/app-info-ios_adhoc.mobileprovision");
    let value = json(&otaship(&["inspect", "--json", file.to_str().expect("utf-8")], dir.path()));
    assert_eq!(value["kind"], "ad-hoc");
    assert_eq!(value["signature"], "valid");
    let output = otaship(&["inspect", file.to_str().expect("utf-8")], dir.path());
    assert!(String::from_utf8_lossy(&output.stdout).contains("profile      ad-hoc"));
    let empty = fixture("mobileprovision/app-info-invalid_empty.mobileprovision");
    let output = otaship(&["inspect", empty.to_str().expect("utf-8")], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error[profile-malformed]: "));
}

#[test]
fn refused_input_exits_2_with_one_line_and_a_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not-a-zip", b"hello".to_vec()),
        ("zip-truncated", IpaBuilder::new("a.b").to_bytes()[..100].to_vec()),
        ("ipa-no-payload", ZipBuilder::new().entry(ZipEntry::new("a.txt", "x")).to_bytes()),
        ("zip-unsafe-path", IpaBuilder::new("a.b").entry(ZipEntry::new("../x", "x")).to_bytes()),
    ];
    for (code, bytes) in cases {
        let path = dir.path().join(format!("{code}.ipa"));
        std::fs::write(&path, bytes).expect("write");
        for json_flag in [true, false] {
            let mut args = vec!["inspect", path.to_str().expect("utf-8")];
            if json_flag {
                args.push("--json");
            }
            let output = otaship(&args, dir.path());
            assert_eq!(output.status.code(), Some(2), "{code}");
            assert!(output.stdout.is_empty());
            let stderr = String::from_utf8(output.stderr).expect("utf-8");
            assert!(stderr.starts_with(&format!("error[{code}]: ")), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        }
    }
}

#[test]
fn a_missing_file_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = otaship(&["inspect", "does-not-exist.ipa"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: cannot open does-not-exist.ipa"));
}
