//! A strict, bounded reader of zip archives over a [`Source`].
//!
//! It owns the zip format and nothing about apps: it finds the end-of-central-directory
//! record (ZIP64 included), loads the central directory under a size limit, and refuses any
//! archive in which a device that unzips from the local headers could see different files than
//! this reader does: duplicate names, overlapping entries, local headers that disagree with the
//! central directory, unsafe names. Entries are read one at a time, each under its own limit,
//! with the output capped at the declared size and the CRC checked. Nothing is extracted.

use std::io::{self, Read};

use crate::error::{IpaError, Result};
use crate::limits::Limits;
use crate::source::Source;

const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: u64 = 56;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const LOCAL_LEN: u64 = 30;
const DESCRIPTOR_SIGNATURE: u32 = 0x0807_4b50;
/// Extra field "Info-ZIP Unicode Path": a second name that some extractors prefer.
const EXTRA_UNICODE_PATH: u16 = 0x7075;
const MAX_COMMENT: u64 = 0xffff;

const FLAG_ENCRYPTED: u16 = 1;
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
const FLAG_STRONG_ENCRYPTION: u16 = 1 << 6;

/// Compression methods an `.ipa` uses.
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;

/// One entry of the central directory.
#[derive(Debug, Clone)]
struct Entry {
    name_start: usize,
    name_len: usize,
    flags: u16,
    method: u16,
    crc32: u32,
    compressed_size: u64,
    size: u64,
    local_offset: u64,
    /// Where the next entry (or the central directory) starts: this entry's bytes must end
    /// exactly there.
    boundary: u64,
    /// A Unix symbolic link (an extractor may follow it).
    is_symlink: bool,
}

/// An open archive: its central directory, checked, and the source to read entries from.
pub struct Archive<'s, S: Source + ?Sized> {
    source: &'s S,
    directory: Vec<u8>,
    entries: Vec<Entry>,
    /// Entry indices sorted by name bytes, for lookups.
    by_name: Vec<usize>,
    /// Where each entry's data starts, when every local header was checked at open; entries
    /// then need no second look at their headers when read.
    data_offsets: Vec<u64>,
}

/// A view of one entry's metadata.
#[derive(Debug, Clone, Copy)]
pub struct EntryInfo<'a> {
    /// Index of the entry in the archive.
    pub index: usize,
    /// The raw name bytes, as stored.
    pub name: &'a [u8],
    /// Uncompressed size as declared by the central directory.
    pub size: u64,
    /// Compressed size as declared by the central directory.
    pub compressed_size: u64,
}

impl EntryInfo<'_> {
    /// The name for display: UTF-8 when it is valid UTF-8, else decoded as CP437.
    pub fn display_name(&self) -> String {
        display_name(self.name)
    }

    /// Whether the entry is a directory (its name ends in `/`).
    pub fn is_dir(&self) -> bool {
        self.name.ends_with(b"/")
    }
}

impl<'s, S: Source + ?Sized> Archive<'s, S> {
    /// Opens an archive: reads and checks its end records and central directory.
    pub fn open(source: &'s S, limits: &Limits) -> Result<Self> {
        let end = find_end(source)?;
        if end.entries > limits.max_entries {
            return Err(IpaError::TooManyEntries { count: end.entries, limit: limits.max_entries });
        }
        if end.directory_size > limits.max_central_directory_bytes {
            return Err(IpaError::CentralDirectoryTooLarge {
                size: end.directory_size,
                limit: limits.max_central_directory_bytes,
            });
        }
        let directory_end = end
            .directory_offset
            .checked_add(end.directory_size)
            .ok_or_else(|| IpaError::malformed("central directory offset overflows"))?;
        if directory_end != end.records_start {
            return Err(if directory_end > source.len() {
                IpaError::truncated("the central directory lies past the end of the file")
            } else {
                // Bytes between the directory and the end record could hold a second directory
                // that readers locating it from the end would use instead.
                IpaError::malformed("the central directory does not end where the end record begins")
            });
        }
        let mut directory = vec![0; usize_from(end.directory_size)?];
        source.read_exact_at(end.directory_offset, &mut directory)?;
        let mut entries = parse_directory(&directory, end.entries)?;
        set_boundaries(&directory, &mut entries, end.directory_offset)?;
        let by_name = index_names(&directory, &entries)?;
        check_symlinks(&directory, &entries, &by_name)?;
        let mut archive = Archive { source, directory, entries, by_name, data_offsets: Vec::new() };
        if limits.check_every_local_header {
            // Every byte before the central directory belongs to exactly one entry: no prefix,
            // no gaps. A local header hidden in a gap would be extracted by a device that reads
            // the archive from the front, and never seen here.
            let first = archive.entries.iter().map(|entry| entry.local_offset).min().unwrap_or(end.directory_offset);
            if first != 0 {
                return Err(IpaError::malformed("the archive has data before its first entry"));
            }
            archive.data_offsets =
                (0..archive.entries.len()).map(|index| archive.check_layout(index)).collect::<Result<_>>()?;
        }
        Ok(archive)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the archive has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Metadata of entry `index`.
    pub fn entry(&self, index: usize) -> Option<EntryInfo<'_>> {
        let entry = self.entries.get(index)?;
        Some(EntryInfo { index, name: self.name_of(entry), size: entry.size, compressed_size: entry.compressed_size })
    }

