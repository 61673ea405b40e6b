//! `405 Method Not Allowed` answers carry the `Allow` header RFC 9110
//! requires, listing the methods the path does support, as read from the
//! OpenAPI spec the routes were built from.

use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

/// Path templates (`/keys/{user_id}`) and their methods.
#[derive(Clone, Debug, Default)]
pub struct AllowedMethods {
    routes: Vec<(Vec<String>, String)>,
}

impl AllowedMethods {
    /// Reads `paths` of an OpenAPI document.
    pub fn from_spec(spec_json: &str) -> Self {
        let Ok(spec) = serde_json::from_str::<serde_json::Value>(spec_json) else {
            return Self::default();
        };
        let routes = spec["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .iter()
                    .map(|(path, item)| {
                        let mut methods: Vec<String> = item
                            .as_object()
                            .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                            .unwrap_or_default();
                        if methods.iter().any(|m| m == "GET") {
                            methods.push("HEAD".to_owned());
                        }
                        (segments(path), methods.join(", "))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { routes }
    }

    /// The `Allow` value for a request path, if it names a known route.
    pub fn for_path(&self, path: &str) -> Option<&str> {
        let path = path.strip_prefix("/api/v1").unwrap_or(path);
        let wanted = segments(path);
        self.routes
            .iter()
            .find(|(template, _)| {
                template.len() == wanted.len()
                    && template
                        .iter()
                        .zip(&wanted)
                        .all(|(t, w)| t == w || (t.starts_with('{') && t.ends_with('}')))
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub struct AllowHeader(pub AllowedMethods);

impl<E: Endpoint> Middleware<E> for AllowHeader {
    type Output = AllowHeaderEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        AllowHeaderEndpoint {
            inner: ep,
            allowed: self.0.clone(),
        }
    }
}

pub struct AllowHeaderEndpoint<E> {
    inner: E,
    allowed: AllowedMethods,
}

impl<E: Endpoint> Endpoint for AllowHeaderEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let path = req.uri().path().to_owned();
        let is_options = req.method() == Method::OPTIONS;
        let mut response = match self.inner.call(req).await {
            Ok(response) => response.into_response(),
            Err(err) => err.into_response(),
        };
        if (response.status() == StatusCode::METHOD_NOT_ALLOWED || is_options)
            && let Some(methods) = self.allowed.for_path(&path)
            && let Ok(value) = HeaderValue::from_str(methods)
        {
            response.headers_mut().insert("allow", value);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match() {
        let spec = r#"{"paths": {"/keys/{user_id}": {"get": {}}, "/keys/publish": {"post": {}}, "/messages": {"post": {}}}}"#;
        let allowed = AllowedMethods::from_spec(spec);
        assert_eq!(allowed.for_path("/keys/12"), Some("GET, HEAD"));
        assert_eq!(allowed.for_path("/api/v1/messages/"), Some("POST"));
        assert_eq!(allowed.for_path("/nope"), None);
    }
}
