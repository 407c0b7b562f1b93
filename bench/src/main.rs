//! Benchmarks that print figures; they are never run as tests (see docs/PERFORMANCE.md).
//!
//! - `otaship-bench inspect [DIR] [--ipa PATH]`: builds a 1 GiB `.ipa` (a large stored asset
//!   beside a realistic app: 3,000 files, an icon, a profile), or takes the one `make-ipa` wrote
//!   to `PATH`, and inspects it repeatedly, printing wall time and exactly how many bytes the
//!   reader asked of the file.
//! - `otaship-bench hostile-corpus DIR`: writes the hostile archives that `bench/inspect`
//!   feeds to the real binary to measure its time and peak memory on each.
//! - `otaship-bench make-ipa PATH [--asset-bytes N] [--build B]`: writes the same 1 GiB `.ipa`
//!   to `PATH`, for `bench/serve` to upload and download; `--asset-bytes` sets the size of its
//!   large asset instead, `--build` its `CFBundleVersion` (distinct builds of one app).
//! - `otaship-bench s3-server --root DIR --listen ADDR --access-key K --secret-key S
//!   [--read-chunk N]`: an S3-compatible server (s3s-fs, object bodies read in chunks of N
//!   bytes, default 1 MiB; 0 for s3s-fs's own 4 KiB reads) for `bench/scale`; runs until killed.
//! - `otaship-bench download-load --urls U1,U2 --clients N --duration 20s [--expect-bytes N]
//!   [--ca FILE]`: N clients downloading one after another for that long; prints throughput,
//!   downloads, errors and latency percentiles of a whole download.
//! - `otaship-bench mixed-load ...` (see its usage): for `bench/load`, clients downloading one
//!   build whole and others uploading new builds, all at once for a fixed time, while the
//!   server's memory and CPU are watched; prints figures and a verdict per target.
//! - `otaship-bench upload-visible --to URL --poll URL --token T FILE...`: uploads each file to
//!   one instance and times until another serves its install page.

