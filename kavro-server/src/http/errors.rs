//! Renders every error that did not come from a handler (malformed JSON, a bad
//! query parameter, a missing token, an unknown route) in the contract's JSON
//! shape, with the status the contract gives it: validation problems are
//! `422`, never the framework's `400`.

use kavro_proto::api::FieldError;
use poem::{IntoResponse, Response};
use poem_openapi::OperationId;
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};

use crate::error::ApiError;

pub async fn render(err: poem::Error) -> Response {
    // Keep the operation name for the request metrics.
    let operation = err.data::<OperationId>().map(|op| OperationId(op.0));
    let mut response = to_api_error(err, operation.as_ref().map(|op| op.0))
        .map_or_else(|response| response, IntoResponse::into_response);
    if let Some(operation) = operation {
        response.set_data(operation);
    }
    response
}

/// Maps a framework error to an [`ApiError`]; a response a handler already
/// built passes through unchanged (`Err`).
fn to_api_error(err: poem::Error, operation: Option<&str>) -> Result<ApiError, Response> {
    if err.is_from_response() {
        return Err(err.into_response());
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return Ok(ApiError::validation(vec![FieldError {
            field: "body".to_owned(),
            message: clean(&e.reason),
        }]));
    }
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        return Ok(ApiError::invalid_field(e.name, clean(&e.reason)));
    }
    if let Some(e) = err.downcast_ref::<ParsePathError>() {
        let name = operation.and_then(path_param_name).unwrap_or(e.name);
        return Ok(ApiError::invalid_field(name, clean(&e.reason)));
    }
    if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        return Ok(ApiError::unsupported_media_type(format!(
            "{e}; send JSON with Content-Type: application/json"
        )));
    }
    if err.is::<AuthorizationError>() {
        return Ok(ApiError::unauthorized("Not authenticated"));
    }
    if err.is::<poem::error::NotFoundError>() {
        return Ok(ApiError::not_found("Not found"));
    }
    if err.is::<poem::error::MethodNotAllowedError>() {
        return Ok(ApiError::method_not_allowed());
    }
    let status = err.status();
    if status.is_server_error() {
        return Ok(ApiError::internal(&err));
    }
    // Any other client error: keep its status, give it our shape.
    let message = status
        .canonical_reason()
        .unwrap_or("Bad request")
        .to_owned();
    let mut response = ApiError::bad_request(message.clone()).into_response();
    response.set_status(status);
    let body = kavro_proto::api::ErrorBody {
        error: message,
        details: None,
        status_code: status.as_u16(),
    };
    response.set_body(serde_json::to_vec(&body).unwrap_or_default());
    Err(response)
}

/// poem-openapi calls every path parameter `param0`; name it as the route
/// does (`/keys/{id}` is a user id to read and a key id to retire).
fn path_param_name(operation: &str) -> Option<&'static str> {
    match operation {
        "get_keys" => Some("user_id"),
        "retire_key" => Some("key_id"),
        "ack_message" | "message_status" => Some("id"),
        "get_user" => Some("username"),
        _ => None,
    }
}

/// poem-openapi's reasons quote Rust type names; keep them short and readable.
fn clean(reason: &str) -> String {
    reason.replace("failed to parse \"", "invalid \"")
}