    /// All entries in central-directory order.
    pub fn entries(&self) -> impl Iterator<Item = EntryInfo<'_>> + '_ {
        (0..self.entries.len()).filter_map(|index| self.entry(index))
    }

    /// The entry with exactly this name, if any.
    pub fn find(&self, name: &[u8]) -> Option<EntryInfo<'_>> {
        let position = self.by_name.binary_search_by(|&index| self.name_of(&self.entries[index]).cmp(name)).ok()?;
        self.entry(self.by_name[position])
    }

    /// Reads a whole entry, refusing it when its declared or real size exceeds `limit`.
    pub fn read(&self, index: usize, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        let entry = self.entries.get(index).ok_or_else(|| IpaError::malformed("no such entry"))?;
        if entry.size > limit {
            return Err(IpaError::EntryTooLarge { name: display_name(self.name_of(entry)), what, limit });
        }
        let mut out = Vec::with_capacity(usize_from(entry.size)?);
        self.read_into(index, entry.size, &mut out)?;
        if out.len() as u64 != entry.size {
            return Err(self.corrupt(entry, "it is shorter than its declared size"));
        }
        if crc32fast::hash(&out) != entry.crc32 {
            return Err(self.corrupt(entry, "its CRC-32 checksum does not match"));
        }
        Ok(out)
    }

    /// Reads at most the first `max` bytes of an entry (no checksum: the rest is not read).
    pub fn read_prefix(&self, index: usize, max: u64) -> Result<Vec<u8>> {
        let entry = self.entries.get(index).ok_or_else(|| IpaError::malformed("no such entry"))?;
        let want = max.min(entry.size);
        let mut out = Vec::with_capacity(usize_from(want.min(1 << 20))?);
        self.read_into(index, want, &mut out)?;
        Ok(out)
    }

    /// Decompresses up to `want` bytes of entry `index` into `out`, failing if the entry
    /// inflates past its declared size.
    fn read_into(&self, index: usize, want: u64, out: &mut Vec<u8>) -> Result<()> {
        let entry = &self.entries[index];
        let data_offset = match self.data_offsets.get(index) {
            Some(&offset) => offset,
            None => self.check_layout(index)?,
        };
        let compressed =
            SourceReader { source: self.source, position: data_offset, end: data_offset + entry.compressed_size };
        match entry.method {
            METHOD_STORED => {
                if entry.compressed_size != entry.size {
                    return Err(self.corrupt(entry, "a stored entry's sizes differ"));
                }
                compressed.take(want).read_to_end(out).map_err(|error| self.read_error(entry, error))?;
            }
            METHOD_DEFLATED => {
                // Read one byte more than wanted: when the whole entry is wanted, that byte
                // exposes an entry that inflates past its declared size.
                let whole = want == entry.size;
                let cap = if whole { want + 1 } else { want };
                let mut decoder = flate2::read::DeflateDecoder::new(compressed);
                (&mut decoder).take(cap).read_to_end(out).map_err(|error| self.read_error(entry, error))?;
                if whole && out.len() as u64 > entry.size {
                    return Err(IpaError::EntryTooLarge {
                        name: display_name(self.name_of(entry)),
                        what: "its declared size (it inflates past it)",
                        limit: entry.size,
                    });
                }
                // The stream must end exactly at the compressed size: bytes after its end are
                // room for a hidden local header.
                if whole && out.len() as u64 == entry.size && decoder.total_in() != entry.compressed_size {
                    return Err(self.corrupt(entry, "its compressed data does not end where the archive says"));
                }
            }
            other => {
                return Err(IpaError::Unsupported {
                    feature: format!("compression method {other} for {:?}", self.display(entry)),
                });
            }
        }
        Ok(())
    }

    /// Reads entry `index`'s local header (and data descriptor), checks them against the
    /// central directory, checks that the entry ends exactly where the next one begins, and
    /// returns where its data starts.
    fn check_layout(&self, index: usize) -> Result<u64> {
        let entry = &self.entries[index];
        let name = self.name_of(entry);
        let room = entry.boundary - entry.local_offset;
        // One read covers the fixed header, the name, and a typical extra field.
        let guess = (LOCAL_LEN + name.len() as u64 + 64).min(room);
        if guess < LOCAL_LEN {
            return Err(self.overlap_with_next(index));
        }
        let mut header = vec![0; usize_from(guess)?];
        self.source
            .read_exact_at(entry.local_offset, &mut header)
            .map_err(|error| truncated_or(error, "a local header lies past the end of the file"))?;
        if le32(&header, 0) != LOCAL_SIGNATURE {
            return Err(self.mismatch(entry, "no local header at the recorded offset"));
        }
        let flags = le16(&header, 6);
        let method = le16(&header, 8);
        let local_name_len = u64::from(le16(&header, 26));
        let local_extra_len = u64::from(le16(&header, 28));
        if (flags ^ entry.flags) & (FLAG_ENCRYPTED | FLAG_DATA_DESCRIPTOR) != 0 {
            return Err(self.mismatch(entry, "different flags"));
        }
        if method != entry.method {
            return Err(self.mismatch(entry, "a different compression method"));
        }
        if local_name_len != name.len() as u64 {
            return Err(self.mismatch(entry, "a different name"));
        }
        let header_len = LOCAL_LEN + local_name_len + local_extra_len;
        if header_len > room {
            return Err(self.overlap_with_next(index));
        }
        if header.len() < header_len as usize {
            header = vec![0; usize_from(header_len)?];
            self.source
                .read_exact_at(entry.local_offset, &mut header)
                .map_err(|error| truncated_or(error, "a local header lies past the end of the file"))?;
        }
        let name_end = (LOCAL_LEN + local_name_len) as usize;
        if &header[LOCAL_LEN as usize..name_end] != name {
            return Err(self.mismatch(entry, "a different name"));
        }
        let extra = &header[name_end..header_len as usize];
        if has_unicode_path(extra)? {
            return Err(unicode_path_error(name));
        }
        let crc = le32(&header, 14);
        let mut compressed = u64::from(le32(&header, 18));
        let mut size = u64::from(le32(&header, 22));
        // ZIP64 local headers mark their sizes 0xffffffff and carry them in the extra field.
        let mut no_offset = 0;
        apply_zip64_extra(extra, &mut size, &mut compressed, &mut no_offset)?;
        let local_values_match = crc == entry.crc32 && compressed == entry.compressed_size && size == entry.size;
        if flags & FLAG_DATA_DESCRIPTOR == 0 && !local_values_match {
            return Err(self.mismatch(entry, "a different size or checksum"));
        }
        let data_offset = entry.local_offset + header_len;
        let data_end = data_offset
            .checked_add(entry.compressed_size)
            .ok_or_else(|| IpaError::malformed("entry size overflows"))?;
        if data_end > entry.boundary {
            return Err(if data_end > self.source.len() {
                IpaError::truncated(format!("the data of {:?} runs past the end of the file", self.display(entry)))
            } else {
                self.overlap_with_next(index)
            });
        }
        // macOS's Archive Utility sets the descriptor flag yet writes the values in the local
        // header and no descriptor; that is unambiguous, so it is accepted.
        let entry_end = if flags & FLAG_DATA_DESCRIPTOR != 0 && !(local_values_match && data_end == entry.boundary) {
            data_end + self.descriptor_len(entry, data_end)?
        } else {
            data_end
        };
        if entry_end != entry.boundary {
            return Err(IpaError::malformed(format!(
                "{} unexplained bytes follow the entry {:?} (room for a hidden file)",
                entry.boundary.saturating_sub(entry_end),
                self.display(entry)
            )));
        }
        Ok(data_offset)
    }

    /// The length of the data descriptor at `at`, which must repeat the central directory's
    /// checksum and sizes in one of its four standard forms.
    fn descriptor_len(&self, entry: &Entry, at: u64) -> Result<u64> {
        let available = (entry.boundary - at).min(24);
        let mut bytes = vec![0; available as usize];
        self.source
            .read_exact_at(at, &mut bytes)
            .map_err(|error| truncated_or(error, "a data descriptor lies past the end of the file"))?;
        let fits = |skip: usize, wide: bool| -> Option<u64> {
            let width = if wide { 8 } else { 4 };
            let len = skip + 4 + 2 * width;
            let body = bytes.get(skip..len)?;
            let read = |at: usize| if wide { le64(body, at) } else { u64::from(le32(body, at)) };
            (le32(body, 0) == entry.crc32 && read(4) == entry.compressed_size && read(4 + width) == entry.size)
                .then_some(len as u64)
        };
        let signed = bytes.len() >= 4 && le32(&bytes, 0) == DESCRIPTOR_SIGNATURE;
        let candidates = if signed { [(4, false), (4, true)] } else { [(0, false), (0, true)] };
        candidates
            .iter()
            .filter_map(|&(skip, wide)| fits(skip, wide))
            .find(|len| at + len == entry.boundary)
            .ok_or_else(|| self.mismatch(entry, "a data descriptor that disagrees with the central directory"))
    }

    fn name_of(&self, entry: &Entry) -> &[u8] {
        &self.directory[entry.name_start..entry.name_start + entry.name_len]
    }

    fn display(&self, entry: &Entry) -> String {
        display_name(self.name_of(entry))
    }

    fn overlap_with_next(&self, index: usize) -> IpaError {
        let entry = &self.entries[index];
        let next = self
            .entries
            .iter()
            .find(|other| other.local_offset == entry.boundary)
            .map(|other| self.display(other))
            .unwrap_or_else(|| "the central directory".to_owned());
        IpaError::OverlappingEntries { first: self.display(entry), second: next }
    }

    fn mismatch(&self, entry: &Entry, detail: &str) -> IpaError {
        IpaError::HeaderMismatch { name: self.display(entry), detail: detail.to_owned() }
    }

    fn corrupt(&self, entry: &Entry, detail: &str) -> IpaError {
        IpaError::CorruptEntry { name: self.display(entry), detail: detail.to_owned() }
    }

    fn read_error(&self, entry: &Entry, error: io::Error) -> IpaError {
        match error.kind() {
            io::ErrorKind::UnexpectedEof => {
                IpaError::truncated(format!("the data of {:?} runs past the end of the file", self.display(entry)))
            }
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                self.corrupt(entry, &format!("it does not decompress: {error}"))
            }
            _ => IpaError::Io(error),
        }
    }
}

