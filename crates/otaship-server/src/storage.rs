//! Blob storage: the `.ipa` and the icon of each build, and (on object storage) the parts of
//! resumable uploads. Two backends behind one API:
//!
//! - **local disk** (`file://DIR`, the default under the data directory): blobs are moved into
//!   place from the upload's temporary file (same filesystem: an atomic rename) or written under
//!   a temporary name then renamed, so a crash never leaves a half-written blob under its key;
//! - **S3-compatible object storage** (`s3://BUCKET/PREFIX`, through `object_store`): every
//!   instance sees every blob; an object appears whole or not at all, and uploads stream through
//!   a bounded buffer, so memory does not grow with the file.
//!
//! Every key comes from a [`BlobKey`] or an upload id checked to be hex, so no request can name a
//! file or an object. Errors are `io::Error`s; an object store that fails carries an
//! [`ObjectStoreFailure`] inside, which the HTTP layer reports as `503`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::{Method, SignedUrlOptions, Signer};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use crate::config::{S3Options, StorageSetting};
use crate::tokens::random_hex;

/// What a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// The uploaded archive.
    Ipa,
    /// The icon as a standard PNG.
    Icon,
}

impl BlobKind {
    fn file_name(self) -> &'static str {
        match self {
            BlobKind::Ipa => "app.ipa",
            BlobKind::Icon => "icon.png",
        }
    }
}

/// The address of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey {
    /// Build id (random hex, checked before any path is made).
    pub build_id: String,
    /// Which blob of the build.
    pub kind: BlobKind,
}

impl BlobKey {
    /// The key of a build's blob.
    pub fn new(build_id: &str, kind: BlobKind) -> BlobKey {
        BlobKey { build_id: build_id.to_owned(), kind }
    }

    /// `builds/<id>/<file>`, once the id is checked to be plain hex.
    pub fn relative(&self) -> io::Result<String> {
        check_hex(&self.build_id, "build id")?;
        Ok(format!("builds/{}/{}", self.build_id, self.kind.file_name()))
    }
}

fn check_hex(id: &str, what: &str) -> io::Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a {what}")));
    }
    Ok(())
}

/// An object store failed (unreachable, refused the credentials, ...): not the request's fault,
/// and usually passing.
#[derive(Debug, thiserror::Error)]
#[error("object storage: {0}")]
pub struct ObjectStoreFailure(#[source] pub object_store::Error);

fn object_error(error: object_store::Error) -> io::Error {
    match error {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, error.to_string()),
        error => io::Error::other(ObjectStoreFailure(error)),
    }
}

/// object_store's buffered writer hands its failures over as plain `io::Error`s; this marks them
/// again as the object store's ([`ObjectStoreFailure`]), as every other call's are.
fn writer_error(error: io::Error) -> io::Error {
    if !error.get_ref().is_some_and(|inner| inner.is::<object_store::Error>()) {
        return error;
    }
    match error.into_inner().map(|inner| inner.downcast::<object_store::Error>()) {
        Some(Ok(failure)) => object_error(*failure),
        Some(Err(other)) => io::Error::other(other),
        None => io::Error::other("object storage failed"),
    }
}

/// A blob (or part object) found by listing.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Key relative to the storage root, e.g. `builds/<id>/app.ipa`.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Last written.
    pub modified: SystemTime,
}

/// A stream of a blob's bytes.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Blob storage (cheap to clone).
#[derive(Debug, Clone)]
pub struct Storage {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Local { root: PathBuf },
    Object(Arc<ObjectBackend>),
}

#[derive(Debug)]
struct ObjectBackend {
    store: Arc<AmazonS3>,
    /// Key prefix (`""` or `a/b/`).
    prefix: String,
    /// What the setting said, for messages.
    url: String,
}

/// Buffer of one streamed object upload; larger objects go up as parts of this size.
const UPLOAD_BUFFER: usize = 8 << 20;
/// Parts of one object upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;

