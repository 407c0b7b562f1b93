//! Downloads of the `.ipa` and the icon: GET and HEAD, `Content-Length`, single byte ranges
//! (`206`), a strong `ETag` from the content's SHA-256, and never any compression; streamed from
//! local disk or object storage, or (`--storage-redirect`) redirected to a presigned URL. Counts
//! the `.ipa` downloads that start and that complete (install analytics).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use futures_util::StreamExt;

use crate::AppState;
use crate::analytics::{self, Client};
use crate::db::{BuildRow, EventKind};
use crate::error::ApiError;
use crate::ingest::storage_error;
use crate::storage::{BlobKey, BlobKind, Storage};

async fn build_for(state: &AppState, token: &str) -> Result<BuildRow, ApiError> {
    super::build_by_token(state, token).await?.ok_or_else(|| ApiError::not_found("The build"))
}

/// How long a presigned download URL stays valid. The installer requests it at once (the
/// redirect is made for this very request); a transfer started in time may take longer.
const REDIRECT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(600);

/// `GET|HEAD /i/{token}/app.ipa`. With `--storage-redirect`, a GET is answered with a redirect
/// to a presigned object-store URL; the manifest still names this URL, which never expires.
pub async fn ipa(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let build = build_for(&state, &token).await?;
    serve_ipa(&state, &build, None, &method, &headers).await
}

/// Serves a build's `.ipa` (reached through its install token, or a share link's capability)
/// and counts the downloads that start and complete.
pub(crate) async fn serve_ipa(
    state: &AppState,
    build: &BuildRow,
    link_id: Option<&str>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let key = BlobKey::new(&build.id, BlobKind::Ipa);
    let disposition = content_disposition(build);
    let counted = Counted { state, build_id: &build.id, link_id, client: Client::of(headers) };
    if state.config.storage_redirect
        && method == Method::GET
        && let Some(url) =
            state.storage.presigned_get(&key, REDIRECT_VALIDITY, Some(&disposition)).await.map_err(storage_error)?
    {
        // Only the start is known: the bytes flow from the object store.
        if !headers.contains_key(header::RANGE) {
            counted.record(EventKind::DownloadStarted).await;
        }
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, url)
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::empty())
            .map_err(ApiError::internal);
    }
    let etag = format!("\"{}\"", build.sha256);
    let blob = Blob { storage: &state.storage, key, size: build.size };
    serve_blob(blob, &etag, "application/octet-stream", Some(&disposition), method, headers, Some(counted)).await
}

/// `GET /i/{token}/icon.png`: the icon as a standard PNG.
pub async fn icon(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let build = build_for(&state, &token).await?;
    serve_icon(&state, &build, &headers).await
}

/// Serves a build's icon.
pub(crate) async fn serve_icon(state: &AppState, build: &BuildRow, headers: &HeaderMap) -> Result<Response, ApiError> {
    if !build.has_icon {
        return Err(ApiError::not_found("The icon"));
    }
    let key = BlobKey::new(&build.id, BlobKind::Icon);
    let size = state.storage.size(&key).await.map_err(storage_error)?;
    let etag = format!("\"icon-{}\"", build.sha256);
    let blob = Blob { storage: &state.storage, key, size };
    serve_blob(blob, &etag, "image/png", None, &Method::GET, headers, None).await
}

/// The downloads of a build to count: whose, through which link, from which device.
struct Counted<'a> {
    state: &'a AppState,
    build_id: &'a str,
    link_id: Option<&'a str>,
    client: Client,
}

impl Counted<'_> {
    async fn record(&self, kind: EventKind) {
        analytics::record_for(self.state, self.build_id, self.link_id, kind, self.client.clone()).await;
    }
}

/// A stored blob of known size.
struct Blob<'a> {
    storage: &'a Storage,
    key: BlobKey,
    size: u64,
}

/// A readable file name: `Name-1.2-45.ipa`, ASCII for old clients and UTF-8 for the rest.
fn content_disposition(build: &BuildRow) -> String {
    let mut name = build.name.clone().unwrap_or_else(|| build.bundle_id.clone());
    for part in [&build.version, &build.build].into_iter().flatten() {
        name.push('-');
        name.push_str(part);
    }
    let safe: String =
        name.chars().map(|c| if c.is_control() || matches!(c, '/' | '\\' | '"' | ':') { '_' } else { c }).collect();
    let ascii: String =
        safe.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    let encoded = percent_encoding::utf8_percent_encode(&safe, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}.ipa\"; filename*=UTF-8''{encoded}.ipa")
}

