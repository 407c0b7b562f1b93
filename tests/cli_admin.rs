//! The operator commands as an operator runs them: `otaship migrate` (on SQLite and on the
//! machine's PostgreSQL, also several at once) and `otaship migrate-storage` (copy, resume,
//! `--delete-source`, refusal of a move onto itself).
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use otaship_ipa::builder::{IpaBuilder, ZipEntry};
use otaship_server::{AppState, Config, ServeArgs, tokens};

fn otaship() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_otaship"));
    for variable in ["OTASHIP_DATA_DIR", "OTASHIP_DATABASE", "OTASHIP_STORAGE", "OTASHIP_CONFIG", "OTASHIP_ADMIN_TOKEN"]
    {
        command.env_remove(variable);
    }
    command
}

fn run(args: &[&str]) -> Output {
    otaship().args(args).output().expect("otaship runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A fresh database on the machine's PostgreSQL (see DEVELOPERS.md), by `psql`.
fn new_postgres_database(name: &str) -> String {
    let admin =
        std::env::var("OTASHIP_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("otaship_t_{}_{name}", std::process::id());
    let created = Command::new("psql")
        .args([
            admin.as_str(),
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS {name}"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .expect("psql runs (scripts/test installs postgresql-client)");
    assert!(created.success(), "PostgreSQL at {admin} is needed; scripts/test starts it");
    let (base, _) = admin.rsplit_once('/').expect("database in the URL");
    format!("{base}/{name}")
}

#[test]
fn migrate_applies_what_is_pending_once() {
    // SQLite: every migration on a new file, then nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("otaship.db").display());
    let first = run(&["migrate", "--database", &database]);
    assert!(first.status.success(), "{first:?}");
    let text = stdout(&first);
    assert!(
        [
            "applied 1 ",
            "applied 5 devices",
            "applied 6 sharing",
            "applied 7 webhooks",
            "applied 8 accounts",
            "applied 9 retention"
        ]
        .iter()
        .all(|applied| text.contains(applied)),
        "{text}"
    );
    assert!(text.contains("sqlite database") && text.contains("is up to date at migration 9 (retention)"), "{text}");
    let again = run(&["migrate", "--database", &database]);
    assert!(again.status.success());
    assert!(!stdout(&again).contains("applied"), "{}", stdout(&again));

    // PostgreSQL, four at once on a new database: each succeeds, the schema is made once.
    let url = new_postgres_database("migrate");
    let concurrent: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || otaship().args(["migrate", "--database", &url]).output().expect("otaship runs"))
        })
        .collect();
    let mut applied = 0;
    let mut runs_that_applied = 0;
    for output in concurrent.into_iter().map(|thread| thread.join().expect("join")) {
        assert!(output.status.success(), "{output:?}");
        let text = stdout(&output);
        assert!(text.contains("postgres database") && text.contains("up to date"), "{text}");
        assert!(!text.contains("hunter2"));
        applied += text.matches("applied ").count();
        runs_that_applied += usize::from(text.contains("applied "));
    }
    let known = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/crates/otaship-server/migrations/postgres"))
        .expect("migrations")
        .count();
    assert_eq!(applied, known, "every PostgreSQL migration applied once");
    assert_eq!(runs_that_applied, 1, "one run applied them all; the others found them done");

    // A database a newer release migrated further: this release still runs on it (rolling
    // upgrades), since migrations only add.
    let newer = Command::new("psql")
        .args([
            url.as_str(),
            "-q",
            "-c",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from a newer release', true, '\\x00', 0)",
        ])
        .status()
        .expect("psql");
    assert!(newer.success());
    let older = run(&["migrate", "--database", &url]);
    assert!(older.status.success(), "{older:?}");

    // A refused URL says what is supported, without echoing a password.
    let refused = run(&["migrate", "--database", "mysql://admin:hunter2@db/otaship"]);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("postgres://") && !error.contains("hunter2"), "{error}");
}

/// A data directory with two builds, made by a real server (in this process).
fn data_dir_with_builds(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let args = ServeArgs {
            data_dir: Some(dir.to_owned()),
            tls: Some("off".into()),
            listen: Some("127.0.0.1:0".into()),
            ..ServeArgs::default()
        };
        let state = AppState::open(Config::load(&args).expect("config")).await.expect("state");
        let token = tokens::generate();
        state.seed_token(&token).await.expect("token");
        let listeners = otaship_server::bind(&state).await.expect("bind");
        let base = format!("http://{}", listeners.main.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(otaship_server::serve(state, listeners, async {
            let _ = stopped.await;
        }));
        let mut builds = Vec::new();
        for seed in 0..2u8 {
            let ipa = IpaBuilder::new(&format!("com.example.move{seed}"))
                .entry(ZipEntry::stored("Payload/Example.app/Assets.car", vec![seed; 300_000]))
                .to_bytes();
            let response = reqwest::Client::new()
                .post(format!("{base}/api/v1/builds"))
                .bearer_auth(&token)
                .body(ipa.clone())
                .send()
                .await
                .expect("upload");
            assert_eq!(response.status(), reqwest::StatusCode::CREATED);
            let build: serde_json::Value = response.json().await.expect("JSON");
            builds.push((build["id"].as_str().expect("id").to_owned(), ipa));
        }
        let _ = stop.send(());
        served.await.expect("join").expect("clean stop");
        builds
    })
}

fn blob(root: &Path, id: &str) -> PathBuf {
    root.join("builds").join(id).join("app.ipa")
}

#[test]
fn migrate_storage_copies_resumes_and_can_empty_the_source() {
    let data = tempfile::tempdir().expect("tempdir");
    let builds = data_dir_with_builds(data.path());
    let target = tempfile::tempdir().expect("tempdir");
    let to = format!("file://{}", target.path().display());
    let data_dir = path_str(data.path());

    let first = run(&["migrate-storage", "--data-dir", data_dir, "--to", &to]);
    assert!(first.status.success(), "{first:?}");
    let text = stdout(&first);
    assert!(text.contains("2 builds: 2 blobs copied") && text.contains(&format!("--storage {to}")), "{text}");
    for (id, ipa) in &builds {
        assert_eq!(&std::fs::read(blob(target.path(), id)).expect("copied"), ipa);
    }

    // Interrupted: one copy lost. The rerun copies it alone.
    std::fs::remove_file(blob(target.path(), &builds[1].0)).expect("remove");
    let resumed = run(&["migrate-storage", "--data-dir", data_dir, "--to", &to]);
    let text = stdout(&resumed);
    assert!(resumed.status.success() && text.contains("1 blobs copied") && text.contains("1 already there"), "{text}");
    assert!(text.contains(&format!("copied  builds/{}/app.ipa", builds[1].0)), "{text}");

    // With --delete-source the old storage ends empty; the new one keeps everything.
    let moved = run(&["migrate-storage", "--data-dir", data_dir, "--to", &to, "--delete-source"]);
    assert!(moved.status.success(), "{moved:?}");
    assert!(stdout(&moved).contains("2 builds deleted from the old storage"), "{}", stdout(&moved));
    for (id, ipa) in &builds {
        assert!(!blob(&data.path().join("blobs"), id).exists());
        assert_eq!(&std::fs::read(blob(target.path(), id)).expect("kept"), ipa);
    }

    // Onto itself: refused, exit 2.
    let same = run(&["migrate-storage", "--data-dir", data_dir, "--storage", &to, "--to", &to]);
    assert_eq!(same.status.code(), Some(2), "{same:?}");
    assert!(String::from_utf8_lossy(&same.stderr).contains("same-storage"));
}
