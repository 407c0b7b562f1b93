//! `otaship-bench s3-server`: an S3-compatible server (s3s over s3s-fs: every bucket is a
//! directory under the root, every object a file) on a local address, for `bench/scale`. Only
//! requests signed with the one access key are accepted. Runs until killed.
//!
//! s3s-fs streams an object's body with 4 KiB reads, each a trip to tokio's blocking pool: about
//! 70 MiB per second of CPU here, so a benchmark of anything behind it measures that loop. With
//! `--read-chunk N` (the default, 1 MiB) object bodies are read instead in chunks of N bytes by
//! positioned reads, one blocking-pool trip each; everything else (signatures, metadata,
//! multipart uploads, listings) is s3s-fs's. `--read-chunk 0` keeps s3s-fs's own reads.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, Result};
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

/// Settings of the server.
pub struct S3Settings {
    /// Directory holding the buckets (each bucket a directory: create it before use).
    pub root: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:9000 (port 0: any free port).
    pub listen: String,
    /// The access key id requests must be signed with.
    pub access_key: String,
    /// Its secret key.
    pub secret_key: String,
    /// Bytes per read of an object's body; 0 for s3s-fs's own 4 KiB reads.
    pub read_chunk: usize,
}

/// Serves S3 until the process is killed; prints `listening on http://ADDR` once it accepts.
pub fn serve(settings: S3Settings) -> Result<()> {
    std::fs::create_dir_all(&settings.root).with_context(|| format!("create {}", settings.root.display()))?;
    let root = settings.root.canonicalize().with_context(|| format!("resolve {}", settings.root.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("listen on {}", settings.listen))?;
        let filesystem = s3s_fs::FileSystem::new(&root).map_err(|error| anyhow::anyhow!("s3s-fs: {error:?}"))?;
        let mut builder = if settings.read_chunk == 0 {
            s3s::service::S3ServiceBuilder::new(filesystem)
        } else {
            s3s::service::S3ServiceBuilder::new(ChunkedReads { inner: filesystem, root, chunk: settings.read_chunk })
        };
        builder.set_auth(s3s::auth::SimpleAuth::from_single(settings.access_key, settings.secret_key));
        let service = Arc::new(builder.build());
        println!("listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    eprintln!("accept: {error}");
                    continue;
                }
            };
            // Small requests (signed metadata calls) should not wait for Nagle.
            stream.set_nodelay(true).ok();
            let service = Arc::clone(&service);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let handler = hyper::service::service_fn(move |request| {
                    let service = Arc::clone(&service);
                    async move { hyper::service::Service::call(&*service, request).await }
                });
                if let Err(error) = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(io, handler)
                    .await
                {
                    eprintln!("connection: {error}");
                }
            });
        }
    })
}

/// s3s-fs with object bodies read in large chunks.
struct ChunkedReads {
    inner: s3s_fs::FileSystem,
    /// The same root as `inner`'s (canonical).
    root: PathBuf,
    chunk: usize,
}

type Answer<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

/// Methods passed to s3s-fs as they are (what `s3s::S3`'s `#[async_trait]` expands them to).
macro_rules! delegate {
    ($($name:ident($input:ty) -> $output:ty;)*) => {$(
        fn $name<'life, 'answer>(&'life self, request: S3Request<$input>) -> Answer<'answer, $output>
        where
            'life: 'answer,
            Self: 'answer,
        {
            self.inner.$name(request)
        }
    )*};
}

impl S3 for ChunkedReads {
    delegate! {
        abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
        complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
        copy_object(CopyObjectInput) -> CopyObjectOutput;
        create_bucket(CreateBucketInput) -> CreateBucketOutput;
        create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
        delete_object(DeleteObjectInput) -> DeleteObjectOutput;
        delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        head_object(HeadObjectInput) -> HeadObjectOutput;
        list_buckets(ListBucketsInput) -> ListBucketsOutput;
        list_objects(ListObjectsInput) -> ListObjectsOutput;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
        list_parts(ListPartsInput) -> ListPartsOutput;
        put_object(PutObjectInput) -> PutObjectOutput;
        upload_part(UploadPartInput) -> UploadPartOutput;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
    }

    /// s3s-fs answers (status, headers, range checks); its body is replaced by chunked reads of
    /// the same bytes.
    fn get_object<'life, 'answer>(&'life self, request: S3Request<GetObjectInput>) -> Answer<'answer, GetObjectOutput>
    where
        'life: 'answer,
        Self: 'answer,
    {
        Box::pin(async move {
            let path = object_path(&self.root, &request.input.bucket, &request.input.key)?;
            let mut response = self.inner.get_object(request).await?;
            let length = response.output.content_length.and_then(|length| u64::try_from(length).ok()).unwrap_or(0);
            let start = match &response.output.content_range {
                // "bytes FIRST-LAST/SIZE"
                Some(range) => range
                    .strip_prefix("bytes ")
                    .and_then(|rest| rest.split('-').next())
                    .and_then(|first| first.parse().ok())
                    .ok_or_else(|| s3s::s3_error!(InternalError, "unexpected Content-Range {range}"))?,
                None => 0,
            };
            let file = std::fs::File::open(&path).map_err(|error| s3s::s3_error!(error, NoSuchKey))?;
            response.output.body = Some(StreamingBlob::wrap(chunks(Arc::new(file), start, length, self.chunk)));
            Ok(response)
        })
    }
}

/// Where s3s-fs keeps an object (its own rule: root/bucket/key, which must stay under root).
fn object_path(root: &Path, bucket: &str, key: &str) -> S3Result<PathBuf> {
    let relative = Path::new(bucket).join(key);
    if relative.components().any(|part| !matches!(part, std::path::Component::Normal(_))) {
        return Err(s3s::s3_error!(InvalidArgument, "unexpected object path"));
    }
    Ok(root.join(relative))
}

/// `length` bytes of `file` from `start`, in chunks of `chunk` bytes: one positioned read each,
/// on the blocking pool, straight into the buffer that is sent.
fn chunks(
    file: Arc<std::fs::File>,
    start: u64,
    length: u64,
    chunk: usize,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static {
    let end = start + length;
    futures_util::stream::try_unfold(start, move |at| {
        let file = Arc::clone(&file);
        async move {
            if at >= end {
                return Ok(None);
            }
            let size = usize::try_from(end - at).unwrap_or(usize::MAX).min(chunk);
            let bytes = tokio::task::spawn_blocking(move || {
                let mut buffer = bytes::BytesMut::zeroed(size);
                std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buffer, at)?;
                Ok::<_, std::io::Error>(buffer.freeze())
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(Some((bytes, at + size as u64)))
        }
    })
}