mod load;
mod s3;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use otaship_ipa::builder::{Data, IpaBuilder, Method, PlistFormat, ZipBuilder, ZipEntry, plist_bytes, profile_plist};
use otaship_ipa::{CountingSource, FileSource, InspectOptions, inspect_ipa};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("inspect") => {
            let usage = "usage: otaship-bench inspect [DIR] [--ipa PATH]";
            let (positional, mut flags) = parse_flags(&args[1..], usage)?;
            let given = flags.remove("ipa").map(PathBuf::from);
            no_more_flags(flags, usage)?;
            let dir = match positional.as_slice() {
                [] => std::env::temp_dir(),
                [dir] => PathBuf::from(dir),
                _ => bail!(usage),
            };
            inspect_large(&dir, given.as_deref())
        }
        Some("hostile-corpus") => {
            let dir = args.get(1).context("usage: otaship-bench hostile-corpus DIR")?;
            hostile_corpus(Path::new(dir))
        }
        Some("make-ipa") => {
            let usage = "usage: otaship-bench make-ipa PATH [--asset-bytes N] [--build B]";
            let (positional, mut flags) = parse_flags(&args[1..], usage)?;
            let [path] = positional.as_slice() else { bail!(usage) };
            let asset = match flags.remove("asset-bytes") {
                Some(text) => text.parse().with_context(|| format!("--asset-bytes {text:?}"))?,
                None => 1 << 30,
            };
            let build = flags.remove("build");
            no_more_flags(flags, usage)?;
            let app = large_app(asset, build.as_deref());
            let size = app.zip().write_to(BufWriter::new(File::create(path).context("create the .ipa")?))?;
            println!("wrote {path} ({size} bytes)");
            Ok(())
        }
        Some("s3-server") => {
            let usage = "usage: otaship-bench s3-server --root DIR --listen ADDR --access-key K --secret-key S [--read-chunk N]";
            let (positional, mut flags) = parse_flags(&args[1..], usage)?;
            let read_chunk = match flags.remove("read-chunk") {
                Some(text) => text.parse().with_context(|| format!("--read-chunk {text:?}"))?,
                None => 1 << 20,
            };
            let mut take = |name: &str| flags.remove(name).with_context(|| format!("--{name} is missing; {usage}"));
            let settings = s3::S3Settings {
                root: PathBuf::from(take("root")?),
                listen: take("listen")?,
                access_key: take("access-key")?,
                secret_key: take("secret-key")?,
                read_chunk,
            };
            if !positional.is_empty() {
                bail!(usage);
            }
            no_more_flags(flags, usage)?;
            s3::serve(settings)
        }
        Some("download-load") => {
            let usage = "usage: otaship-bench download-load --urls U1,U2 --clients N --duration 20s [--expect-bytes N] \
                         [--ca FILE]";
            let (positional, mut flags) = parse_flags(&args[1..], usage)?;
            let urls = flags.remove("urls").with_context(|| format!("--urls is missing; {usage}"))?;
            let clients = number(flags.remove("clients"), "clients")?.unwrap_or(1);
            let duration = duration(flags.remove("duration"))?.unwrap_or(Duration::from_secs(20));
            let expect_bytes = number(flags.remove("expect-bytes"), "expect-bytes")?;
            let ca = flags.remove("ca").map(PathBuf::from);
            if !positional.is_empty() {
                bail!(usage);
            }
            no_more_flags(flags, usage)?;
            load::download_load(load::LoadSettings {
                urls: urls.split(',').filter(|url| !url.is_empty()).map(str::to_owned).collect(),
                clients,
                duration,
                expect_bytes,
                ca,
            })
        }
        Some("mixed-load") => {
            let usage = "usage: otaship-bench mixed-load --download-url URL --expect-bytes N --expect-sha256 HEX \
                         [--download-clients 200] [--verify-every 10] --upload-to BASE_URL --token T \
                         [--upload-clients 10] [--upload-asset-bytes 15728640] [--duration 60s] [--ca FILE] \
                         [--server-pid PID] [--clock-ticks 100] [--memory-target-mib 300]";
            let (positional, mut flags) = parse_flags(&args[1..], usage)?;
            if !positional.is_empty() {
                bail!(usage);
            }
            let mut take = |name: &str| flags.remove(name);
            let required =
                |value: Option<String>, name: &str| value.with_context(|| format!("--{name} is missing; {usage}"));
            let settings = load::MixedSettings {
                download_url: required(take("download-url"), "download-url")?,
                download_clients: number(take("download-clients"), "download-clients")?.unwrap_or(200),
                expect_bytes: required(take("expect-bytes"), "expect-bytes")
                    .and_then(|text| number(Some(text), "expect-bytes"))?
                    .unwrap_or_default(),
                expect_sha256: required(take("expect-sha256"), "expect-sha256")?,
                verify_every: number(take("verify-every"), "verify-every")?.unwrap_or(10),
                upload_to: required(take("upload-to"), "upload-to")?,
                upload_clients: number(take("upload-clients"), "upload-clients")?.unwrap_or(10),
                upload_asset_bytes: number(take("upload-asset-bytes"), "upload-asset-bytes")?.unwrap_or(15 << 20),
                token: required(take("token"), "token")?,
                duration: duration(take("duration"))?.unwrap_or(Duration::from_secs(60)),
                ca: take("ca").map(PathBuf::from),
                server_pid: number(take("server-pid"), "server-pid")?,
                clock_ticks: number(take("clock-ticks"), "clock-ticks")?.unwrap_or(100),
                memory_target_mib: number(take("memory-target-mib"), "memory-target-mib")?.unwrap_or(300.0),
            };
            no_more_flags(flags, usage)?;
            load::mixed_load(settings)
        }
        Some("upload-visible") => {
            let usage = "usage: otaship-bench upload-visible --to URL --poll URL --token T FILE...";
            let (positional, mut flags) = parse_flags(&args[1..], usage)?;
            let mut take = |name: &str| flags.remove(name).with_context(|| format!("--{name} is missing; {usage}"));
            let settings = load::VisibleSettings {
                to: take("to")?.trim_end_matches('/').to_owned(),
                poll: take("poll")?.trim_end_matches('/').to_owned(),
                token: take("token")?,
                files: positional.iter().map(PathBuf::from).collect(),
            };
            no_more_flags(flags, usage)?;
            load::upload_visible(settings)
        }
        _ => bail!(
            "usage: otaship-bench inspect [DIR] | hostile-corpus DIR | make-ipa PATH [...] | s3-server ... | \
             download-load ... | mixed-load ... | upload-visible ..."
        ),
    }
}

/// Splits `--name value` pairs (or `--name=value`) from positional arguments.
fn parse_flags(args: &[String], usage: &str) -> Result<(Vec<String>, HashMap<String, String>)> {
    let mut positional = Vec::new();
    let mut flags = HashMap::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.strip_prefix("--") {
            Some(flag) => {
                let (name, value) = match flag.split_once('=') {
                    Some((name, value)) => (name.to_owned(), value.to_owned()),
                    None => (
                        flag.to_owned(),
                        rest.next().with_context(|| format!("--{flag} needs a value; {usage}"))?.clone(),
                    ),
                };
                flags.insert(name, value);
            }
            None => positional.push(arg.clone()),
        }
    }
    Ok((positional, flags))
}