async fn serve_blob(
    blob: Blob<'_>,
    etag: &str,
    content_type: &'static str,
    disposition: Option<&str>,
    method: &Method,
    headers: &HeaderMap,
    counted: Option<Counted<'_>>,
) -> Result<Response, ApiError> {
    let size = blob.size;
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, "private, no-transform");
    if let Some(disposition) = disposition {
        response = response.header(header::CONTENT_DISPOSITION, disposition);
    }
    let header_text = |name: header::HeaderName| headers.get(name).and_then(|value| value.to_str().ok());
    if header_text(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"))
    {
        return response.status(StatusCode::NOT_MODIFIED).body(Body::empty()).map_err(ApiError::internal);
    }
    // A Range applies only if If-Range (when present) still names this content.
    let range =
        header_text(header::RANGE).filter(|_| header_text(header::IF_RANGE).is_none_or(|tag| tag.trim() == etag));
    let (status, start, length) = match range.map(|text| parse_range(text, size)) {
        None | Some(RangeRequest::Ignore) => (StatusCode::OK, 0, size),
        Some(RangeRequest::Single(start, end)) => {
            response = response.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Some(RangeRequest::Unsatisfiable) => {
            return response
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .map_err(ApiError::internal);
        }
    };
    response = response.status(status).header(header::CONTENT_LENGTH, HeaderValue::from(length));
    if method == Method::HEAD {
        return response.body(Body::empty()).map_err(ApiError::internal);
    }
    let bytes = blob.storage.read_range(&blob.key, start, length).await.map_err(storage_error)?;
    let Some(counted) = counted else {
        return response.body(Body::from_stream(bytes)).map_err(ApiError::internal);
    };
    if start == 0 {
        counted.record(EventKind::DownloadStarted).await;
    }
    // A short read of the end (a zip reader's look at the central directory) is not the end of
    // a download; a resumed download's last range is.
    if start + length < size || length == 0 || (start > 0 && length < (size / 2).min(1 << 20)) {
        return response.body(Body::from_stream(bytes)).map_err(ApiError::internal);
    }
    // The download is complete when this response has handed over the file's last byte and
    // every byte before it that it promised (a resumed download completes on its last range).
    let state = counted.state.clone();
    let (build_id, link_id, client) = (counted.build_id.to_owned(), counted.link_id.map(str::to_owned), counted.client);
    let mut served = 0u64;
    let mut completion = Some((state, build_id, link_id, client));
    let tracked = bytes.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            served += chunk.len() as u64;
            if served >= length
                && let Some((state, build_id, link_id, client)) = completion.take()
            {
                tokio::spawn(async move {
                    let kind = EventKind::DownloadCompleted;
                    analytics::record_for(&state, &build_id, link_id.as_deref(), kind, client).await;
                });
            }
        }
    });
    response.body(Body::from_stream(tracked)).map_err(ApiError::internal)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Serve the whole file (malformed or multi-range requests: allowed by RFC 9110).
    Ignore,
    /// Inclusive byte range.
    Single(u64, u64),
    /// Nothing of the range exists.
    Unsatisfiable,
}

fn parse_range(text: &str, size: u64) -> RangeRequest {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = |value: &str| value.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parsed(last) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(suffix) => RangeRequest::Single(size.saturating_sub(suffix), size - 1),
            None => RangeRequest::Ignore,
        },
        (false, _) => match (parsed(first), if last.is_empty() { Some(u64::MAX) } else { parsed(last) }) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Single(start, end.min(size - 1))
                }
            }
            _ => RangeRequest::Ignore,
        },
        (true, true) => RangeRequest::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::{RangeRequest, parse_range};

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeRequest::Single(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), RangeRequest::Single(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), RangeRequest::Single(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), RangeRequest::Single(0, 999));
        assert_eq!(parse_range("bytes=990-5000", 1000), RangeRequest::Single(990, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), RangeRequest::Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeRequest::Ignore);
        assert_eq!(parse_range("items=0-1", 1000), RangeRequest::Ignore);
        assert_eq!(parse_range("bytes=x-1", 1000), RangeRequest::Ignore);
    }
}