impl Storage {
    /// Opens the storage a setting names. Object storage is only configured here, not
    /// contacted: [`Storage::check`] does that.
    pub fn open(setting: &StorageSetting) -> io::Result<Storage> {
        let backend = match setting {
            StorageSetting::Local(root) => Backend::Local { root: root.clone() },
            StorageSetting::S3 { bucket, prefix, options } => {
                let store = s3_builder(bucket, options).build().map_err(|error| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("cannot configure {}: {error}", setting.url()))
                })?;
                let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
                Backend::Object(Arc::new(ObjectBackend { store: Arc::new(store), prefix, url: setting.url() }))
            }
        };
        Ok(Storage { backend })
    }

    /// Whether blobs live on this machine's disk.
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local { .. })
    }

    /// Makes sure the storage is usable: the directory exists, or the bucket answers a listing
    /// (which also proves the credentials).
    pub async fn check(&self) -> io::Result<()> {
        match &self.backend {
            Backend::Local { root } => tokio::fs::create_dir_all(root).await,
            Backend::Object(object) => {
                let prefix = object.path("builds/");
                object.store.list_with_delimiter(Some(&prefix)).await.map_err(|error| {
                    io::Error::other(format!(
                        "cannot list {}: {error}. Check the bucket, --s3-endpoint, --s3-region and the AWS_* \
                         credentials",
                        object.url
                    ))
                })?;
                Ok(())
            }
        }
    }

    /// The file of a local blob (local storage only).
    fn local_path(root: &Path, key: &BlobKey) -> io::Result<PathBuf> {
        Ok(root.join(key.relative()?))
    }

    /// Moves a finished temporary file into place under `key` (on object storage: uploads it,
    /// then deletes the file).
    pub async fn put_file(&self, key: &BlobKey, from: &Path) -> io::Result<()> {
        match &self.backend {
            Backend::Local { root } => {
                let path = Self::local_path(root, key)?;
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                tokio::fs::rename(from, &path).await?;
                sync_parent(&path).await
            }
            Backend::Object(object) => {
                let file = tokio::fs::File::open(from).await?;
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).boxed();
                object.upload(&key.relative()?, stream).await?;
                tokio::fs::remove_file(from).await
            }
        }
    }

    /// Writes bytes under `key`.
    pub async fn put_bytes(&self, key: &BlobKey, bytes: &[u8]) -> io::Result<()> {
        match &self.backend {
            Backend::Local { .. } => {
                let chunk = Bytes::copy_from_slice(bytes);
                self.put_stream(key, futures_util::stream::once(async { Ok(chunk) }).boxed()).await
            }
            Backend::Object(object) => {
                let path = object.path(&key.relative()?);
                object.store.put(&path, PutPayload::from(bytes.to_vec())).await.map_err(object_error)?;
                Ok(())
            }
        }
    }

    /// Writes a stream under `key` (on local disk under a temporary name, then renamed, so that
    /// a crash never leaves half a blob under its key).
    pub async fn put_stream(&self, key: &BlobKey, stream: ByteStream) -> io::Result<()> {
        match &self.backend {
            Backend::Local { root } => {
                let path = Self::local_path(root, key)?;
                let parent = path.parent().ok_or_else(|| io::Error::other("blob path has no parent"))?;
                tokio::fs::create_dir_all(parent).await?;
                let temporary = path.with_extension("part");
                let written = async {
                    let mut file = tokio::fs::File::create(&temporary).await?;
                    let mut stream = stream;
                    while let Some(chunk) = stream.next().await {
                        file.write_all(&chunk?).await?;
                    }
                    file.sync_all().await
                }
                .await;
                if let Err(error) = written {
                    let _ = tokio::fs::remove_file(&temporary).await;
                    return Err(error);
                }
                tokio::fs::rename(&temporary, &path).await?;
                sync_parent(&path).await
            }
            Backend::Object(object) => object.upload(&key.relative()?, stream).await,
        }
    }

    /// The size of a blob.
    pub async fn size(&self, key: &BlobKey) -> io::Result<u64> {
        match &self.backend {
            Backend::Local { root } => Ok(tokio::fs::metadata(Self::local_path(root, key)?).await?.len()),
            Backend::Object(object) => {
                let meta = object.store.head(&object.path(&key.relative()?)).await.map_err(object_error)?;
                Ok(meta.size)
            }
        }
    }

    /// `length` bytes of a blob from `start` (the caller knows its size).
    pub async fn read_range(&self, key: &BlobKey, start: u64, length: u64) -> io::Result<ByteStream> {
        match &self.backend {
            Backend::Local { root } => {
                let file = tokio::fs::File::open(Self::local_path(root, key)?).await?.into_std().await;
                Ok(file_chunks(file, start, length).boxed())
            }
            Backend::Object(object) => {
                if length == 0 {
                    return Ok(futures_util::stream::empty().boxed());
                }
                object.read(&key.relative()?, Some(start..start + length)).await
            }
        }
    }

    /// A URL that fetches the blob straight from object storage for `valid_for`, or `None` on
    /// local disk. `download_name` becomes the response's `Content-Disposition`.
    pub async fn presigned_get(
        &self,
        key: &BlobKey,
        valid_for: Duration,
        download_name: Option<&str>,
    ) -> io::Result<Option<String>> {
        let Backend::Object(object) = &self.backend else {
            return Ok(None);
        };
        let mut options = SignedUrlOptions::new();
        if let Some(disposition) = download_name {
            options = options.with_query([("response-content-disposition", disposition)]);
        }
        let url = object
            .store
            .signed_url_opts(Method::GET, &object.path(&key.relative()?), valid_for, &options)
            .await
            .map_err(object_error)?;
        Ok(Some(url.to_string()))
    }

    /// Deletes every blob of a build.
    pub async fn delete_build(&self, build_id: &str) -> io::Result<()> {
        check_hex(build_id, "build id")?;
        match &self.backend {
            Backend::Local { root } => match tokio::fs::remove_dir_all(root.join("builds").join(build_id)).await {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
            Backend::Object(object) => {
                for kind in [BlobKind::Ipa, BlobKind::Icon] {
                    object.delete(&BlobKey::new(build_id, kind).relative()?).await?;
                }
                Ok(())
            }
        }
    }

    /// Every stored blob under `builds/` (for reconciling, moving and tests).
    pub async fn list_blobs(&self) -> io::Result<Vec<StoredObject>> {
        self.list("builds").await
    }

    /// Ids of the build folders on local disk, whatever they hold (none on object storage, which
    /// has no folders). A crash between creating a build's folder and moving its first blob in
    /// leaves a folder with nothing in it, which [`Storage::list_blobs`] cannot see.
    pub async fn build_folders(&self) -> io::Result<Vec<String>> {
        let Backend::Local { root } = &self.backend else {
            return Ok(Vec::new());
        };
        let mut entries = match tokio::fs::read_dir(root.join("builds")).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut ids = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            // Only what a build id looks like: `delete_build` refuses anything else anyway.
            let plausible = |id: &&str| (1..=64).contains(&id.len()) && id.bytes().all(|byte| byte.is_ascii_hexdigit());
            if let Some(id) = name.to_str().filter(plausible)
                && entry.file_type().await?.is_dir()
            {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }

    /// Every object under `area` (`builds` or `uploads`).
    async fn list(&self, area: &str) -> io::Result<Vec<StoredObject>> {
        match &self.backend {
            Backend::Local { root } => {
                let mut found = Vec::new();
                let mut stack = vec![root.join(area)];
                while let Some(dir) = stack.pop() {
                    let mut entries = match tokio::fs::read_dir(&dir).await {
                        Ok(entries) => entries,
                        Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                        Err(error) => return Err(error),
                    };
                    while let Some(entry) = entries.next_entry().await? {
                        let metadata = entry.metadata().await?;
                        if metadata.is_dir() {
                            stack.push(entry.path());
                        } else if let Ok(relative) = entry.path().strip_prefix(root) {
                            found.push(StoredObject {
                                key: relative.to_string_lossy().replace('\\', "/"),
                                size: metadata.len(),
                                modified: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                            });
                        }
                    }
                }
                found.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(found)
            }
            Backend::Object(object) => {
                let prefix = object.path(&format!("{area}/"));
                let listed: Vec<object_store::ObjectMeta> =
                    object.store.list(Some(&prefix)).try_collect().await.map_err(object_error)?;
                let mut found: Vec<StoredObject> = listed
                    .into_iter()
                    .filter_map(|meta| {
                        let key = meta.location.as_ref().strip_prefix(&object.prefix)?.to_owned();
                        let seconds = u64::try_from(meta.last_modified.timestamp()).unwrap_or(0);
                        Some(StoredObject {
                            key,
                            size: meta.size,
                            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
                        })
                    })
                    .collect();
                found.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(found)
            }
        }
    }

    /// Starts storing part `number` of upload `upload_id` as a new object (object storage
    /// only). Each attempt gets a key of its own, so an object that was recorded is never
    /// overwritten, however requests race.
    pub fn part_writer(&self, upload_id: &str, number: u32) -> io::Result<PartWriter> {
        check_hex(upload_id, "upload id")?;
        let Backend::Object(object) = &self.backend else {
            return Err(io::Error::other("parts are objects only on object storage"));
        };
        let key = format!("uploads/{upload_id}/{number:05}-{}", random_hex(8));
        let writer = object_store::buffered::BufWriter::with_capacity(
            Arc::clone(&object.store) as Arc<dyn ObjectStore>,
            object.path(&key),
            UPLOAD_BUFFER,
        )
        .with_max_concurrency(2);
        Ok(PartWriter { key, writer: Some(writer) })
    }

    /// Reads a part object whole.
    pub async fn read_part(&self, key: &str) -> io::Result<Bytes> {
        let Backend::Object(object) = &self.backend else {
            return Err(io::Error::other("parts are objects only on object storage"));
        };
        check_upload_key(key)?;
        let result = object.store.get(&object.path(key)).await.map_err(object_error)?;
        result.bytes().await.map_err(object_error)
    }

    /// Deletes one part object (already gone is fine).
    pub async fn delete_part(&self, key: &str) -> io::Result<()> {
        check_upload_key(key)?;
        match &self.backend {
            Backend::Local { .. } => Ok(()),
            Backend::Object(object) => object.delete(key).await,
        }
    }

    /// Every part object of every upload.
    pub async fn list_part_objects(&self) -> io::Result<Vec<StoredObject>> {
        match &self.backend {
            Backend::Local { .. } => Ok(Vec::new()),
            Backend::Object(_) => self.list("uploads").await,
        }
    }
}

/// Keys of part objects are `uploads/<hex>/<digits>-<hex>`.
fn check_upload_key(key: &str) -> io::Result<()> {
    let mut segments = key.split('/');
    let valid = segments.next() == Some("uploads")
        && segments.next().is_some_and(|id| check_hex(id, "upload id").is_ok())
        && segments
            .next()
            .is_some_and(|name| !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_hexdigit() || byte == b'-'))
        && segments.next().is_none();
    if valid { Ok(()) } else { Err(io::Error::new(io::ErrorKind::InvalidInput, "not a part key")) }
}