/// The end records, wherever they were found.
#[derive(Debug)]
struct End {
    entries: u64,
    directory_size: u64,
    directory_offset: u64,
    /// Where the end records (ZIP64 or classic) begin; the directory must end before it.
    records_start: u64,
}

fn find_end<S: Source + ?Sized>(source: &S) -> Result<End> {
    let len = source.len();
    if len < EOCD_LEN {
        return Err(not_zip_or_truncated(source));
    }
    let tail_len = len.min(EOCD_LEN + MAX_COMMENT);
    let tail_start = len - tail_len;
    let mut tail = vec![0; usize_from(tail_len)?];
    source.read_exact_at(tail_start, &mut tail)?;
    // The last record whose comment ends exactly at the end of the file.
    let position = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&at| {
            le32(&tail, at) == EOCD_SIGNATURE
                && at + EOCD_LEN as usize + usize::from(le16(&tail, at + 20)) == tail.len()
        })
        .ok_or_else(|| not_zip_or_truncated(source))?;
    let record = &tail[position..];
    let eocd_offset = tail_start + position as u64;
    let disk = le16(record, 4);
    let directory_disk = le16(record, 6);
    let entries_here = le16(record, 8);
    let entries = le16(record, 10);
    let directory_size = le32(record, 12);
    let directory_offset = le32(record, 16);

    let locator_offset = eocd_offset.checked_sub(ZIP64_LOCATOR_LEN);
    let mut locator = [0u8; ZIP64_LOCATOR_LEN as usize];
    let has_locator = match locator_offset {
        Some(at) => {
            source.read_exact_at(at, &mut locator)?;
            le32(&locator, 0) == ZIP64_LOCATOR_SIGNATURE
        }
        None => false,
    };
    if has_locator {
        let zip64_offset = le64(&locator, 8);
        let total_disks = le32(&locator, 16);
        if le32(&locator, 4) != 0 || total_disks > 1 {
            return Err(IpaError::Unsupported { feature: "several disks (a split archive)".to_owned() });
        }
        let locator_start = eocd_offset - ZIP64_LOCATOR_LEN;
        if zip64_offset.checked_add(ZIP64_EOCD_LEN).is_none_or(|end| end > locator_start) {
            return Err(IpaError::malformed("the ZIP64 end record is out of place"));
        }
        let mut zip64 = [0u8; ZIP64_EOCD_LEN as usize];
        source.read_exact_at(zip64_offset, &mut zip64)?;
        if le32(&zip64, 0) != ZIP64_EOCD_SIGNATURE {
            return Err(IpaError::malformed("the ZIP64 end record is missing"));
        }
        if le32(&zip64, 16) != 0 || le32(&zip64, 20) != 0 || le64(&zip64, 24) != le64(&zip64, 32) {
            return Err(IpaError::Unsupported { feature: "several disks (a split archive)".to_owned() });
        }
        let zip64_end = End {
            entries: le64(&zip64, 32),
            directory_size: le64(&zip64, 40),
            directory_offset: le64(&zip64, 48),
            records_start: zip64_offset,
        };
        // Classic fields that are not "see ZIP64" markers must agree with the ZIP64 record, or
        // readers that ignore ZIP64 would find another directory.
        let agrees = (entries == u16::MAX || u64::from(entries) == zip64_end.entries)
            && (directory_size == u32::MAX || u64::from(directory_size) == zip64_end.directory_size)
            && (directory_offset == u32::MAX || u64::from(directory_offset) == zip64_end.directory_offset);
        if !agrees {
            return Err(IpaError::malformed("the ZIP64 end record disagrees with the classic one"));
        }
        if zip64_offset + le64(&zip64, 4) + 12 != locator_start {
            return Err(IpaError::malformed("the ZIP64 end record is out of place"));
        }
        return Ok(zip64_end);
    }
    if disk != 0 || directory_disk != 0 || entries_here != entries {
        return Err(IpaError::Unsupported { feature: "several disks (a split archive)".to_owned() });
    }
    if entries == u16::MAX || directory_size == u32::MAX || directory_offset == u32::MAX {
        return Err(IpaError::malformed("ZIP64 values without a ZIP64 end record"));
    }
    Ok(End {
        entries: u64::from(entries),
        directory_size: u64::from(directory_size),
        directory_offset: u64::from(directory_offset),
        records_start: eocd_offset,
    })
}

