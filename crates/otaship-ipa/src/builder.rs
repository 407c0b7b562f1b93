//! Builds `.ipa` archives for tests, benchmarks and fuzz seeds, including hostile ones.
//!
//! [`ZipBuilder`] writes zip files entry by entry and can lie in every way an attacker can:
//! declared sizes, local names, offsets, entry counts, ZIP64 records. [`IpaBuilder`] lays out
//! an app on top of it. Large entries are generated while writing, so a 1 GiB archive never
//! sits in memory.

use std::io::{self, Write};

use flate2::Compression;
use flate2::write::DeflateEncoder;
use plist::{Dictionary, Value};

/// How an entry is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Stored as is.
    Stored,
    /// Raw DEFLATE.
    Deflated,
    /// The bytes are written as they are, under this method number (to forge corrupt or
    /// unsupported entries).
    Raw(u16),
}

/// The bytes of an entry.
#[derive(Debug, Clone)]
pub enum Data {
    /// These bytes.
    Bytes(Vec<u8>),
    /// `len` copies of `byte`, generated while writing (stored entries only).
    Repeat {
        /// The byte.
        byte: u8,
        /// How many.
        len: u64,
    },
}

/// One entry and the lies to tell about it.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Name in the central directory.
    pub name: Vec<u8>,
    /// Content.
    pub data: Data,
    /// Compression.
    pub method: Method,
    /// Uncompressed size to declare instead of the real one.
    pub declared_size: Option<u64>,
    /// Name to write in the local header instead of `name`.
    pub local_name: Option<Vec<u8>>,
    /// Local header offset to record in the central directory instead of the real one.
    pub offset_override: Option<u64>,
    /// Flag bits to set (e.g. 1 for "encrypted").
    pub extra_flags: u16,
    /// CRC-32 to record instead of the real one.
    pub crc_override: Option<u32>,
    /// Raw extra fields, written in both headers.
    pub extra_fields: Vec<u8>,
    /// Bytes appended to the stored or compressed data and counted in its compressed size.
    pub data_suffix: Vec<u8>,
    /// Bytes written after the entry that belong to no entry (a gap).
    pub gap_after: Vec<u8>,
    /// Unix file mode to record (e.g. `0o120777` for a symbolic link).
    pub unix_mode: Option<u32>,
}

impl ZipEntry {
    /// A deflated entry with these bytes.
    pub fn new(name: impl Into<Vec<u8>>, data: impl Into<Vec<u8>>) -> Self {
        ZipEntry {
            name: name.into(),
            data: Data::Bytes(data.into()),
            method: Method::Deflated,
            declared_size: None,
            local_name: None,
            offset_override: None,
            extra_flags: 0,
            crc_override: None,
            extra_fields: Vec::new(),
            data_suffix: Vec::new(),
            gap_after: Vec::new(),
            unix_mode: None,
        }
    }

    /// A stored entry with these bytes.
    pub fn stored(name: impl Into<Vec<u8>>, data: impl Into<Vec<u8>>) -> Self {
        ZipEntry { method: Method::Stored, ..ZipEntry::new(name, data) }
    }

    /// A directory entry.
    pub fn dir(name: impl Into<Vec<u8>>) -> Self {
        ZipEntry::stored(name, Vec::new())
    }
}

/// Writes zip archives.
#[derive(Debug, Clone, Default)]
pub struct ZipBuilder {
    /// Entries, in the order written.
    pub entries: Vec<ZipEntry>,
    /// Always write ZIP64 end records and extra fields.
    pub force_zip64: bool,
    /// Entry count to declare instead of the real one.
    pub declared_entries: Option<u64>,
    /// Bytes before the first entry.
    pub prefix: Vec<u8>,
}

