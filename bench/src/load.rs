//! HTTP load for `bench/load` and `bench/scale`. One engine runs clients that each repeat one
//! operation until a deadline: downloading the build (`download-load`), or downloading and
//! uploading new builds at the same time while the server's memory and CPU are watched
//! (`mixed-load`). Also: how soon a build uploaded to one instance is served by another
//! (`upload-visible`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

/// What one finished operation reports to the engine.
struct Done {
    /// From sending the request to the end of the answer (preparation excluded).
    latency: Duration,
    /// From sending the request to the first byte of the body, when there is a body to wait for.
    first_byte: Option<Duration>,
    /// Whether the body came through a redirect.
    redirected: bool,
    /// Whether its bytes were checked against the expected SHA-256.
    verified: bool,
}

/// One request a client repeats, one after another, until the deadline.
trait Operation: Send + 'static {
    /// Performs it once, adding body bytes to `bytes` as they move.
    fn run(&mut self, bytes: &AtomicU64) -> impl Future<Output = Result<Done>> + Send;
}

/// What one client saw.
#[derive(Default)]
struct ClientReport {
    latencies: Vec<Duration>,
    first_bytes: Vec<Duration>,
    redirected: u64,
    verified: u64,
    /// Failed operations (status, transport, wrong length or digest), with the first message.
    errors: u64,
    first_error: Option<String>,
    /// Whether an operation was cut off by the deadline.
    cut_off: bool,
}

