//! Every request's future is held for as long as the request runs: a
//! long-poll holds it up to a minute, times thousands of connections. These
//! check that our middlewares do not keep a copy of the request in their
//! future beside the inner endpoint's (what an `async fn call(&self, req)`
//! does, about 2× a `Request` per layer).

use std::future::Future;
use std::mem::size_of_val;
use std::time::Duration;

use poem::{Endpoint, Middleware, Request, Response, Result};

use super::allow::{AllowHeader, AllowedMethods};
use super::body_limit::BodyLimit;
use super::headers::SecurityHeaders;
use super::metrics::RequestMetrics;

/// An endpoint whose future is tiny: what a layer adds shows directly.
struct Probe;

impl Endpoint for Probe {
    type Output = Response;

    fn call(&self, _req: Request) -> impl Future<Output = Result<Response>> + Send {
        std::future::ready(Ok(Response::default()))
    }
}

/// The probe's own future plus well under one `Request` (472 bytes with
/// poem 3.1): a layer may keep small values (a start time, a path, the
/// response while it edits it) but not the request.
fn limit() -> usize {
    size_of_val(&Probe.call(Request::default())) + size_of_val(&Request::default()) / 2
}

fn future_size<E: Endpoint>(ep: &E, req: Request) -> usize {
    size_of_val(&ep.call(req))
}

#[test]
fn request_metrics_keeps_no_request() {
    let ep = RequestMetrics.transform(Probe);
    assert!(future_size(&ep, Request::default()) < limit());
}

#[test]
fn security_headers_keep_no_request() {
    let ep = SecurityHeaders { hsts: false }.transform(Probe);
    assert!(future_size(&ep, Request::default()) < limit());
}

#[test]
fn allow_header_keeps_no_request() {
    let ep = AllowHeader(AllowedMethods::default()).transform(Probe);
    assert!(future_size(&ep, Request::default()) < limit());
}

#[test]
fn body_limit_keeps_no_request_for_a_bodyless_request() {
    let ep = BodyLimit {
        max: 1024,
        timeout: Duration::from_secs(1),
    }
    .transform(Probe);
    assert!(future_size(&ep, Request::builder().finish()) < limit());
}

#[test]
fn the_limit_is_below_a_request() {
    // If a Request ever shrank to nothing these tests would prove nothing.
    assert!(size_of_val(&Request::default()) >= 256);
}