impl ZipBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        ZipBuilder::default()
    }

    /// Adds an entry.
    pub fn entry(mut self, entry: ZipEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// The archive in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Writes the archive; returns its length.
    pub fn write_to<W: Write>(&self, out: W) -> io::Result<u64> {
        let mut out = Counter { inner: out, written: 0 };
        out.write_all(&self.prefix)?;
        let mut central = Vec::new();
        for entry in &self.entries {
            let offset = out.written;
            let (compressed, crc, size) = match (&entry.data, entry.method) {
                (Data::Bytes(bytes), Method::Stored | Method::Raw(_)) => {
                    (None, crc32fast::hash(bytes), bytes.len() as u64)
                }
                (Data::Bytes(bytes), Method::Deflated) => {
                    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
                    encoder.write_all(bytes)?;
                    (Some(encoder.finish()?), crc32fast::hash(bytes), bytes.len() as u64)
                }
                (Data::Repeat { byte, len }, _) => {
                    let mut hasher = crc32fast::Hasher::new();
                    let chunk = vec![*byte; 1 << 20];
                    let mut left = *len;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        hasher.update(&chunk[..n]);
                        left -= n as u64;
                    }
                    (None, hasher.finalize(), *len)
                }
            };
            let compressed_size =
                compressed.as_ref().map_or(size, |bytes| bytes.len() as u64) + entry.data_suffix.len() as u64;
            let declared = entry.declared_size.unwrap_or(size);
            let crc = entry.crc_override.unwrap_or(crc);
            let zip64 =
                self.force_zip64 || declared >= 0xffff_ffff || compressed_size >= 0xffff_ffff || offset >= 0xffff_ffff;
            let method: u16 = match entry.method {
                Method::Stored => 0,
                Method::Deflated => 8,
                Method::Raw(method) => method,
            };
            let local_name = entry.local_name.as_ref().unwrap_or(&entry.name);
            let flags = entry.extra_flags | if is_utf8_non_ascii(&entry.name) { 1 << 11 } else { 0 };
            let mut local_extra = entry.extra_fields.clone();
            if zip64 {
                local_extra.extend_from_slice(&1u16.to_le_bytes());
                local_extra.extend_from_slice(&16u16.to_le_bytes());
                local_extra.extend_from_slice(&declared.to_le_bytes());
                local_extra.extend_from_slice(&compressed_size.to_le_bytes());
            }
            let small = |value: u64| if zip64 { u32::MAX } else { value as u32 };
            out.write_all(&0x0403_4b50u32.to_le_bytes())?;
            out.write_all(&(if zip64 { 45u16 } else { 20 }).to_le_bytes())?;
            out.write_all(&flags.to_le_bytes())?;
            out.write_all(&method.to_le_bytes())?;
            out.write_all(&[0, 0, 0x21, 0])?; // 00:00:00, 1980-01-01
            out.write_all(&crc.to_le_bytes())?;
            out.write_all(&small(compressed_size).to_le_bytes())?;
            out.write_all(&small(declared).to_le_bytes())?;
            out.write_all(&(local_name.len() as u16).to_le_bytes())?;
            out.write_all(&(local_extra.len() as u16).to_le_bytes())?;
            out.write_all(local_name)?;
            out.write_all(&local_extra)?;
            match (&entry.data, compressed) {
                (_, Some(bytes)) => out.write_all(&bytes)?,
                (Data::Bytes(bytes), None) => out.write_all(bytes)?,
                (Data::Repeat { byte, len }, None) => {
                    let chunk = vec![*byte; 1 << 20];
                    let mut left = *len;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        out.write_all(&chunk[..n])?;
                        left -= n as u64;
                    }
                }
            }
            out.write_all(&entry.data_suffix)?;
            out.write_all(&entry.gap_after)?;
            let recorded_offset = entry.offset_override.unwrap_or(offset);
            let mut extra = entry.extra_fields.clone();
            if zip64 {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&24u16.to_le_bytes());
                extra.extend_from_slice(&declared.to_le_bytes());
                extra.extend_from_slice(&compressed_size.to_le_bytes());
                extra.extend_from_slice(&recorded_offset.to_le_bytes());
            }
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&(0x0300u16 | 45).to_le_bytes()); // made by Unix
            central.extend_from_slice(&(if zip64 { 45u16 } else { 20 }).to_le_bytes());
            central.extend_from_slice(&flags.to_le_bytes());
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0, 0, 0x21, 0]);
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&small(compressed_size).to_le_bytes());
            central.extend_from_slice(&small(declared).to_le_bytes());
            central.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
            central.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes()); // comment
            central.extend_from_slice(&0u16.to_le_bytes()); // disk
            central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            let mode: u32 = entry.unix_mode.unwrap_or(if entry.name.ends_with(b"/") { 0o040755 } else { 0o100644 });
            central.extend_from_slice(&(mode << 16).to_le_bytes());
            central.extend_from_slice(&small(recorded_offset).to_le_bytes());
            central.extend_from_slice(&entry.name);
            central.extend_from_slice(&extra);
        }
        let directory_offset = out.written;
        out.write_all(&central)?;
        let count = self.declared_entries.unwrap_or(self.entries.len() as u64);
        let directory_size = central.len() as u64;
        let zip64 = self.force_zip64 || count >= 0xffff || directory_offset >= 0xffff_ffff;
        if zip64 {
            let record_offset = out.written;
            out.write_all(&0x0606_4b50u32.to_le_bytes())?;
            out.write_all(&44u64.to_le_bytes())?;
            out.write_all(&45u16.to_le_bytes())?;
            out.write_all(&45u16.to_le_bytes())?;
            out.write_all(&0u32.to_le_bytes())?;
            out.write_all(&0u32.to_le_bytes())?;
            out.write_all(&count.to_le_bytes())?;
            out.write_all(&count.to_le_bytes())?;
            out.write_all(&directory_size.to_le_bytes())?;
            out.write_all(&directory_offset.to_le_bytes())?;
            out.write_all(&0x0706_4b50u32.to_le_bytes())?;
            out.write_all(&0u32.to_le_bytes())?;
            out.write_all(&record_offset.to_le_bytes())?;
            out.write_all(&1u32.to_le_bytes())?;
        }
        let count16 = if zip64 { u16::MAX } else { count as u16 };
        out.write_all(&0x0605_4b50u32.to_le_bytes())?;
        out.write_all(&0u16.to_le_bytes())?;
        out.write_all(&0u16.to_le_bytes())?;
        out.write_all(&count16.to_le_bytes())?;
        out.write_all(&count16.to_le_bytes())?;
        out.write_all(&(if zip64 { u32::MAX } else { directory_size as u32 }).to_le_bytes())?;
        out.write_all(&(if zip64 { u32::MAX } else { directory_offset as u32 }).to_le_bytes())?;
        out.write_all(&0u16.to_le_bytes())?;
        out.flush()?;
        Ok(out.written)
    }
}

