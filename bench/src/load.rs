//! HTTP load for `bench/scale`: many clients downloading one build for a fixed time
//! (`download-load`), and how soon a build uploaded to one instance is served by another
//! (`upload-visible`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

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
}

/// What one client saw.
#[derive(Default)]
struct ClientReport {
    /// Whole downloads finished before the deadline, and how long each took.
    latencies: Vec<Duration>,
    /// Of those, how many reached the body through a redirect.
    redirected: u64,
    /// Failed requests (status, transport, wrong length), with the first message.
    errors: u64,
    first_error: Option<String>,
    /// Whether a download was cut off by the deadline.
    cut_off: bool,
}

/// Runs the load and prints one summary line (and the first error, if any).
pub fn download_load(settings: LoadSettings) -> Result<()> {
    if settings.urls.is_empty() || settings.clients == 0 {
        bail!("download-load needs at least one URL and one client");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("runtime")?;
    runtime.block_on(async move {
        let bytes = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + settings.duration);
        let mut tasks = Vec::with_capacity(settings.clients);
        for index in 0..settings.clients {
            let url = settings.urls[index % settings.urls.len()].clone();
            let bytes = Arc::clone(&bytes);
            // One client per task: its own connection pool, like separate devices.
            let client = reqwest::Client::builder().tcp_nodelay(true).build().context("HTTP client")?;
            let expect = settings.expect_bytes;
            tasks.push(tokio::spawn(async move {
                let mut report = ClientReport::default();
                loop {
                    let begun = Instant::now();
                    match tokio::time::timeout_at(deadline, download(&client, &url, expect, &bytes)).await {
                        Err(_) => {
                            report.cut_off = true;
                            break;
                        }
                        Ok(Ok(redirected)) => {
                            report.latencies.push(begun.elapsed());
                            report.redirected += u64::from(redirected);
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
            }));
        }
        let mut latencies = Vec::new();
        let (mut redirected, mut errors, mut cut_off) = (0, 0, 0);
        let mut first_error = None;
        for task in tasks {
            let report = task.await.context("client task")?;
            latencies.extend(report.latencies);
            redirected += report.redirected;
            errors += report.errors;
            cut_off += u64::from(report.cut_off);
            if first_error.is_none() {
                first_error = report.first_error;
            }
        }
        // Bytes received up to the deadline over the time to it; a few bytes may land between
        // the deadline and the moment a cut-off task notices it, which this ignores.
        let elapsed = started.elapsed().min(settings.duration).as_secs_f64();
        let total = bytes.load(Ordering::Relaxed);
        latencies.sort();
        let percentile = |p: f64| -> String {
            if latencies.is_empty() {
                return "-".to_owned();
            }
            let rank = ((p / 100.0 * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            format!("{:.0}", latencies[rank - 1].as_secs_f64() * 1000.0)
        };
        println!(
            "RESULT clients={} seconds={elapsed:.1} bytes={total} mib_s={:.1} downloads={} redirected={redirected} \
             errors={errors} cut_off={cut_off} p50_ms={} p90_ms={} p99_ms={} max_ms={}",
            settings.clients,
            total as f64 / f64::from(1 << 20) / elapsed,
            latencies.len(),
            percentile(50.0),
            percentile(90.0),
            percentile(99.0),
            percentile(100.0),
        );
        if let Some(error) = first_error {
            println!("first error: {error}");
        }
        Ok(())
    })
}

/// One whole download, counting its bytes as they arrive; whether it followed a redirect.
async fn download(client: &reqwest::Client, url: &str, expect: Option<u64>, bytes: &AtomicU64) -> Result<bool> {
    let mut response = client.get(url).send().await.context("request")?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        bail!("HTTP {status} from {}", response.url());
    }
    let redirected = response.url().as_str() != url;
    let expected = expect.or(response.content_length());
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.context("body")? {
        received += chunk.len() as u64;
        bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    if let Some(expected) = expected
        && received != expected
    {
        bail!("{received} bytes instead of {expected}");
    }
    Ok(redirected)
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
        let client = reqwest::Client::builder().tcp_nodelay(true).build().context("HTTP client")?;
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
