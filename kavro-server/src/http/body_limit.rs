//! Caps request bodies at 1 MiB: a declared `Content-Length` over the cap is
//! refused before reading; a chunked body is read up to the cap and refused
//! the moment it passes it. (poem's own `SizeLimit` answers 411 to any request
//! without `Content-Length`, GETs included, so it does not fit.)

use poem::http::header::CONTENT_LENGTH;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::error::ApiError;

pub struct BodyLimit {
    pub max: usize,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        BodyLimitEndpoint {
            inner: ep,
            max: self.max,
        }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    max: usize,
}

fn too_large(max: usize) -> poem::Error {
    ApiError::too_large(format!("Request body is larger than {max} bytes")).into()
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
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
        } else if has_body(&req) {
            let body = req.take_body();
            let bytes = body
                .into_bytes_limit(self.max)
                .await
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
fn has_body(req: &Request) -> bool {
    req.headers()
        .contains_key(poem::http::header::TRANSFER_ENCODING)
}