/// A part being written to its own object.
pub struct PartWriter {
    /// The object's key.
    pub key: String,
    writer: Option<object_store::buffered::BufWriter>,
}

impl PartWriter {
    /// Appends bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.writer {
            Some(writer) => writer.write_all(bytes).await.map_err(writer_error),
            None => Err(io::Error::other("the part was already finished")),
        }
    }

    /// Finishes the object: it exists from now on.
    pub async fn finish(mut self) -> io::Result<()> {
        match self.writer.take() {
            Some(mut writer) => writer.shutdown().await.map_err(writer_error),
            None => Ok(()),
        }
    }

    /// Gives up: nothing is left behind (a multipart upload begun is aborted).
    pub async fn abort(mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.abort().await;
        }
    }
}

/// How object storage requests are retried: through a passing error (a 5xx, `SlowDown`, a reset
/// connection) but not for long. `object_store` alone retries for up to three minutes, so while
/// the store is down every download and upload would hang that long before its `503`.
fn s3_retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(10),
    }
}

fn s3_builder(bucket: &str, options: &S3Options) -> AmazonS3Builder {
    // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL...
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(options.virtual_hosted)
        .with_retry(s3_retries());
    if let Some(id) = &options.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &options.secret_access_key {
        builder = builder.with_secret_access_key(&secret.0);
    }
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &options.endpoint {
        // A private store on plain HTTP (MinIO in a lab) is the operator's choice to make.
        builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
    }
    builder
}

