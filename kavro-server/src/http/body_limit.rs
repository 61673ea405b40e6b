//! Caps request bodies at 1 MiB: a declared `Content-Length` over the cap is
//! refused before reading; a chunked body is read up to the cap and refused
//! the moment it passes it. (poem's own `SizeLimit` answers 411 to any request
//! without `Content-Length`, GETs included, so it does not fit.) The body
//! must also arrive within a deadline, so a client cannot hold a connection
//! by trickling it (`408`).

use poem::http::header::CONTENT_LENGTH;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::error::ApiError;

pub struct BodyLimit {
    pub max: usize,
    pub timeout: std::time::Duration,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        BodyLimitEndpoint {
            inner: ep,
            max: self.max,
            timeout: self.timeout,
        }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    max: usize,
    timeout: std::time::Duration,
}

fn too_large(max: usize) -> poem::Error {
    ApiError::too_large(format!("Request body is larger than {max} bytes")).into()
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let mut has_body = has_chunked_body(&req);
        if let Some(len) = req.headers().get(CONTENT_LENGTH) {
            let declared = len
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    poem::Error::from(ApiError::bad_request("Invalid Content-Length"))
                })?;
            if declared > self.max as u64 {
                return Err(too_large(self.max));
            }
            has_body = declared > 0;
        }
        if has_body {
            let body = req.take_body();
            let bytes = tokio::time::timeout(self.timeout, body.into_bytes_limit(self.max))
                .await
                .map_err(|_| poem::Error::from(ApiError::request_timeout()))?
                .map_err(|err| match err {
                    poem::error::ReadBodyError::PayloadTooLarge => too_large(self.max),
                    _ => ApiError::bad_request("Could not read the request body").into(),
                })?;
            req.set_body(bytes);
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// A request without `Content-Length` may still stream a chunked body.
fn has_chunked_body(req: &Request) -> bool {
    req.headers()
        .contains_key(poem::http::header::TRANSFER_ENCODING)
}