fn is_utf8_non_ascii(name: &[u8]) -> bool {
    !name.is_ascii() && std::str::from_utf8(name).is_ok()
}

struct Counter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The format of a plist written into an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlistFormat {
    /// XML.
    Xml,
    /// Binary (`bplist00`), as Xcode writes Info.plist.
    Binary,
}

/// Serialises a plist value.
pub fn plist_bytes(value: &Value, format: PlistFormat) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail for values built in code.
    let _ = match format {
        PlistFormat::Xml => value.to_writer_xml(&mut out),
        PlistFormat::Binary => value.to_writer_binary(&mut out),
    };
    out
}

/// Lays out an `.ipa`: `Payload/<name>.app/` with an Info.plist, a profile, and more files.
#[derive(Debug, Clone)]
pub struct IpaBuilder {
    /// The app folder's name, without `.app`.
    pub app_name: String,
    /// The Info.plist.
    pub info: Dictionary,
    /// Its format.
    pub info_format: PlistFormat,
    /// The bytes of `embedded.mobileprovision`, if any.
    pub profile: Option<Vec<u8>>,
    /// Whether to add `_CodeSignature/CodeResources`.
    pub code_signature: bool,
    /// Further entries, with paths relative to the archive root.
    pub extra: Vec<ZipEntry>,
}