impl ObjectBackend {
    fn path(&self, relative: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{relative}", self.prefix))
    }

    /// Streams `stream` into the object `relative`: one PUT for small objects, a multipart
    /// upload of [`UPLOAD_BUFFER`] parts for large ones; aborted (nothing left) on failure.
    async fn upload(&self, relative: &str, mut stream: ByteStream) -> io::Result<()> {
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            Arc::clone(&self.store) as Arc<dyn ObjectStore>,
            self.path(relative),
            UPLOAD_BUFFER,
        )
        .with_max_concurrency(UPLOAD_CONCURRENCY);
        let streamed = async {
            while let Some(chunk) = stream.next().await {
                writer.write_all(&chunk?).await.map_err(writer_error)?;
            }
            Ok::<(), io::Error>(())
        }
        .await;
        if let Err(error) = streamed {
            let _ = writer.abort().await;
            return Err(error);
        }
        // Not aborted if this fails: a writer that began shutting down cannot be (object_store
        // panics), and holds no more than an incomplete multipart upload, out of sight, which
        // the bucket's lifecycle rule removes (see DEPLOY.md).
        writer.shutdown().await.map_err(writer_error)
    }

    async fn read(&self, relative: &str, range: Option<std::ops::Range<u64>>) -> io::Result<ByteStream> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = self.store.get_opts(&self.path(relative), options).await.map_err(object_error)?;
        Ok(result.into_stream().map_err(object_error).boxed())
    }

    async fn delete(&self, relative: &str) -> io::Result<()> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(object_error(error)),
        }
    }
}