/// A file that starts like a zip but has no end record was cut short; anything else is not a
/// zip at all.
fn not_zip_or_truncated<S: Source + ?Sized>(source: &S) -> IpaError {
    let mut head = [0u8; 4];
    if source.read_exact_at(0, &mut head).is_ok() && u32::from_le_bytes(head) == LOCAL_SIGNATURE {
        IpaError::truncated("the end of the archive is missing")
    } else {
        IpaError::NotAZip
    }
}

fn parse_directory(directory: &[u8], declared: u64) -> Result<Vec<Entry>> {
    let mut entries = Vec::with_capacity(usize_from(declared)?);
    let mut at = 0usize;
    while at < directory.len() {
        let fixed = directory
            .get(at..at + CENTRAL_LEN)
            .ok_or_else(|| IpaError::malformed("a central directory record is cut short"))?;
        if le32(fixed, 0) != CENTRAL_SIGNATURE {
            return Err(IpaError::malformed("bad central directory signature"));
        }
        let flags = le16(fixed, 8);
        let method = le16(fixed, 10);
        let crc32 = le32(fixed, 16);
        let mut compressed_size = u64::from(le32(fixed, 20));
        let mut size = u64::from(le32(fixed, 24));
        let name_len = usize::from(le16(fixed, 28));
        let extra_len = usize::from(le16(fixed, 30));
        let comment_len = usize::from(le16(fixed, 32));
        let start_disk = le16(fixed, 34);
        let mut local_offset = u64::from(le32(fixed, 42));
        let name_start = at + CENTRAL_LEN;
        let extra_start = name_start + name_len;
        let record_end = extra_start + extra_len + comment_len;
        if record_end > directory.len() {
            return Err(IpaError::malformed("a central directory record is cut short"));
        }
        let extra = &directory[extra_start..extra_start + extra_len];
        apply_zip64_extra(extra, &mut size, &mut compressed_size, &mut local_offset)?;
        if start_disk != 0 && start_disk != u16::MAX {
            return Err(IpaError::Unsupported { feature: "several disks (a split archive)".to_owned() });
        }
        if flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION) != 0 {
            return Err(IpaError::Unsupported { feature: "encrypted entries".to_owned() });
        }
        let name = &directory[name_start..extra_start];
        check_name(name)?;
        if has_unicode_path(extra)? {
            return Err(unicode_path_error(name));
        }
        // Deflate never grows data by more than a few bytes per 64 KiB block; anything larger
        // is padding that costs reading time and could hide data.
        if method == METHOD_DEFLATED && compressed_size > size + size / 1000 + 1024 {
            return Err(IpaError::CorruptEntry {
                name: display_name(name),
                detail: "its compressed size is larger than deflate can produce".to_owned(),
            });
        }
        // Unix (3) and macOS (19) zips keep the file type in the high half of the attributes.
        let made_by_unix = matches!(fixed[5], 3 | 19);
        let is_symlink = made_by_unix && (le32(fixed, 38) >> 16) & 0o170000 == 0o120000;
        entries.push(Entry {
            name_start,
            name_len,
            flags,
            method,
            crc32,
            compressed_size,
            size,
            local_offset,
            boundary: 0,
            is_symlink,
        });
        if entries.len() as u64 > declared {
            return Err(IpaError::malformed("more central directory records than declared"));
        }
        at = record_end;
    }
    if entries.len() as u64 != declared {
        return Err(IpaError::malformed("fewer central directory records than declared"));
    }
    Ok(entries)
}

