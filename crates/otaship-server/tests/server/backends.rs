//! The backends a test server runs on. `OTASHIP_TEST_BACKEND=postgres-s3` runs every test on
//! PostgreSQL (a fresh database per server, on the machine's server at 127.0.0.1:5432) and an
//! S3-compatible server (s3s-fs, in this process on loopback, a fresh bucket per server);
//! anything else (the default) runs them on SQLite and local disk. Tests about several instances
//! ask for PostgreSQL and S3 whatever the selection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    _serving: S3Process,
}

/// Starts the S3 server once per test binary (each test has its own runtime, which ends with
/// the test; the server outlives them on a thread of its own).
pub fn s3() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let root = tempfile::Builder::new().prefix("otaship-s3-").tempdir().expect("S3 root").keep();
        let serving = S3Process::start(&root, SocketAddr::from(([127, 0, 0, 1], 0)));
        S3Server { endpoint: serving.endpoint(), root, _serving: serving }
    })
}

/// An S3-compatible server (s3s-fs) serving the buckets under a directory, on loopback, on a
/// thread and runtime of its own, until stopped or dropped.
pub struct S3Process {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Process {
    /// Serves `root` at `address` (port 0: any free port).
    pub fn start(root: &Path, address: SocketAddr) -> S3Process {
        let (ready, bound) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = root.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(address).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        ready.send(Err(error)).expect("send");
                        return;
                    }
                };
                ready.send(listener.local_addr()).expect("send");
                let mut builder =
                    s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(&served).expect("s3s-fs"));
                builder.set_auth(s3s::auth::SimpleAuth::from_single(S3_ACCESS_KEY, S3_SECRET_KEY));
                let service = std::sync::Arc::new(builder.build());
                let mut connections = tokio::task::JoinSet::new();
                let mut stopped = std::pin::pin!(stopped);
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                        _ = &mut stopped => break,
                    };
                    let service = std::sync::Arc::clone(&service);
                    connections.spawn(async move {
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
                // Stopped: the listener closes, and so does every connection, mid-request or idle.
                drop(listener);
                connections.shutdown().await;
            });
        });
        let address = bound
            .recv()
            .expect("S3 server started")
            .unwrap_or_else(|error| panic!("the test S3 server cannot listen on {address}: {error}"));
        S3Process { address, stop: Some(stop), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Closes the listener and every connection; returns once they are closed.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the S3 server's thread ended cleanly");
        }
    }
}

impl Drop for S3Process {
    fn drop(&mut self) {
        self.stop();
    }
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