/// A flag's value as a number, if the flag was given.
fn number<T: std::str::FromStr>(value: Option<String>, name: &str) -> Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value.map(|text| text.parse().with_context(|| format!("--{name} {text:?}"))).transpose()
}

/// A `--duration` such as `20s` (or `20`), if given.
fn duration(value: Option<String>) -> Result<Option<Duration>> {
    value
        .map(|text| {
            let seconds: f64 = text
                .strip_suffix('s')
                .unwrap_or(&text)
                .parse()
                .with_context(|| format!("--duration {text:?} (write it like 20s)"))?;
            Duration::try_from_secs_f64(seconds).with_context(|| format!("--duration {text:?}"))
        })
        .transpose()
}

fn no_more_flags(flags: HashMap<String, String>, usage: &str) -> Result<()> {
    match flags.keys().next() {
        Some(name) => bail!("unknown flag --{name}; {usage}"),
        None => Ok(()),
    }
}

/// A realistic app with a stored asset of `asset` bytes (1 GiB in the benchmarks of issues #2,
/// #3, #5 and #6), and `build` as its `CFBundleVersion` if given.
fn large_app(asset: u64, build: Option<&str>) -> IpaBuilder {
    let far_future = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let devices: Vec<String> = (0..100).map(|i| format!("00008030-{i:016X}")).collect();
    let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
    let mut builder = IpaBuilder::new("com.example.large")
        .info("CFBundleDisplayName", "Large Game")
        .info(
            "CFBundleIcons",
            plist::Value::Dictionary(
                [(
                    "CFBundlePrimaryIcon".to_owned(),
                    plist::Value::Dictionary(
                        [("CFBundleIconFiles".to_owned(), plist::Value::Array(vec!["AppIcon60x60".into()]))]
                            .into_iter()
                            .collect(),
                    ),
                )]
                .into_iter()
                .collect(),
            ),
        )
        .profile(profile_plist("TEAM.com.example.large", Some(&devices), false, false, far_future));
    let icon_pixels: Vec<u8> = (0..180 * 180 * 4).map(|i| (i % 251) as u8).collect();
    let icon = otaship_ipa::png::encode_rgba(180, 180, &icon_pixels).unwrap_or_default();
    builder = builder.app_file("AppIcon60x60@3x.png", icon);
    if let Some(build) = build {
        builder = builder.info("CFBundleVersion", build);
    }
    for index in 0..3_000 {
        builder = builder.app_file(&format!("Resources/level{index:04}.json"), format!("{{\"level\":{index}}}"));
    }
    builder.entry(ZipEntry {
        data: Data::Repeat { byte: 0x5a, len: asset },
        method: Method::Stored,
        ..ZipEntry::stored("Payload/Example.app/Assets.bundle/world.pak", Vec::new())
    })
}

