//! The backends a test server runs on. `OTASHIP_TEST_BACKEND=postgres-s3` runs every test on
//! PostgreSQL (a fresh database per server, on the machine's server at 127.0.0.1:5432) and an
//! S3-compatible server (s3s-fs, in this process on loopback, a fresh bucket per server);
//! anything else (the default) runs them on SQLite and local disk. Tests about several instances
//! ask for PostgreSQL and S3 whatever the selection.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use otaship_server::ServeArgs;

/// Credentials the test S3 server accepts.
pub const S3_ACCESS_KEY: &str = "otaship-test";
pub const S3_SECRET_KEY: &str = "otaship-test-secret";

/// The PostgreSQL server the tests use; `OTASHIP_TEST_POSTGRES` overrides it.
pub fn postgres_admin_url() -> String {
    std::env::var("OTASHIP_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    SqliteLocal,
    PostgresS3,
}

pub fn selected() -> Backend {
    match std::env::var("OTASHIP_TEST_BACKEND").as_deref() {
        Ok("postgres-s3") => Backend::PostgresS3,
        Ok("" | "sqlite-local") | Err(_) => Backend::SqliteLocal,
        Ok(other) => panic!("OTASHIP_TEST_BACKEND={other} is not a backend: use sqlite-local or postgres-s3"),
    }
}

/// The in-process S3 server: its endpoint and the directory its buckets live in.
pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
}

/// Starts the S3 server once per test binary, on a thread of its own (each test has its own
/// runtime, which ends with the test).
pub fn s3() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let root = tempfile::Builder::new().prefix("otaship-s3-").tempdir().expect("S3 root").keep();
        let (ready, address) = std::sync::mpsc::channel();
        let served = root.clone();
        std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                ready.send(listener.local_addr().expect("address")).expect("send");
                let mut builder =
                    s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(&served).expect("s3s-fs"));
                builder.set_auth(s3s::auth::SimpleAuth::from_single(S3_ACCESS_KEY, S3_SECRET_KEY));
                let service = std::sync::Arc::new(builder.build());
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let service = std::sync::Arc::clone(&service);
                    tokio::spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let handler = hyper::service::service_fn(move |request| {
                            let service = std::sync::Arc::clone(&service);
                            async move { hyper::service::Service::call(&*service, request).await }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                            .serve_connection(io, handler)
                            .await;
                    });
                }
            });
        });
        let address = address.recv().expect("S3 server started");
        S3Server { endpoint: format!("http://{address}"), root }
    })
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A new, empty bucket.
pub fn new_bucket() -> String {
    let bucket = unique("otaship-test");
    std::fs::create_dir_all(s3().root.join(&bucket)).expect("bucket");
    bucket
}

/// A new, empty PostgreSQL database; its URL.
pub async fn new_postgres_database() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = unique("otaship_t").replace('-', "_");
    let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|error| {
        panic!("PostgreSQL at {admin} is needed (scripts/test starts it; see DEVELOPERS.md): {error}")
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .expect("create database");
    connection.close().await.ok();
    let mut url = url::Url::parse(&admin).expect("URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Points `args` at PostgreSQL and a new bucket (unless a test chose a database or storage).
pub async fn use_postgres_s3(args: &mut ServeArgs) {
    if args.database.is_none() {
        args.database = Some(new_postgres_database().await);
    }
    if args.storage.is_none() {
        args.storage = Some(format!("s3://{}/otaship", new_bucket()));
        args.s3_endpoint = Some(s3().endpoint.clone());
        args.s3_region = Some("us-east-1".to_owned());
        args.s3_access_key_id = Some(S3_ACCESS_KEY.to_owned());
        args.s3_secret_access_key = Some(S3_SECRET_KEY.to_owned());
    }
}
