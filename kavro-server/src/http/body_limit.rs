//! Caps request bodies at 1 MiB: a declared `Content-Length` over the cap is
//! refused before reading; a chunked body is read up to the cap and refused
//! the moment it passes it. (poem's own `SizeLimit` answers 411 to any request
//! without `Content-Length`, GETs included, so it does not fit.) The body
//! must also arrive within a deadline, so a client cannot hold a connection
//! by trickling it (`408`).

use futures_util::StreamExt as _;
use poem::http::header::CONTENT_LENGTH;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::error::ApiError;

pub struct BodyLimit {
    pub max: usize,
    pub timeout: std::time::Duration,
    /// The cap of a blob chunk (`PUT /v2/blobs/{id}`), larger than `max`.
    pub blob_chunk_max: usize,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        BodyLimitEndpoint {
            inner: ep,
            max: self.max,
            timeout: self.timeout,
            blob_chunk_max: self.blob_chunk_max,
        }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    max: usize,
    timeout: std::time::Duration,
    blob_chunk_max: usize,
}

fn too_large(max: usize) -> poem::Error {
    ApiError::too_large(format!("Request body is larger than {max} bytes")).into()
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let blob_chunk =
            req.method() == poem::http::Method::PUT && req.uri().path().starts_with("/v2/blobs/");
        let max = if blob_chunk {
            self.blob_chunk_max
        } else {
            self.max
        };
        let mut has_body = has_chunked_body(&req);
        let mut expected = 0;
        if let Some(len) = req.headers().get(CONTENT_LENGTH) {
            let declared = len
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    poem::Error::from(ApiError::bad_request("Invalid Content-Length"))
                })?;
            if declared > max as u64 {
                return Err(too_large(max));
            }
            has_body = declared > 0;
            expected = usize::try_from(declared).unwrap_or(max);
        }
        if has_body && blob_chunk {
            // A blob chunk streams on to storage as it arrives
            // (`blobs::Blobs::put_chunk` counts it against the chunk cap):
            // only the deadline is kept here.
            let deadline = tokio::time::Instant::now() + self.timeout;
            let body = SharedBody::new(with_deadline(req.take_body(), deadline));
            req.set_body(poem::Body::from_bytes_stream(body.frames()));
            let answer = self.inner.call(req).await;
            body.drain(max).await;
            return answer.map(IntoResponse::into_response);
        } else if has_body {
            let body = req.take_body();
            let bytes = tokio::time::timeout(self.timeout, read_limited(body, expected, max))
                .await
                .map_err(|_| poem::Error::from(ApiError::request_timeout()))??;
            req.set_body(bytes);
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// Reads a body of at most `max` bytes into one buffer of the declared
/// size (`expected`, 0 when unknown), frame by frame as the connection
/// delivers them: one copy, no regrowth. (poem's `into_bytes_limit` goes
/// through a 4 KiB bounce buffer and a doubling `BytesMut`, which cost a
/// blob chunk of 8 MiB thousands of polls and a few reallocations.)
async fn read_limited(body: poem::Body, expected: usize, max: usize) -> Result<bytes::Bytes> {
    let mut frames = std::pin::pin!(body.into_bytes_stream());
    let mut data = bytes::BytesMut::with_capacity(expected.min(max));
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|_| {
            poem::Error::from(ApiError::bad_request("Could not read the request body"))
        })?;
        if data.len() + frame.len() > max {
            return Err(too_large(max));
        }
        data.extend_from_slice(&frame);
    }
    Ok(data.freeze())
}

/// The body's frames until `deadline`; then an error of kind
/// [`std::io::ErrorKind::TimedOut`] (answered `408`).
fn with_deadline(
    body: poem::Body,
    deadline: tokio::time::Instant,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let frames = Box::pin(body.into_bytes_stream());
    futures_util::stream::unfold(Some(frames), move |frames| async move {
        let mut frames = frames?;
        match tokio::time::timeout_at(deadline, frames.next()).await {
            Ok(Some(frame)) => Some((frame, Some(frames))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                )),
                None,
            )),
        }
    })
}

type Frames =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// A streamed body the endpoint reads and the middleware finishes: an
/// endpoint that answers before the body's end (a bad token, an unknown
/// blob, a wrong offset) would otherwise leave it unread, and the HTTP
/// server would close the connection under a client still sending: the
/// client would see a broken pipe instead of the answer (a `401` it should
/// renew its token on, a `409` it should resume from).
struct SharedBody(std::sync::Arc<tokio::sync::Mutex<Frames>>);

impl SharedBody {
    fn new(
        frames: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Self {
        // Fused: the drain may poll it again after the endpoint read it all.
        Self(std::sync::Arc::new(tokio::sync::Mutex::new(Box::pin(
            frames.fuse(),
        ))))
    }

    /// The frames, for the endpoint.
    fn frames(
        &self,
    ) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
        futures_util::stream::unfold(self.0.clone(), |frames| async move {
            let next = frames.lock().await.next().await;
            next.map(|frame| (frame, frames))
        })
    }

    /// Reads and drops what the endpoint left, at most `max` bytes (and
    /// within the body's deadline); a longer or broken rest is left, and
    /// the connection closes.
    async fn drain(&self, max: usize) {
        let mut frames = self.0.lock().await;
        let mut drained = 0;
        while let Some(Ok(frame)) = frames.next().await {
            drained += frame.len();
            if drained > max {
                break;
            }
        }
    }
}

/// A request without `Content-Length` may still stream a chunked body.
fn has_chunked_body(req: &Request) -> bool {
    req.headers()
        .contains_key(poem::http::header::TRANSFER_ENCODING)
}