/// Replaces 0xffffffff sizes and offsets with the ZIP64 extra field's values.
fn apply_zip64_extra(
    mut extra: &[u8],
    size: &mut u64,
    compressed_size: &mut u64,
    local_offset: &mut u64,
) -> Result<()> {
    while extra.len() >= 4 {
        let id = le16(extra, 0);
        let len = usize::from(le16(extra, 2));
        let body = extra.get(4..4 + len).ok_or_else(|| IpaError::malformed("an extra field is cut short"))?;
        if id == 0x0001 {
            let mut fields = body.chunks_exact(8).map(|chunk| le64(chunk, 0));
            for value in [size, compressed_size, local_offset] {
                if *value == u64::from(u32::MAX) {
                    *value = fields.next().ok_or_else(|| IpaError::malformed("a ZIP64 extra field is cut short"))?;
                }
            }
            return Ok(());
        }
        extra = &extra[4 + len..];
    }
    Ok(())
}

/// Refuses names that could escape a directory when extracted.
fn check_name(name: &[u8]) -> Result<()> {
    // A folder's name ends in '/', so its last component is empty; no other may be. Empty and
    // "." components name the same file in two ways, so a device and this reader could
    // disagree on which entry is Info.plist.
    let path = name.strip_suffix(b"/").unwrap_or(name);
    let unsafe_name = name.is_empty()
        || name.contains(&0)
        || name.starts_with(b"/")
        || name.starts_with(b"\\")
        || (name.len() >= 2 && name[1] == b':' && name[0].is_ascii_alphabetic())
        || path
            .split(|&byte| byte == b'/' || byte == b'\\')
            .any(|component| component == b".." || component == b"." || component.is_empty());
    if unsafe_name {
        return Err(IpaError::UnsafePath { name: display_name(name) });
    }
    Ok(())
}