/// Bytes per read of a local download. Larger chunks mean fewer trips to the blocking pool per
/// GiB, but each in-flight download holds about two of them: at 512 KiB, 200 testers
/// downloading at once beside 10 uploads took the server past 300 MiB (`bench/load`: 317.7
/// MiB; 206.7 MiB at 256 KiB, for some more CPU per GiB).
const CHUNK: u64 = 256 << 10;

/// `length` bytes of `file` from `start`, as a stream of chunks. Each chunk is read with one
/// positioned read straight into the buffer that goes to the socket (no intermediate copy).
fn file_chunks(
    file: std::fs::File,
    start: u64,
    length: u64,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let file = Arc::new(file);
    futures_util::stream::try_unfold((start, start + length), move |(at, end)| {
        let file = Arc::clone(&file);
        async move {
            if at >= end {
                return Ok(None);
            }
            let size = usize::try_from(CHUNK.min(end - at)).map_err(io::Error::other)?;
            let chunk = tokio::task::spawn_blocking(move || {
                let mut buffer = bytes::BytesMut::zeroed(size);
                read_exact_at(&file, &mut buffer, at)?;
                Ok::<_, io::Error>(buffer.freeze())
            })
            .await
            .map_err(io::Error::other)??;
            Ok(Some((chunk, (at + size as u64, end))))
        }
    })
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &std::fs::File, mut buffer: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buffer.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buffer, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            read => {
                buffer = &mut buffer[read..];
                offset += read as u64;
            }
        }
    }
    Ok(())
}

/// Makes a rename durable: fsync the directory that holds the new name.
async fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        tokio::fs::File::open(parent).await?.sync_all().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_their_area() {
        assert_eq!(BlobKey::new("ab12", BlobKind::Ipa).relative().ok().as_deref(), Some("builds/ab12/app.ipa"));
        assert!(BlobKey::new("../etc", BlobKind::Ipa).relative().is_err());
        assert!(BlobKey::new("", BlobKind::Icon).relative().is_err());
        assert!(check_upload_key("uploads/ab12/00001-ff00").is_ok());
        for bad in
            ["uploads/ab12/../x", "builds/ab12/app.ipa", "uploads/zz/00001-ff", "uploads/ab12/1/2", "uploads/ab12/"]
        {
            assert!(check_upload_key(bad).is_err(), "{bad}");
        }
    }
}