/// Starts one task per operation (one client each), repeating it until `deadline`.
fn start_clients<O: Operation>(
    operations: Vec<O>,
    deadline: tokio::time::Instant,
    bytes: &Arc<AtomicU64>,
) -> Vec<JoinHandle<ClientReport>> {
    operations
        .into_iter()
        .map(|mut operation| {
            let bytes = Arc::clone(bytes);
            tokio::spawn(async move {
                let mut report = ClientReport::default();
                loop {
                    match tokio::time::timeout_at(deadline, operation.run(&bytes)).await {
                        Err(_) => {
                            report.cut_off = true;
                            break;
                        }
                        Ok(Ok(done)) => {
                            report.latencies.push(done.latency);
                            report.first_bytes.extend(done.first_byte);
                            report.redirected += u64::from(done.redirected);
                            report.verified += u64::from(done.verified);
                        }
                        Ok(Err(error)) => {
                            report.errors += 1;
                            report.first_error.get_or_insert_with(|| format!("{error:#}"));
                            // A refused connection would otherwise spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                }
                report
            })
        })
        .collect()
}

/// What a group of clients did, once they have all stopped.
struct Tally {
    clients: usize,
    /// Bytes moved up to the deadline (for downloads, cut-off ones included).
    bytes: u64,
    seconds: f64,
    /// Sorted.
    latencies: Vec<Duration>,
    /// Sorted.
    first_bytes: Vec<Duration>,
    redirected: u64,
    verified: u64,
    errors: u64,
    first_error: Option<String>,
    cut_off: u64,
}

impl Tally {
    async fn collect(
        clients: Vec<JoinHandle<ClientReport>>,
        bytes: &AtomicU64,
        started: Instant,
        duration: Duration,
    ) -> Result<Tally> {
        let mut tally = Tally {
            clients: clients.len(),
            bytes: 0,
            seconds: 0.0,
            latencies: Vec::new(),
            first_bytes: Vec::new(),
            redirected: 0,
            verified: 0,
            errors: 0,
            first_error: None,
            cut_off: 0,
        };
        for client in clients {
            let report = client.await.context("client task")?;
            tally.latencies.extend(report.latencies);
            tally.first_bytes.extend(report.first_bytes);
            tally.redirected += report.redirected;
            tally.verified += report.verified;
            tally.errors += report.errors;
            tally.cut_off += u64::from(report.cut_off);
            if tally.first_error.is_none() {
                tally.first_error = report.first_error;
            }
        }
        // Bytes up to the deadline over the time to it; a few bytes may land between the
        // deadline and the moment a cut-off task notices it, which this ignores.
        tally.seconds = started.elapsed().min(duration).as_secs_f64();
        tally.bytes = bytes.load(Ordering::Relaxed);
        tally.latencies.sort();
        tally.first_bytes.sort();
        Ok(tally)
    }

    fn mib_s(&self) -> f64 {
        self.bytes as f64 / f64::from(1 << 20) / self.seconds.max(f64::EPSILON)
    }
}

/// The `p`th percentile (nearest rank) of sorted durations, in milliseconds; `-` if none.
fn percentile_ms(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    format!("{:.0}", sorted[rank - 1].as_secs_f64() * 1000.0)
}

/// `p50 / p90 / p99 / max` in milliseconds.
fn spread(sorted: &[Duration]) -> String {
    [50.0, 90.0, 99.0, 100.0].map(|p| percentile_ms(sorted, p)).join(" / ")
}

/// An HTTP client of its own (its own connections, like a separate device), trusting `ca` if
/// given besides the system's roots.
fn http_client(ca: Option<&reqwest::Certificate>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().tcp_nodelay(true);
    if let Some(ca) = ca {
        builder = builder.tls_certs_merge([ca.clone()]);
    }
    builder.build().context("HTTP client")
}

/// Reads a PEM certificate (the server's local CA) for [`http_client`].
pub fn read_ca(path: &Path) -> Result<reqwest::Certificate> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    reqwest::Certificate::from_pem(&pem).with_context(|| format!("{} is not a PEM certificate", path.display()))
}

/// Downloads `url` whole, checking its length and, for every `verify_every`th download of all
/// clients together, its SHA-256.
struct Download {
    client: reqwest::Client,
    url: String,
    expect_bytes: Option<u64>,
    expect_sha256: Option<String>,
    /// Downloads started by every client, shared: picks the ones whose bytes are hashed.
    started: Arc<AtomicU64>,
    verify_every: u64,
}

impl Operation for Download {
    async fn run(&mut self, bytes: &AtomicU64) -> Result<Done> {
        let number = self.started.fetch_add(1, Ordering::Relaxed);
        let mut hasher =
            (self.expect_sha256.is_some() && number.is_multiple_of(self.verify_every.max(1))).then(Sha256::new);
        let begun = Instant::now();
        let mut response = self.client.get(&self.url).send().await.context("request")?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            bail!("HTTP {status} from {}", response.url());
        }
        let redirected = response.url().as_str() != self.url;
        let expected = self.expect_bytes.or(response.content_length());
        let mut received = 0u64;
        let mut first_byte = None;
        while let Some(chunk) = response.chunk().await.context("body")? {
            first_byte.get_or_insert_with(|| begun.elapsed());
            received += chunk.len() as u64;
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if let Some(hasher) = &mut hasher {
                hasher.update(&chunk);
            }
        }
        let latency = begun.elapsed();
        if let Some(expected) = expected
            && received != expected
        {
            bail!("{received} bytes instead of {expected}");
        }
        let verified = match (hasher, &self.expect_sha256) {
            (Some(hasher), Some(expected)) => {
                let got = hex(&hasher.finalize());
                if !got.eq_ignore_ascii_case(expected) {
                    bail!("the body's SHA-256 is {got}, not {expected}");
                }
                true
            }
            _ => false,
        };
        Ok(Done { latency, first_byte, redirected, verified })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Uploads a new, distinct build each time (`POST /api/v1/builds`, the `.ipa` as the body) and
/// expects `201 Created`: every build differs in its `CFBundleVersion`, so the server's
/// deduplication (same SHA-256, same build) never spares it the work.
struct Upload {
    client: reqwest::Client,
    /// `…/api/v1/builds`.
    url: String,
    token: String,
    asset_bytes: u64,
    /// Unique to this client in this run, e.g. `4711.3`; each upload appends a count.
    prefix: String,
    count: u64,
}

impl Operation for Upload {
    async fn run(&mut self, bytes: &AtomicU64) -> Result<Done> {
        self.count += 1;
        let build = format!("{}.{}", self.prefix, self.count);
        let asset_bytes = self.asset_bytes;
        // Made before the clock starts: the latency is the server's, not the archive builder's.
        let body = tokio::task::spawn_blocking(move || crate::large_app(asset_bytes, Some(&build)).to_bytes())
            .await
            .context("build the .ipa")?;
        let size = body.len() as u64;
        let begun = Instant::now();
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .context("upload")?;
        let status = response.status();
        let text = response.text().await.context("the upload's answer")?;
        let latency = begun.elapsed();
        if status != reqwest::StatusCode::CREATED {
            bail!("HTTP {status} (expected 201): {}", text.chars().take(300).collect::<String>());
        }
        bytes.fetch_add(size, Ordering::Relaxed);
        Ok(Done { latency, first_byte: None, redirected: false, verified: false })
    }
}

/// Settings of `download-load`.
pub struct LoadSettings {
    /// The URLs to download; client `i` uses `urls[i % urls.len()]`.
    pub urls: Vec<String>,
    /// Concurrent clients, each with its own connections, downloading one after another.
    pub clients: usize,
    /// How long to load; downloads still running then are cut off (their bytes count).
    pub duration: Duration,
    /// The size every download must have (else `Content-Length` is trusted).
    pub expect_bytes: Option<u64>,
    /// A CA to trust besides the system's roots (the server's local CA).
    pub ca: Option<PathBuf>,
}

/// Runs the load and prints one summary line (and the first error, if any).
pub fn download_load(settings: LoadSettings) -> Result<()> {
    if settings.urls.is_empty() || settings.clients == 0 {
        bail!("download-load needs at least one URL and one client");
    }
    let ca = settings.ca.as_deref().map(read_ca).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("runtime")?;
    runtime.block_on(async move {
        let bytes = Arc::new(AtomicU64::new(0));
        let sampler = Arc::new(AtomicU64::new(0));
        let downloads = (0..settings.clients)
            .map(|index| {
                Ok(Download {
                    client: http_client(ca.as_ref())?,
                    url: settings.urls[index % settings.urls.len()].clone(),
                    expect_bytes: settings.expect_bytes,
                    expect_sha256: None,
                    started: Arc::clone(&sampler),
                    verify_every: 1,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + settings.duration);
        let clients = start_clients(downloads, deadline, &bytes);
        let tally = Tally::collect(clients, &bytes, started, settings.duration).await?;
        let p = |p| percentile_ms(&tally.latencies, p);
        println!(
            "RESULT clients={} seconds={:.1} bytes={} mib_s={:.1} downloads={} redirected={} errors={} \
             cut_off={} p50_ms={} p90_ms={} p99_ms={} max_ms={}",
            tally.clients,
            tally.seconds,
            tally.bytes,
            tally.mib_s(),
            tally.latencies.len(),
            tally.redirected,
            tally.errors,
            tally.cut_off,
            p(50.0),
            p(90.0),
            p(99.0),
            p(100.0),
        );
        if let Some(error) = tally.first_error {
            println!("first error: {error}");
        }
        Ok(())
    })
}

/// Settings of `mixed-load`.
pub struct MixedSettings {
    /// The `.ipa` every download client fetches whole, one download after another.
    pub download_url: String,
    pub download_clients: usize,
    /// Its exact length, and its SHA-256 (hex), checked on every `verify_every`th download.
    pub expect_bytes: u64,
    pub expect_sha256: String,
    pub verify_every: u64,
    /// The server's base URL, e.g. `https://127.0.0.1:8443`, for `POST /api/v1/builds`.
    pub upload_to: String,
    pub upload_clients: usize,
    /// The size of each uploaded build's large asset (the `.ipa` is a few hundred KiB more).
    pub upload_asset_bytes: u64,
    /// A token allowed to upload.
    pub token: String,
    pub duration: Duration,
    /// A CA to trust besides the system's roots (the server's local CA).
    pub ca: Option<PathBuf>,
    /// The server process to watch (memory and CPU), and the kernel's clock ticks per second.
    pub server_pid: Option<u32>,
    pub clock_ticks: u64,
    /// The memory target, in MiB.
    pub memory_target_mib: f64,
}

/// Runs downloads and uploads at the same time for the duration, watching the server; prints
/// figures, a verdict per target, and `RESULT load.KEY=VALUE` lines for `bench/all`.
pub fn mixed_load(settings: MixedSettings) -> Result<()> {
    if settings.download_clients == 0 && settings.upload_clients == 0 {
        bail!("mixed-load needs download or upload clients");
    }
    let ca = settings.ca.as_deref().map(read_ca).transpose()?;
    let watched = settings.server_pid.map(|pid| Watched::start(pid, settings.clock_ticks)).transpose()?;
    let own_ticks_before = cpu_ticks(std::process::id())?;
    let machine_before = MachineCpu::read(settings.clock_ticks)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("runtime")?;
    // The clients stop at the deadline by themselves; this only turns a hang into an error.
    let limit = settings.duration + Duration::from_secs(120);
    let (downloads, uploads, memory) = runtime.block_on(async {
        tokio::time::timeout(limit, run_mixed(&settings, ca.as_ref(), watched.as_ref()))
            .await
            .with_context(|| format!("the load did not end within {limit:?}"))?
    })?;

    let machine = MachineCpu::read(settings.clock_ticks)?.since(&machine_before);
    let own_cpu =
        cpu_ticks(std::process::id())?.saturating_sub(own_ticks_before) as f64 / settings.clock_ticks.max(1) as f64;
    let mut results: Vec<(String, String)> = Vec::new();
    println!(
        "downloads: {} clients, {} whole downloads ({} checked by SHA-256), {:.2} GiB in {:.1} s = {:.1} MiB/s; \
         {} cut off at the end (their bytes count, their latency does not)",
        downloads.clients,
        downloads.latencies.len(),
        downloads.verified,
        downloads.bytes as f64 / f64::from(1 << 30),
        downloads.seconds,
        downloads.mib_s(),
        downloads.cut_off,
    );
    println!("  whole download, p50 / p90 / p99 / max: {} ms", spread(&downloads.latencies));
    println!("  first byte of the body, p50 / p90 / p99 / max: {} ms", spread(&downloads.first_bytes));
    println!("  errors: {}{}", downloads.errors, first_error(&downloads));
    println!(
        "uploads: {} clients, {} builds created (201), {:.2} GiB = {:.1} MiB/s (bytes of finished uploads); \
         {} cut off at the end",
        uploads.clients,
        uploads.latencies.len(),
        uploads.bytes as f64 / f64::from(1 << 30),
        uploads.mib_s(),
        uploads.cut_off,
    );
    println!("  whole upload (request to 201), p50 / p90 / p99 / max: {} ms", spread(&uploads.latencies));
    println!("  errors: {}{}", uploads.errors, first_error(&uploads));
    for (prefix, tally) in [("download", &downloads), ("upload", &uploads)] {
        let key = |name: &str| format!("{prefix}_{name}");
        results.push((key("clients"), tally.clients.to_string()));
        results.push((key("done"), tally.latencies.len().to_string()));
        results.push((key("bytes"), tally.bytes.to_string()));
        results.push((key("mib_s"), format!("{:.1}", tally.mib_s())));
        for (name, p) in [("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("max_ms", 100.0)] {
            results.push((key(name), percentile_ms(&tally.latencies, p)));
        }
        results.push((key("errors"), tally.errors.to_string()));
        results.push((key("cut_off"), tally.cut_off.to_string()));
    }
    for (name, p) in [("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("max_ms", 100.0)] {
        results.push((format!("download_first_byte_{name}"), percentile_ms(&downloads.first_bytes, p)));
    }
    results.push(("download_verified".to_owned(), downloads.verified.to_string()));
    results.push(("seconds".to_owned(), format!("{:.1}", downloads.seconds.max(uploads.seconds))));

    let errors = downloads.errors + uploads.errors;
    println!(
        "target: no errors: {} ({} download errors, {} upload errors)",
        if errors == 0 { "met" } else { "MISSED" },
        downloads.errors,
        uploads.errors
    );
    results.push(("errors".to_owned(), errors.to_string()));
    results.push(("errors_met".to_owned(), (errors == 0).to_string()));
    if let (Some(watched), Some(memory)) = (&watched, memory) {
        let report = watched.finish(memory)?;
        let peak = report.peak_mib();
        println!(
            "server (pid {}): VmHWM {:.1} MiB ({}), largest VmRSS of {} samples (every 0.1 s) {:.1} MiB; \
             CPU {:.1} s user + system = {:.2} cores over the run",
            watched.pid,
            report.hwm_kib as f64 / 1024.0,
            if watched.hwm_reset {
                "peak since the load began: reset through clear_refs"
            } else {
                "peak since the server started: clear_refs could not reset it"
            },
            report.samples,
            report.max_rss_kib as f64 / 1024.0,
            report.cpu_seconds,
            report.cpu_seconds / downloads.seconds.max(uploads.seconds).max(f64::EPSILON),
        );
        let met = peak < settings.memory_target_mib;
        println!(
            "target: server memory under {:.0} MiB: {} (peak {peak:.1} MiB)",
            settings.memory_target_mib,
            if met { "met" } else { "MISSED" }
        );
        results.push(("server_hwm_mib".to_owned(), format!("{:.1}", report.hwm_kib as f64 / 1024.0)));
        results.push(("server_max_rss_mib".to_owned(), format!("{:.1}", report.max_rss_kib as f64 / 1024.0)));
        results.push(("server_peak_mib".to_owned(), format!("{peak:.1}")));
        results.push(("server_cpu_s".to_owned(), format!("{:.1}", report.cpu_seconds)));
        results.push(("memory_met".to_owned(), met.to_string()));
    }
    // Where the machine's CPU went: what the server and the load generator used, and the rest
    // (other processes, and the kernel's interrupt work for loopback TCP, charged to no process).
    let server_cpu = results
        .iter()
        .find(|(key, _)| key == "server_cpu_s")
        .and_then(|(_, value)| value.parse::<f64>().ok())
        .unwrap_or(0.0);
    let cores = machine.cores as f64;
    println!(
        "machine: {:.1} of {:.1} CPU-seconds busy ({:.0}%): server {server_cpu:.1}, load generator {own_cpu:.1}, \
         interrupts {:.1}, the rest (other processes) {:.1}",
        machine.busy,
        machine.busy + machine.idle,
        machine.busy * 100.0 / (machine.busy + machine.idle).max(f64::EPSILON),
        machine.interrupts,
        (machine.busy - server_cpu - own_cpu - machine.interrupts).max(0.0),
    );
    results.push(("client_cpu_s".to_owned(), format!("{own_cpu:.1}")));
    results.push((
        "machine_busy_pct".to_owned(),
        format!("{:.0}", machine.busy * 100.0 / (machine.busy + machine.idle).max(f64::EPSILON)),
    ));
    results.push(("machine_cores".to_owned(), format!("{cores:.0}")));
    for (key, value) in results {
        println!("RESULT load.{key}={value}");
    }
    Ok(())
}

/// The clients of `mixed-load`, from start to deadline, and the memory samples of the server.
async fn run_mixed(
    settings: &MixedSettings,
    ca: Option<&reqwest::Certificate>,
    watched: Option<&Watched>,
) -> Result<(Tally, Tally, Option<(u64, u64)>)> {
    let sampler = Arc::new(AtomicU64::new(0));
    let download_ops = (0..settings.download_clients)
        .map(|_| {
            Ok(Download {
                client: http_client(ca)?,
                url: settings.download_url.clone(),
                expect_bytes: Some(settings.expect_bytes),
                expect_sha256: Some(settings.expect_sha256.clone()),
                started: Arc::clone(&sampler),
                verify_every: settings.verify_every,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let upload_ops = (0..settings.upload_clients)
        .map(|index| {
            Ok(Upload {
                client: http_client(ca)?,
                url: format!("{}/api/v1/builds", settings.upload_to.trim_end_matches('/')),
                token: settings.token.clone(),
                asset_bytes: settings.upload_asset_bytes,
                prefix: format!("{}.{index}", std::process::id()),
                count: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (download_bytes, upload_bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + settings.duration);
    let memory = watched.map(|watched| tokio::spawn(sample_rss(watched.pid, deadline)));
    let download_clients = start_clients(download_ops, deadline, &download_bytes);
    let upload_clients = start_clients(upload_ops, deadline, &upload_bytes);
    let downloads = Tally::collect(download_clients, &download_bytes, started, settings.duration).await?;
    let uploads = Tally::collect(upload_clients, &upload_bytes, started, settings.duration).await?;
    let memory = match memory {
        Some(task) => Some(task.await.context("memory sampler")?),
        None => None,
    };
    Ok((downloads, uploads, memory))
}

fn first_error(tally: &Tally) -> String {
    tally.first_error.as_ref().map(|error| format!(" (first: {error})")).unwrap_or_default()
}

/// The server process being watched: its CPU time when the load began, and whether its
/// high-water mark of resident memory was reset then.
struct Watched {
    pid: u32,
    clock_ticks: u64,
    cpu_ticks_before: u64,
    hwm_reset: bool,
}

/// What the server used during the load.
struct MemoryReport {
    hwm_kib: u64,
    max_rss_kib: u64,
    samples: u64,
    cpu_seconds: f64,
}

impl MemoryReport {
    fn peak_mib(&self) -> f64 {
        self.hwm_kib.max(self.max_rss_kib) as f64 / 1024.0
    }
}

impl Watched {
    fn start(pid: u32, clock_ticks: u64) -> Result<Watched> {
        let cpu_ticks_before = cpu_ticks(pid)?;
        // Writing 5 to clear_refs resets VmHWM to the current VmRSS (Linux 4.0 and later), so
        // that the peak is the load's, not the set-up's (the upload of the downloaded build).
        let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        Ok(Watched { pid, clock_ticks: clock_ticks.max(1), cpu_ticks_before, hwm_reset })
    }

    fn finish(&self, (max_rss_kib, samples): (u64, u64)) -> Result<MemoryReport> {
        let hwm_kib = status_kib(self.pid, "VmHWM")?;
        let used = cpu_ticks(self.pid)?.saturating_sub(self.cpu_ticks_before);
        Ok(MemoryReport { hwm_kib, max_rss_kib, samples, cpu_seconds: used as f64 / self.clock_ticks as f64 })
    }
}

/// The machine's CPU time from `/proc/stat`, in seconds.
struct MachineCpu {
    busy: f64,
    idle: f64,
    interrupts: f64,
    cores: usize,
}

impl MachineCpu {
    fn read(clock_ticks: u64) -> Result<MachineCpu> {
        let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
        let total = stat.lines().find(|line| line.starts_with("cpu ")).context("no cpu line in /proc/stat")?;
        // user nice system idle iowait irq softirq steal ...
        let fields: Vec<f64> = total.split_whitespace().skip(1).filter_map(|value| value.parse().ok()).collect();
        let field = |index: usize| fields.get(index).copied().unwrap_or(0.0) / clock_ticks.max(1) as f64;
        let cores = stat.lines().filter(|line| line.starts_with("cpu") && !line.starts_with("cpu ")).count();
        Ok(MachineCpu {
            busy: field(0) + field(1) + field(2) + field(5) + field(6) + field(7),
            idle: field(3) + field(4),
            interrupts: field(5) + field(6),
            cores,
        })
    }

    fn since(&self, before: &MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy - before.busy,
            idle: self.idle - before.idle,
            interrupts: self.interrupts - before.interrupts,
            cores: self.cores,
        }
    }
}

/// Samples the process's `VmRSS` every 0.1 s until the deadline: the largest, and how many
/// samples. A process that is gone ends the sampling (the report then says so by its count).
async fn sample_rss(pid: u32, deadline: tokio::time::Instant) -> (u64, u64) {
    let (mut max, mut samples) = (0, 0);
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    while tokio::time::Instant::now() < deadline {
        ticks.tick().await;
        match status_kib(pid, "VmRSS") {
            Ok(kib) => {
                max = max.max(kib);
                samples += 1;
            }
            Err(_) => break,
        }
    }
    (max, samples)
}

/// A `kB` line of `/proc/PID/status`.
fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("no {key} in {path}"))
}

/// User + system CPU time of the process (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // The command name, in parentheses, may hold spaces; the fields after it are plain.
    // After it: state (field 3) ... utime (14), stime (15).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let field = |index: usize| -> Result<u64> {
        fields.get(index).and_then(|value| value.parse().ok()).with_context(|| format!("{path} is not as expected"))
    };
    Ok(field(11)? + field(12)?)
}

/// Settings of `upload-visible`.
pub struct VisibleSettings {
    /// Base URL of the instance uploaded to, e.g. http://127.0.0.1:8080.
    pub to: String,
    /// Base URL of the instance polled.
    pub poll: String,
    /// Bearer token.
    pub token: String,
    /// The `.ipa` files, uploaded one after another.
    pub files: Vec<PathBuf>,
}

/// Uploads each file to one instance (`POST /api/v1/builds`); from the moment its answer
/// arrives, polls the install page on the other until it answers 200, then asks the other for
/// the first byte of the `.ipa`. Prints one line per build and a summary.
pub fn upload_visible(settings: VisibleSettings) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("runtime")?;
    runtime.block_on(async move {
        let client = http_client(None)?;
        let (mut page_times, mut byte_times) = (Vec::new(), Vec::new());
        for file in &settings.files {
            let body = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            let size = body.len();
            let upload_started = Instant::now();
            let response = client
                .post(format!("{}/api/v1/builds", settings.to))
                .bearer_auth(&settings.token)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .context("upload")?;
            let status = response.status();
            let text = response.text().await.context("upload answer")?;
            let answered = Instant::now();
            if status != reqwest::StatusCode::CREATED {
                bail!("the upload of {} answered HTTP {status}: {text}", file.display());
            }
            let build: serde_json::Value = serde_json::from_str(&text).context("upload answer is not JSON")?;
            let swap = |key: &str| -> Result<String> {
                let url = build[key].as_str().with_context(|| format!("no {key} in {text}"))?;
                let path =
                    url.strip_prefix(&settings.to).with_context(|| format!("{url} is not under {}", settings.to))?;
                Ok(format!("{}{path}", settings.poll))
            };
            let install_url = swap("install_url")?;
            let download_url = swap("download_url")?;
            let mut polls = 0u32;
            loop {
                polls += 1;
                let status = client.get(&install_url).send().await.context("poll")?.status();
                if status == reqwest::StatusCode::OK {
                    break;
                }
                if answered.elapsed() > Duration::from_secs(30) {
                    bail!("{install_url} still answers HTTP {status} 30 s after the upload");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let page = answered.elapsed();
            let first = client.get(&download_url).header("range", "bytes=0-0").send().await.context("range")?;
            if first.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                bail!("{download_url} answered HTTP {} to a range", first.status());
            }
            first.bytes().await.context("range body")?;
            let byte = answered.elapsed();
            println!(
                "{}: {size} bytes uploaded in {:.1} ms; install page on the other instance 200 after {:.2} ms \
                 ({polls} poll(s)), first byte of the .ipa after {:.2} ms",
                file.file_name().map(|name| name.to_string_lossy()).unwrap_or_default(),
                (answered - upload_started).as_secs_f64() * 1000.0,
                page.as_secs_f64() * 1000.0,
                byte.as_secs_f64() * 1000.0,
            );
            page_times.push(page);
            byte_times.push(byte);
        }
        let summary = |times: &mut Vec<Duration>| -> (f64, f64) {
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            (times.get((times.len().max(1) - 1) / 2).copied().map_or(0.0, ms), times.last().copied().map_or(0.0, ms))
        };
        let (page_median, page_max) = summary(&mut page_times);
        let (byte_median, byte_max) = summary(&mut byte_times);
        println!(
            "RESULT builds={} page_median_ms={page_median:.2} page_max_ms={page_max:.2} \
             byte_median_ms={byte_median:.2} byte_max_ms={byte_max:.2}",
            settings.files.len()
        );
        Ok(())
    })
}