/// Whether an extra field block holds an Info-ZIP Unicode Path field.
fn has_unicode_path(mut extra: &[u8]) -> Result<bool> {
    while extra.len() >= 4 {
        let id = le16(extra, 0);
        let len = usize::from(le16(extra, 2));
        if id == EXTRA_UNICODE_PATH {
            return Ok(true);
        }
        extra = extra.get(4 + len..).ok_or_else(|| IpaError::malformed("an extra field is cut short"))?;
    }
    Ok(false)
}

/// Some extractors name a file by its Unicode Path field instead of its name: this reader and a
/// device could then see different files, so such archives are refused.
fn unicode_path_error(name: &[u8]) -> IpaError {
    IpaError::HeaderMismatch { name: display_name(name), detail: "a second, Unicode name in an extra field".to_owned() }
}

/// Refuses a symbolic link that other entries are stored beneath: an extractor following it
/// would write those entries somewhere else (over the app's Info.plist, say).
fn check_symlinks(directory: &[u8], entries: &[Entry], by_name: &[usize]) -> Result<()> {
    let name =
        |index: usize| &directory[entries[index].name_start..entries[index].name_start + entries[index].name_len];
    for (index, entry) in entries.iter().enumerate() {
        if !entry.is_symlink {
            continue;
        }
        let mut prefix = name(index).strip_suffix(b"/").unwrap_or(name(index)).to_vec();
        prefix.push(b'/');
        let first = by_name.partition_point(|&other| name(other) < prefix.as_slice());
        if by_name.get(first).is_some_and(|&other| name(other).starts_with(&prefix)) {
            return Err(IpaError::UnsafePath { name: display_name(name(index)) });
        }
    }
    Ok(())
}