/// Inspects the 1 GiB `.ipa` 30 times: `given` (written by `make-ipa`, which writes the same
/// archive), or one built in `dir` and deleted afterwards.
fn inspect_large(dir: &Path, given: Option<&Path>) -> Result<()> {
    let (path, size) = match given {
        Some(path) => {
            let size = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?.len();
            println!("inspecting {} ({size} bytes, written by make-ipa)", path.display());
            (path.to_owned(), size)
        }
        None => {
            std::fs::create_dir_all(dir)?;
            let path = dir.join("otaship-bench-1gib.ipa");
            let started = Instant::now();
            let size = large_app(1 << 30, None)
                .zip()
                .write_to(BufWriter::new(File::create(&path).context("create the benchmark .ipa")?))?;
            println!("built {} ({} bytes, {} entries) in {:.1?}", path.display(), size, 3_006, started.elapsed());
            (path, size)
        }
    };

    let runs = 30;
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    let mut reads = 0;
    for _ in 0..runs {
        let source = CountingSource::new(FileSource::new(File::open(&path)?)?);
        let started = Instant::now();
        let inspection = inspect_ipa(&source, &InspectOptions::default())?;
        times.push(started.elapsed());
        bytes = source.bytes_read();
        reads = source.reads();
        if inspection.report.bundle_id != "com.example.large" || inspection.report.icon.is_none() {
            bail!("the benchmark app was not read correctly");
        }
    }
    times.sort();
    let median = times[runs / 2];
    println!(
        "inspect 1 GiB .ipa: median {:.2} ms, min {:.2} ms, max {:.2} ms over {runs} runs (warm page cache)",
        ms(median),
        ms(times[0]),
        ms(times[runs - 1])
    );
    println!(
        "bytes read: {bytes} ({:.3} MiB) in {reads} positioned reads, {:.5}% of the file",
        bytes as f64 / f64::from(1 << 20),
        bytes as f64 * 100.0 / size as f64
    );
    println!("RESULT inspect.size={size}");
    println!("RESULT inspect.median_ms={:.2}", ms(median));
    println!("RESULT inspect.min_ms={:.2}", ms(times[0]));
    println!("RESULT inspect.max_ms={:.2}", ms(times[runs - 1]));
    println!("RESULT inspect.bytes_read={bytes}");
    println!("RESULT inspect.reads={reads}");
    if given.is_none() {
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn hostile_corpus(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes);
    let with_info = |data: Data, declared: Option<u64>| {
        let mut zip = IpaBuilder::new("com.example.hostile").zip();
        for entry in &mut zip.entries {
            if entry.name.ends_with(b"Info.plist") {
                entry.data = data.clone();
                entry.declared_size = declared;
            }
        }
        zip.to_bytes()
    };
    write("not-a-zip.ipa", b"hello, this is not an archive".repeat(1000))?;
    let valid = IpaBuilder::new("com.example.hostile").to_bytes();
    write("truncated.ipa", valid[..valid.len() / 2].to_vec())?;
    write("no-payload.ipa", ZipBuilder::new().entry(ZipEntry::new("readme.txt", "x")).to_bytes())?;
    let second = plist_bytes(&plist::Value::Dictionary(IpaBuilder::new("com.b").info), PlistFormat::Binary);
    write(
        "two-apps.ipa",
        IpaBuilder::new("com.a").entry(ZipEntry::new("Payload/B.app/Info.plist", second)).to_bytes(),
    )?;
    write("plist-declared-huge.ipa", with_info(Data::Bytes(vec![b' '; 64 << 20]), None))?;
    write("plist-bomb-1gib.ipa", with_info(Data::Bytes(vec![0; 1 << 30]), Some(200)))?;
    let mut declared = IpaBuilder::new("x").zip();
    declared.declared_entries = Some(u64::MAX / 2);
    write("entries-declared-huge.ipa", declared.to_bytes())?;
    let mut many = ZipBuilder::new();
    many.entries.extend(IpaBuilder::new("com.example.many").zip().entries);
    for index in 0..149_990 {
        many.entries.push(ZipEntry::stored(format!("Payload/Example.app/f/{index:06}"), Vec::new()));
    }
    write("entries-at-limit-150k.ipa", many.to_bytes())?;
    write(
        "duplicate.ipa",
        IpaBuilder::new("com.a")
            .entry(ZipEntry::new("Payload/Example.app/Info.plist", "<plist><dict/></plist>"))
            .to_bytes(),
    )?;
    let mut overlap = IpaBuilder::new("com.a").zip();
    overlap.entries.push(ZipEntry { offset_override: Some(0), ..ZipEntry::new("Payload/Example.app/x", "x") });
    write("overlap.ipa", overlap.to_bytes())?;
    write("malformed-plist.ipa", with_info(Data::Bytes(b"<plist><dict><key>".to_vec()), None))?;
    write("wrong-type.ipa", IpaBuilder::new("x").info("CFBundleIdentifier", 7).to_bytes())?;
    write("dotdot.ipa", IpaBuilder::new("x").entry(ZipEntry::new("Payload/../../etc/x", "x")).to_bytes())?;
    write("bplist-dag.ipa", with_info(Data::Bytes(bplist_dag()), None))?;
    write(
        "deep-nesting.ipa",
        with_info(
            Data::Bytes(
                format!("<plist>{}{}</plist>", "<array>".repeat(20_000), "</array>".repeat(20_000)).into_bytes(),
            ),
            None,
        ),
    )?;
    write("profile-bomb.ipa", IpaBuilder::new("x").profile(vec![0x30; 512 << 20]).to_bytes())?;
    println!("wrote the hostile corpus to {}", dir.display());
    Ok(())
}

/// 24 arrays of 14 references each to the next: 14^24 values if expanded.
fn bplist_dag() -> Vec<u8> {
    let mut bytes = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for level in 0..24u8 {
        offsets.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        bytes.push(0xae);
        bytes.extend(std::iter::repeat_n(level + 1, 14));
    }
    offsets.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&[0x51, b'a']);
    let table = bytes.len() as u64;
    bytes.extend_from_slice(&offsets);
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 2, 1]);
    bytes.extend_from_slice(&25u64.to_be_bytes());
    bytes.extend_from_slice(&0u64.to_be_bytes());
    bytes.extend_from_slice(&table.to_be_bytes());
    bytes
}
