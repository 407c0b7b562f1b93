//! `otaship token create --scope` and `otaship account` as a person runs them, on a data
//! directory's SQLite database: what they print, what they refuse, and what they store.
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use otaship_server::accounts::Role;
use otaship_server::db::{AccountRow, DatabaseUrl, Db};

fn otaship(args: &[&str], data_dir: &std::path::Path, stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otaship"))
        .args(args)
        .env("OTASHIP_DATA_DIR", data_dir)
        .env_remove("OTASHIP_DATABASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("waits")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// Opens the data directory's database as the server does, for one look.
async fn database(dir: &std::path::Path) -> Db {
    Db::open(&DatabaseUrl::Sqlite(dir.join("otaship.db"))).await.expect("database")
}

/// The stored account and its password hash.
fn stored_account(dir: &std::path::Path, username: &str) -> Option<(AccountRow, String)> {
    block_on(async {
        let db = database(dir).await;
        let found = db.account_by_username(username).await.expect("read");
        db.close().await;
        found
    })
}

fn verifies(password: &str, hash: &str) -> bool {
    block_on(otaship_server::accounts::verify_password(password.to_owned(), Some(hash.to_owned()))).expect("verify")
}

#[test]
fn tokens_are_created_with_a_scope_and_listed_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upload = otaship(&["token", "create", "ci", "--scope", "upload"], dir.path(), None);
    assert!(upload.status.success(), "{}", stderr(&upload));
    assert!(stdout(&upload).trim().starts_with("ots_") && stdout(&upload).lines().count() == 1);
    let admin = otaship(&["token", "create", "--name", "laptop"], dir.path(), None);
    assert!(admin.status.success(), "{}", stderr(&admin));
    let listed = stdout(&otaship(&["token", "list"], dir.path(), None));
    assert!(listed.lines().next().expect("header").contains("SCOPE"), "{listed}");
    let line = |name: &str| listed.lines().find(|line| line.contains(name)).expect("listed").to_owned();
    assert!(line("ci").contains(" upload "), "{listed}");
    assert!(line("laptop").contains(" admin "), "the default scope is admin: {listed}");
    assert!(!listed.contains(stdout(&upload).trim()), "secrets are never listed");

    let scopes: Vec<(String, &str)> = block_on(async {
        let db = database(dir.path()).await;
        let tokens = db.list_tokens().await.expect("tokens");
        db.close().await;
        tokens
    })
    .into_iter()
    .map(|token| (token.name, token.scope.as_str()))
    .collect();
    assert!(scopes.contains(&("ci".to_owned(), "upload")) && scopes.contains(&("laptop".to_owned(), "admin")));

    let bad = otaship(&["token", "create", "x", "--scope", "everything"], dir.path(), None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--scope") && stderr(&bad).contains("upload"), "{}", stderr(&bad));
    let both = otaship(&["token", "create", "x", "--name", "y"], dir.path(), None);
    assert_eq!(both.status.code(), Some(2), "NAME or --name, not both");
}

#[test]
fn accounts_are_created_listed_changed_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");

    // A generated password, printed once on stdout.
    let created = otaship(&["account", "create", "Alice", "--role", "uploader"], dir.path(), None);
    assert!(created.status.success(), "{}", stderr(&created));
    let password = stdout(&created).trim().to_owned();
    assert_eq!(stdout(&created).lines().count(), 1, "only the password on stdout");
    assert_eq!(password.len(), 23, "{password}");
    assert!(stderr(&created).contains("created the account Alice (uploader)"), "{}", stderr(&created));

    let (account, hash) = stored_account(dir.path(), "alice").expect("stored");
    assert_eq!((account.username.as_str(), account.role), ("Alice", Role::Uploader));
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&password), "{hash}");
    assert!(verifies(&password, &hash));

    // A password from standard input, checked.
    let short =
        otaship(&["account", "create", "bob", "--role", "admin", "--password-stdin"], dir.path(), Some("short\n"));
    assert_eq!(short.status.code(), Some(2));
    assert!(stderr(&short).contains("at least 10 characters"), "{}", stderr(&short));
    let typed = "correct horse battery staple";
    let bob = otaship(
        &["account", "create", "bob", "--role", "admin", "--password-stdin"],
        dir.path(),
        Some(&format!("{typed}\r\n")),
    );
    assert!(bob.status.success(), "{}", stderr(&bob));
    assert_eq!(stdout(&bob), "created the account bob (admin)\n");
    let (_, bob_hash) = stored_account(dir.path(), "BOB").expect("stored");
    assert!(verifies(typed, &bob_hash));

    // Refusals.
    let taken = otaship(&["account", "create", "ALICE", "--role", "admin"], dir.path(), None);
    assert_eq!(taken.status.code(), Some(2));
    assert!(stderr(&taken).contains("error[account-exists]"), "{}", stderr(&taken));
    let bad_name = otaship(&["account", "create", "al ice", "--role", "admin"], dir.path(), None);
    assert_eq!(bad_name.status.code(), Some(2));
    assert!(stderr(&bad_name).contains("A username may hold only"), "{}", stderr(&bad_name));
    let bad_role = otaship(&["account", "create", "carol", "--role", "owner"], dir.path(), None);
    assert_eq!(bad_role.status.code(), Some(2));

    let listed = stdout(&otaship(&["account", "list"], dir.path(), None));
    let line = |name: &str| listed.lines().find(|line| line.starts_with(name)).expect("listed").to_owned();
    assert!(line("Alice").contains(" uploader ") && line("Alice").ends_with("never"), "{listed}");
    assert!(line("bob").contains(" admin "), "{listed}");
    assert!(!listed.contains(&password) && !listed.contains("argon2"), "{listed}");

    // Role and password.
    let promoted = otaship(&["account", "set-role", "alice", "admin"], dir.path(), None);
    assert_eq!(stdout(&promoted), "Alice is now admin\n", "{}", stderr(&promoted));
    let reset = otaship(&["account", "set-password", "alice"], dir.path(), None);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let new_password = stdout(&reset).trim().to_owned();
    assert_ne!(new_password, password);
    let (account, hash) = stored_account(dir.path(), "alice").expect("stored");
    assert_eq!(account.role, Role::Admin);
    assert!(!verifies(&password, &hash));
    assert!(verifies(&new_password, &hash));
    let typed_again = otaship(&["account", "set-password", "bob", "--password-stdin"], dir.path(), Some("tiny"));
    assert_eq!(typed_again.status.code(), Some(2));

    // Delete: the account and its web sessions.
    let session_alive = |dir: &std::path::Path| {
        block_on(async {
            let db = database(dir).await;
            let session = db.session("cli-test-session").await.expect("read");
            db.close().await;
            session.is_some()
        })
    };
    block_on(async {
        let db = database(dir.path()).await;
        let later = time::OffsetDateTime::now_utc() + time::Duration::HOUR;
        db.insert_account_session("cli-test-session", &account.id, "csrf", later).await.expect("session");
        db.close().await;
    });
    assert!(session_alive(dir.path()));
    let deleted = otaship(&["account", "delete", "ALICE"], dir.path(), None);
    assert_eq!(stdout(&deleted), "deleted the account Alice; its sessions ended\n", "{}", stderr(&deleted));
    assert!(stored_account(dir.path(), "alice").is_none());
    assert!(!session_alive(dir.path()), "deleting the account ended its session");
    let again = otaship(&["account", "delete", "alice"], dir.path(), None);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("error[no-such-account]"), "{}", stderr(&again));
    for args in [&["account", "set-role", "nobody", "admin"][..], &["account", "set-password", "nobody"][..]] {
        let missing = otaship(args, dir.path(), None);
        assert_eq!(missing.status.code(), Some(2), "{args:?}");
    }
}