impl IpaBuilder {
    /// A minimal signed-looking iOS app with this bundle id.
    pub fn new(bundle_id: &str) -> Self {
        let mut info = Dictionary::new();
        info.insert("CFBundleIdentifier".into(), bundle_id.into());
        info.insert("CFBundleName".into(), "Example".into());
        info.insert("CFBundleExecutable".into(), "Example".into());
        info.insert("CFBundleShortVersionString".into(), "1.0".into());
        info.insert("CFBundleVersion".into(), "1".into());
        info.insert("MinimumOSVersion".into(), "15.0".into());
        info.insert("DTPlatformName".into(), "iphoneos".into());
        info.insert("CFBundleSupportedPlatforms".into(), Value::Array(vec!["iPhoneOS".into()]));
        info.insert("UIDeviceFamily".into(), Value::Array(vec![1.into(), 2.into()]));
        IpaBuilder {
            app_name: "Example".to_owned(),
            info,
            info_format: PlistFormat::Binary,
            profile: None,
            code_signature: true,
            extra: Vec::new(),
        }
    }

    /// Sets an Info.plist key.
    pub fn info(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.info.insert(key.to_owned(), value.into());
        self
    }

    /// Sets the embedded profile's bytes.
    pub fn profile(mut self, bytes: Vec<u8>) -> Self {
        self.profile = Some(bytes);
        self
    }

    /// Adds an entry under the app folder (`path` relative to `Payload/<name>.app/`).
    pub fn app_file(mut self, path: &str, data: impl Into<Vec<u8>>) -> Self {
        let name = format!("Payload/{}.app/{path}", self.app_name);
        self.extra.push(ZipEntry::new(name, data));
        self
    }

    /// Adds an entry at an arbitrary path.
    pub fn entry(mut self, entry: ZipEntry) -> Self {
        self.extra.push(entry);
        self
    }

    /// The zip layout, to tweak further.
    pub fn zip(&self) -> ZipBuilder {
        let app = format!("Payload/{}.app", self.app_name);
        let mut zip = ZipBuilder::new().entry(ZipEntry::dir("Payload/")).entry(ZipEntry::dir(format!("{app}/"))).entry(
            ZipEntry::new(
                format!("{app}/Info.plist"),
                plist_bytes(&Value::Dictionary(self.info.clone()), self.info_format),
            ),
        );
        if let Some(profile) = &self.profile {
            zip = zip.entry(ZipEntry::new(format!("{app}/embedded.mobileprovision"), profile.clone()));
        }
        if self.code_signature {
            zip = zip.entry(ZipEntry::new(
                format!("{app}/_CodeSignature/CodeResources"),
                b"<plist version=\"1.0\"><dict/></plist>".to_vec(),
            ));
        }
        zip.entries.extend(self.extra.iter().cloned());
        zip
    }

    /// The archive in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.zip().to_bytes()
    }
}

/// A bare (unsigned) profile plist of the given shape, for tests.
pub fn profile_plist(
    app_id: &str,
    devices: Option<&[&str]>,
    provisions_all: bool,
    get_task_allow: bool,
    expires: std::time::SystemTime,
) -> Vec<u8> {
    let mut entitlements = Dictionary::new();
    entitlements.insert("application-identifier".into(), app_id.into());
    entitlements.insert("get-task-allow".into(), get_task_allow.into());
    let team = app_id.split('.').next().unwrap_or_default().to_owned();
    let mut dict = Dictionary::new();
    dict.insert("Name".into(), "Test Profile".into());
    dict.insert("UUID".into(), "00000000-0000-4000-8000-000000000000".into());
    dict.insert("TeamName".into(), "Test Team".into());
    dict.insert("TeamIdentifier".into(), Value::Array(vec![team.into()]));
    dict.insert("Platform".into(), Value::Array(vec!["iOS".into()]));
    dict.insert("CreationDate".into(), Value::Date(std::time::UNIX_EPOCH.into()));
    dict.insert("ExpirationDate".into(), Value::Date(expires.into()));
    dict.insert("Entitlements".into(), Value::Dictionary(entitlements));
    if let Some(devices) = devices {
        dict.insert("ProvisionedDevices".into(), Value::Array(devices.iter().map(|udid| Value::from(*udid)).collect()));
    }
    if provisions_all {
        dict.insert("ProvisionsAllDevices".into(), true.into());
    }
    plist_bytes(&Value::Dictionary(dict), PlistFormat::Xml)
}