/// Records for each entry where the next one starts, refusing overlaps found from the central
/// directory alone.
fn set_boundaries(directory: &[u8], entries: &mut [Entry], directory_offset: u64) -> Result<()> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&index| entries[index].local_offset);
    for (position, &index) in order.iter().enumerate() {
        let boundary = match order.get(position + 1) {
            Some(&next) => entries[next].local_offset,
            None => directory_offset,
        };
        let entry = &entries[index];
        let minimum_end = entry
            .local_offset
            .checked_add(LOCAL_LEN + entry.name_len as u64)
            .and_then(|end| end.checked_add(entry.compressed_size))
            .ok_or_else(|| IpaError::malformed("entry size overflows"))?;
        if minimum_end > boundary {
            let second = match order.get(position + 1) {
                Some(&next) => {
                    let other = &entries[next];
                    display_name(&directory[other.name_start..other.name_start + other.name_len])
                }
                None => "the central directory".to_owned(),
            };
            return Err(IpaError::OverlappingEntries {
                first: display_name(&directory[entry.name_start..entry.name_start + entry.name_len]),
                second,
            });
        }
        entries[index].boundary = boundary;
    }
    Ok(())
}

/// Sorts entries by name and refuses duplicates (a folder and a file of one name included).
fn index_names(directory: &[u8], entries: &[Entry]) -> Result<Vec<usize>> {
    let name = |index: usize| {
        let entry = &entries[index];
        &directory[entry.name_start..entry.name_start + entry.name_len]
    };
    let key = |index: usize| {
        let bytes = name(index);
        bytes.strip_suffix(b"/").unwrap_or(bytes)
    };
    let mut by_key: Vec<usize> = (0..entries.len()).collect();
    by_key.sort_by(|&a, &b| key(a).cmp(key(b)));
    if let Some(pair) = by_key.windows(2).find(|pair| key(pair[0]) == key(pair[1])) {
        return Err(IpaError::DuplicateEntry { name: display_name(name(pair[1])) });
    }
    let mut by_name = by_key;
    by_name.sort_by(|&a, &b| name(a).cmp(name(b)));
    Ok(by_name)
}

/// Reads a byte range of a source as a stream.
struct SourceReader<'s, S: Source + ?Sized> {
    source: &'s S,
    position: u64,
    end: u64,
}

impl<S: Source + ?Sized> Read for SourceReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.end - self.position;
        let n = (buf.len() as u64).min(remaining).min(256 << 10) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.source.read_exact_at(self.position, &mut buf[..n])?;
        self.position += n as u64;
        Ok(n)
    }
}

fn truncated_or(error: io::Error, detail: &str) -> IpaError {
    if error.kind() == io::ErrorKind::UnexpectedEof { IpaError::truncated(detail) } else { IpaError::Io(error) }
}

fn usize_from(value: u64) -> Result<usize> {
    usize::try_from(value).map_err(|_| IpaError::malformed("a size does not fit in memory"))
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Names are UTF-8 in every archive Apple's tools write, whatever the flag says; older tools
/// wrote CP437, so fall back to it rather than show replacement characters.
pub(crate) fn display_name(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(text) => text.to_owned(),
        Err(_) => name.iter().map(|&byte| cp437(byte)).collect(),
    }
}

fn cp437(byte: u8) -> char {
    const HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";
    if byte < 0x80 { char::from(byte) } else { HIGH.chars().nth(usize::from(byte - 0x80)).unwrap_or('\u{fffd}') }
}
