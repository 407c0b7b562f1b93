//! `otaship serve` and `otaship token` as a person runs them: bad settings stop it at once with a
//! sentence that says how to fix them, and a good start says where to go.
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn otaship(args: &[&str], data_dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otaship"))
        .args(args)
        .env("OTASHIP_DATA_DIR", data_dir)
        .env_remove("OTASHIP_ADMIN_TOKEN")
        .output()
        .expect("runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_settings_stop_the_server_with_a_way_to_fix_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let cases: [(&[&str], &str); 4] = [
        (&["serve", "--tls", "off", "--listen", &listen], "is another server using it? Choose another --listen"),
        (&["serve", "--public-url", "ftp://example.com"], "must start with https://"),
        (&["serve", "--tls", "off", "--public-url", "http://ota.example.com"], "--insecure-http"),
        (&["serve", "--listen", "somewhere"], "write it like 0.0.0.0:8443"),
    ];
    for (args, sentence) in cases {
        let output = otaship(args, dir.path());
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(stderr(&output).contains(sentence), "{args:?}: {}", stderr(&output));
    }
    // A data directory that cannot be created (a file is in the way).
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"in the way").expect("write");
    let output = otaship(&["serve", "--tls", "off", "--listen", "127.0.0.1:0"], &blocker.join("data"));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("choose a writable --data-dir"), "{}", stderr(&output));
}

#[test]
fn tokens_are_printed_once_and_listed_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let created = otaship(&["token", "create", "--name", "ci"], dir.path());
    assert!(created.status.success(), "{}", stderr(&created));
    let token = String::from_utf8(created.stdout).expect("utf-8");
    assert!(token.trim().starts_with("ots_") && token.lines().count() == 1, "only the token: {token:?}");
    let listed = otaship(&["token", "list"], dir.path());
    let listed = String::from_utf8(listed.stdout).expect("utf-8");
    assert!(listed.contains("ci") && !listed.contains(token.trim()), "{listed}");
}

#[test]
fn a_good_start_says_where_to_go_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_otaship"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .env("OTASHIP_DATA_DIR", dir.path())
        .env("OTASHIP_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.contains("data directory");
        seen.push(line);
        if done {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(text.contains("(HTTPS, local CA)") && text.contains("(plain-HTTP helper)"), "{text}");
    assert!(text.contains("web UI for uploads:  https://127.0.0.1:"), "{text}");
    assert!(text.contains("first open http://127.0.0.1:") && text.contains("to trust this server"), "{text}");
    assert!(dir.path().join("tls/ca.crt").exists());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let status = child.wait().expect("exits");
    assert!(status.success(), "a clean shutdown on SIGTERM: {status}");
}
