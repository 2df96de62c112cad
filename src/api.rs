//! The management API (SPEC §7): HTTP and JSON over axum, a thin layer over [`Store`].
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}`: the handlers' own, and
//! axum's (unknown route, wrong method, body too large, bad path), which a last layer
//! rewrites into the same shape.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::site::spec::{GroupSpec, TaskSpec};
use crate::store::{ChangeError, Store};

/// Largest request body accepted: a site's worth of groups fits many times over.
const MAX_BODY: usize = 64 * 1024;

/// Shared by every handler.
#[derive(Clone)]
struct Api {
    store: Arc<Store>,
    token: Option<Arc<str>>,
}

/// Errors the API returns.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        (self.status, body).into_response()
    }
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        let message = error.to_string();
        match error {
            ChangeError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            ChangeError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            ChangeError::Invalid(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            }
            ChangeError::Unservable(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unservable", message)
            }
            ChangeError::Write(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "write_failed", message)
            }
        }
    }
}

/// Shortest token accepted for an API reachable beyond loopback: guessing 16 random
/// characters is out of reach; "secret" or "changeme" is not.
pub const MIN_EXPOSED_TOKEN: usize = 16;

/// A token as the operator gave it, on the server or the client: surrounding whitespace
/// (the newline of `$(cat token-file)` or of a mounted secret) is not part of it, and an
/// empty one is a mistake, never "no token".
pub fn parse_token(text: &str) -> Result<String, String> {
    let token = text.trim();
    if token.is_empty() {
        return Err(
            "--api-token is empty: give the token, or unset LBDNS_API_TOKEN if it is set but blank"
                .to_owned(),
        );
    }
    Ok(token.to_owned())
}

/// Refuses a blank token anywhere, and an API reachable beyond loopback without a token or
/// with one shorter than [`MIN_EXPOSED_TOKEN`]. A short token on loopback is accepted: only
/// local users can reach it, and tests and development use one.
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> Result<(), String> {
    let token = token.map(parse_token).transpose()?;
    if addr.ip().is_loopback() {
        return Ok(());
    }
    match token.as_deref() {
        None => Err(format!(
            "refusing to serve the management API on {addr} without a token: set --api-token or LBDNS_API_TOKEN, or bind it to a loopback address"
        )),
        Some(token) if token.chars().count() < MIN_EXPOSED_TOKEN => Err(format!(
            "refusing to serve the management API on {addr} with a {}-character token: a token reachable from the network needs at least {MIN_EXPOSED_TOKEN} characters; make one with `openssl rand -hex 32`",
            token.chars().count()
        )),
        Some(_) => Ok(()),
    }
}

/// The API's routes.
pub fn router(store: Arc<Store>, token: Option<String>) -> Router {
    let api = Api {
        store,
        token: token.filter(|t| !t.is_empty()).map(Arc::from),
    };
    Router::new()
        .route("/v1/sites", get(list_sites))
        .route("/v1/sites/{site}/origin-groups", get(list_groups))
        .route(
            "/v1/sites/{site}/origin-groups/{name}",
            axum::routing::put(put_group).delete(delete_group),
        )
        .route("/v1/sites/{site}/tasks", get(list_tasks).post(create_task))
        .route(
            "/v1/sites/{site}/tasks/{id}",
            get(get_task).put(put_task).delete(delete_task),
        )
        .route("/v1/sites/{site}/tasks/{id}/enable", post(enable_task))
        .route("/v1/sites/{site}/tasks/{id}/disable", post(disable_task))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see SPEC §7 for the API",
            )
        })
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::map_response(errors_as_json))
        .with_state(api)
}

/// Bearer-token check, in constant time.
async fn authorize(State(api): State<Api>, request: Request, next: Next) -> Response {
    if let Some(token) = &api.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            // The scheme is case-insensitive (RFC 9110 §11.1).
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim());
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API needs `Authorization: Bearer <token>` with the server's --api-token",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// Rewrites axum's plain-text errors (405, 413, bad paths) into the API's error shape.
async fn errors_as_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() && !status.is_server_error() || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not take that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is larger than 64 KiB"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send JSON"),
        s if s.is_client_error() => ("bad_request", "the request is malformed"),
        _ => ("internal", "internal error"),
    };
    ApiError::new(status, code, message).into_response()
}

/// Parses a JSON body: 400 when it is not JSON, 422 when it is JSON of the wrong shape.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "too_large",
                "the request body is larger than 64 KiB",
            )
        } else {
            ApiError::new(status, "bad_request", rejection.body_text())
        }
    })?;
    let invalid_json = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    };
    // Syntax first, shape second: a body that is not JSON is 400 wherever it breaks.
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(invalid_json)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = match e.path().to_string().as_str() {
            "" | "." => e.inner().to_string(),
            path => format!("{path}: {}", e.inner()),
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    })
}

/// Runs a store call on a blocking thread: changes fsync under the store's lock, and
/// readers wait for that lock, so neither may hold a runtime worker the DNS side shares.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ChangeError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}

async fn list_sites(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let sites = blocking(move || Ok(api.store.sites())).await?;
    Ok(Json(json!({"sites": sites})))
}

async fn list_groups(
    State(api): State<Api>,
    Path(site): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let groups = blocking(move || api.store.groups(&site)).await?;
    Ok(Json(json!({"origin_groups": groups})))
}

async fn put_group(
    State(api): State<Api>,
    Path((site, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let spec: GroupSpec = parse(body)?;
    let group = blocking(move || api.store.put_group(&site, &name, spec)).await?;
    Ok(Json(group))
}

async fn delete_group(
    State(api): State<Api>,
    Path((site, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    blocking(move || api.store.delete_group(&site, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tasks(
    State(api): State<Api>,
    Path(site): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tasks = blocking(move || api.store.tasks(&site)).await?;
    Ok(Json(json!({"tasks": tasks})))
}

async fn create_task(
    State(api): State<Api>,
    Path(site): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let spec: TaskSpec = parse(body)?;
    let location_site = site.clone();
    let task = blocking(move || api.store.create_task(&site, spec)).await?;
    let location = format!("/v1/sites/{location_site}/tasks/{}", task.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(task),
    ))
}

async fn get_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(blocking(move || api.store.task(&site, &id)).await?))
}

async fn put_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let spec: TaskSpec = parse(body)?;
    let task = blocking(move || api.store.put_task(&site, &id, spec)).await?;
    Ok(Json(task))
}

async fn delete_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    blocking(move || api.store.delete_task(&site, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn enable_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let task = blocking(move || api.store.set_enabled(&site, &id, true)).await?;
    Ok(Json(task))
}

async fn disable_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let task = blocking(move || api.store.set_enabled(&site, &id, false)).await?;
    Ok(Json(task))
}

/// Always 200 while the server runs; `config` says whether the files on disk are served.
async fn healthz(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = api.store.clone();
    let error = blocking(move || Ok(store.reload_error())).await?;
    Ok(Json(json!({
        "status": if error.is_some() { "degraded" } else { "ok" },
        "generation": api.store.generation(),
        "config": match error {
            Some(message) => json!({"valid": false, "error": message}),
            None => json!({"valid": true}),
        },
    })))
}

async fn metrics(State(api): State<Api>) -> Result<impl IntoResponse, ApiError> {
    let store = api.store.clone();
    blocking(move || {
        store.refresh_task_metrics();
        Ok(())
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.store.metrics().encode(),
    ))
}
