//! The management API (SPEC §7): HTTP and JSON over axum, a thin layer over [`Store`].
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}`: the handlers' own, and
//! axum's (unknown route, wrong method, body too large, bad path), which a last layer
//! rewrites into the same shape.
//!
//! Browsers are not clients (SPEC §7): a web page the operator opens must not be able to
//! drive the API. A request is refused when it carries a foreign `Origin` (or says it is
//! cross-site in `Sec-Fetch-Site`), when, without a token, its `Host` is not a loopback
//! name or the bound address (DNS rebinding), and when it has a body that is not
//! `application/json` (what HTML forms and `text/plain` fetches cannot send without a
//! CORS preflight, which this API never grants).
//!
//! With `--api-token` every request needs it; `--read-token` is a second token that may
//! only read (GET), for monitoring: anything else with it is 403.
//!
//! Reads come from the committed configuration and never wait on writes; writes go to
//! the store's queue and are answered 503 with `Retry-After` when it is full.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::api_types::{
    ErrorBody, ErrorReply, Node, NodeList, Refusal, Secondaries, SiteList, TaskPatch,
};
use crate::site::spec::{GroupSpec, TaskSpec};
use crate::store::{ChangeError, EditError, Store, TaskView};

/// Largest request body accepted: a site's worth of groups fits many times over.
const MAX_BODY: usize = 64 * 1024;
/// Longest request target answered with the API's own 414; hyper answers longer ones
/// (over 64 KiB) itself, with an empty body, before any of this code runs.
const MAX_URI: usize = 8 * 1024;

/// Shared by every handler.
#[derive(Clone)]
struct Api {
    store: Arc<Store>,
    token: Option<Arc<str>>,
    /// `--read-token`: allowed to read (GET), refused (403) anything else.
    read_token: Option<Arc<str>>,
    /// The address the API is bound to, an accepted `Host`.
    bound: SocketAddr,
}

/// Errors the API returns.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    /// For an edit the site refused: why, so that a client can name its own fix.
    reason: Option<Refusal>,
    message: String,
    /// What request would make a refused change possible.
    hint: Option<String>,
    /// Seconds after which a refused request may be sent again (503).
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: None,
            message: message.into(),
            hint: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorReply {
            error: ErrorBody {
                code: self.code.to_owned(),
                reason: self.reason,
                message: self.message,
                hint: self.hint,
            },
        });
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        let message = error.to_string();
        match error {
            ChangeError::Edit { site, error } => Self::refused(&site, error),
            ChangeError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            ChangeError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            ChangeError::Invalid(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            }
            ChangeError::Unservable(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unservable", message)
            }
            ChangeError::Limit(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "limit", message),
            ChangeError::Write(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "write_failed", message)
            }
            ChangeError::Busy(_) => Self {
                retry_after: Some(1),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
            },
            ChangeError::Stopped => Self::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", message),
            ChangeError::Unavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

impl ApiError {
    /// An edit the site refused, with the request that would make it possible.
    fn refused(site: &str, error: EditError) -> Self {
        let (status, code) = match &error {
            EditError::NoTask { .. } | EditError::NoGroup { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            EditError::IdChanged { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            _ => (StatusCode::CONFLICT, "conflict"),
        };
        let hint = match &error {
            EditError::TaskExists { id } => Some(format!(
                "choose another id, or PUT /v1/sites/{site}/tasks/{id} to change that task"
            )),
            EditError::DifferentTaskExists { id } => Some(format!(
                "choose another id, or change that task with PUT or PATCH /v1/sites/{site}/tasks/{id} without If-None-Match"
            )),
            EditError::TaskEnabled { id } => Some(format!(
                "disable it first (POST /v1/sites/{site}/tasks/{id}/disable), then delete it"
            )),
            EditError::GroupInUse { .. } => {
                Some("delete those tasks or point them at another group first".to_owned())
            }
            _ => None,
        };
        Self {
            reason: Some(error.refusal()),
            hint,
            ..Self::new(status, code, format!("site {site}: {error}"))
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

/// Refuses a `--read-token` without an `--api-token` (nothing could change the
/// configuration, and a reader would hold the only token), one equal to it (it would
/// grant writes), and a short one beyond loopback (as [`check_exposure`]).
pub fn check_read_token(
    addr: SocketAddr,
    token: Option<&str>,
    read_token: Option<&str>,
) -> Result<(), String> {
    let Some(read_token) = read_token.map(parse_token).transpose()? else {
        return Ok(());
    };
    match token.map(str::trim) {
        None => Err("--read-token (LBDNS_READ_TOKEN) needs --api-token (LBDNS_API_TOKEN) too: the read token may only read, so the changes need a token of their own".to_owned()),
        Some(token) if token == read_token => Err("--read-token is the same as --api-token: give the readers a token of their own (`openssl rand -hex 32`)".to_owned()),
        Some(_) if !addr.ip().is_loopback() && read_token.chars().count() < MIN_EXPOSED_TOKEN => Err(format!(
            "refusing to serve the management API on {addr} with a {}-character --read-token: a token reachable from the network needs at least {MIN_EXPOSED_TOKEN} characters",
            read_token.chars().count()
        )),
        Some(_) => Ok(()),
    }
}

/// The API's routes, for an API bound to `bound`.
pub fn router(store: Arc<Store>, token: Option<String>, bound: SocketAddr) -> Router {
    router_with_read_token(store, token, None, bound)
}

/// [`router`] with a second token that may only read (`--read-token`, SPEC §7): every
/// `GET`, `/healthz` and `/metrics` included; any other method with it is 403.
pub fn router_with_read_token(
    store: Arc<Store>,
    token: Option<String>,
    read_token: Option<String>,
    bound: SocketAddr,
) -> Router {
    let api = Api {
        store,
        token: token.filter(|t| !t.is_empty()).map(Arc::from),
        read_token: read_token.filter(|t| !t.is_empty()).map(Arc::from),
        bound,
    };
    Router::new()
        .route("/v1/sites", get(list_sites))
        .route("/v1/sites/{site}/origin-groups", get(list_groups))
        .route(
            "/v1/sites/{site}/origin-groups/{name}",
            get(get_group).put(put_group).delete(delete_group),
        )
        .route(
            "/v1/sites/{site}/secondaries",
            get(get_secondaries).put(put_secondaries),
        )
        .route("/v1/sites/{site}/tasks", get(list_tasks).post(create_task))
        .route(
            "/v1/sites/{site}/tasks/{id}",
            get(get_task)
                .put(put_task)
                .patch(patch_task)
                .delete(delete_task),
        )
        .route("/v1/sites/{site}/tasks/{id}/enable", post(enable_task))
        .route("/v1/sites/{site}/tasks/{id}/disable", post(disable_task))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/status", get(status))
        .route("/v1/sites/{site}/answer", get(answer))
        .route("/v1/sites/{site}/explain", get(explain))
        .route("/v1/sites/{site}/preview", post(preview))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; the API has /v1/sites, /v1/sites/{site}/tasks[/{id}[/enable|/disable]], /v1/sites/{site}/origin-groups[/{name}], /v1/sites/{site}/secondaries, /v1/sites/{site}/answer, /v1/sites/{site}/explain, /v1/nodes, /v1/status, /healthz and /metrics, and the console at /",
            )
        })
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        // The console's page and assets hold no data: they load without the token, and
        // the page asks for it (SPEC §15). The browser checks below still apply.
        .merge(crate::console::router())
        .layer(middleware::from_fn_with_state(api.clone(), refuse_browsers))
        .layer(middleware::from_fn(limit_uri))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::map_response(errors_as_json))
        .layer(middleware::from_fn(audit))
        .with_state(api)
}

/// One log line for each request that asks for a change (any method but GET and HEAD):
/// the method and path (which say the site, and the task or group), and the status it
/// got, refusals included. Never a header or the body: they may hold a token.
async fn audit(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let site = path
        .strip_prefix("/v1/sites/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("-")
        .to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if response.status().is_success() {
        tracing::info!(%method, %path, %site, status, "api change applied");
    } else {
        tracing::warn!(%method, %path, %site, status, "api change refused");
    }
    response
}

/// A 414 in the API's error shape for request targets no endpoint could need.
async fn limit_uri(request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {length} bytes; the API takes at most {MAX_URI}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Refuses what only a browser would send: a foreign `Origin`, a rebound `Host`, a body
/// that is not JSON. Runs before the token check, so a page cannot probe the token.
async fn refuse_browsers(State(api): State<Api>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(origin) = text(header::ORIGIN)
        && !origin_is_own(origin, api.bound)
    {
        return forbidden(format!(
            "requests from web pages are refused (Origin: {origin}); use lbdns, curl or another non-browser client"
        ));
    }
    if text(HeaderName::from_static("sec-fetch-site")).is_some_and(|site| site == "cross-site") {
        return forbidden("cross-site requests from web pages are refused".to_owned());
    }
    if api.token.is_none()
        && let Some(host) = text(header::HOST)
        && !host_is_own(host, api.bound)
    {
        return forbidden(format!(
            "Host {host:?} is not this API's address: without --api-token only loopback names and {} are accepted (this stops DNS rebinding); set a token to reach the API by another name",
            api.bound
        ));
    }
    // A body without a type is refused here when its length says it has one, and by
    // `parse` for the endpoints that read a body (a chunked body has no length).
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0");
    match text(header::CONTENT_TYPE) {
        Some(kind) if !is_json(kind) => {
            return unsupported(format!(
                "the body must be JSON with Content-Type: application/json, not {kind:?}"
            ));
        }
        None if has_body => {
            return unsupported(
                "the body must be JSON with Content-Type: application/json (curl: -H 'Content-Type: application/json')".to_owned(),
            );
        }
        _ => {}
    }
    next.run(request).await
}

fn forbidden(message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()
}

fn unsupported(message: String) -> Response {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        message,
    )
    .into_response()
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A `Host` naming this API: a loopback name or address, or the bound address, with
/// the bound port or none.
fn host_is_own(host: &str, bound: SocketAddr) -> bool {
    let (name, port) = split_host_port(host);
    if port.is_some_and(|p| p != bound.port()) {
        return false;
    }
    let name = name.trim_end_matches('.');
    if name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == bound.ip(),
        Err(_) => false,
    }
}

/// An `Origin` of this API itself (`http://HOST[:PORT]` with an own `Host`); `null` and
/// every other origin are foreign.
fn origin_is_own(origin: &str, bound: SocketAddr) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|host| !host.contains('/') && host_is_own(host, bound))
}

/// `name[:port]`, `[v6][:port]` or a bare v6 address.
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (name, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port.parse().unwrap_or(0))),
        _ => (host, None),
    }
}

/// Bearer-token check, in constant time: the API token may do anything, the read token
/// only read (`GET`, and `HEAD` which axum answers as a `GET`).
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
        let admin = bool::from(given.as_bytes().ct_eq(token.as_bytes()));
        let reader = api
            .read_token
            .as_ref()
            .is_some_and(|read| bool::from(given.as_bytes().ct_eq(read.as_bytes())));
        if reader && !admin {
            let method = request.method();
            if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
                return next.run(request).await;
            }
            return forbidden(format!(
                "the read-only token (--read-token) may only read (GET, /healthz, /metrics); {method} needs the --api-token"
            ));
        }
        if !admin {
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
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request's path is too long"),
        s if s.is_client_error() => ("bad_request", "the request is malformed"),
        _ => ("internal", "internal error"),
    };
    ApiError::new(status, code, message).into_response()
}

/// Parses a JSON body: 415 when it is not sent as JSON, 400 when it is not JSON (or
/// repeats a key), 422 when it is JSON of the wrong shape.
fn parse<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    if !headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json)
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON with Content-Type: application/json (curl: -H 'Content-Type: application/json')",
        ));
    }
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
    let invalid_json = |message: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {message}"),
        )
    };
    // Syntax first, shape second: a body that is not JSON is 400 wherever it breaks.
    // A repeated key is refused, not resolved: which of the two was meant is unknowable.
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    let UniqueKeys(value) = serde::de::Deserialize::deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| invalid_json(e.to_string()))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = match e.path().to_string().as_str() {
            "" | "." => e.inner().to_string(),
            path => crate::site::spec::whole_number_message(path)
                .unwrap_or_else(|| format!("{path}: {}", e.inner())),
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    })
}

/// A JSON value read so that no object may repeat a key (serde_json keeps the last).
struct UniqueKeys(serde_json::Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(items.into())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            object.insert(key, value);
        }
        Ok(object.into())
    }
}

/// 404 as an API error.
fn found<T>(result: Result<T, ChangeError>) -> Result<T, ApiError> {
    result.map_err(ApiError::from)
}

/// The fleet as this node sees it; a node serving files alone is a fleet of one.
async fn list_nodes(State(api): State<Api>) -> Json<NodeList> {
    let Some((this, nodes)) = api.store.nodes() else {
        return Json(NodeList::default());
    };
    let nodes = nodes
        .into_iter()
        .map(|(id, presence)| Node {
            id,
            files: presence.files.into_iter().collect(),
            geoip_build_epoch: presence.geoip_build_epoch,
            health_ready: presence.health_ready,
        })
        .collect();
    Json(NodeList {
        node: Some(this),
        nodes,
    })
}

/// The answer a client would get, asked through the query path itself (the console's panel).
async fn answer(
    State(api): State<Api>,
    Path(site): Path<String>,
    axum::extract::Query(question): axum::extract::Query<crate::dig::Question>,
) -> Result<Json<crate::dig::Answers>, ApiError> {
    // The site must exist, so a typo says so instead of answering REFUSED.
    api.store.groups(&site)?;
    crate::dig::ask(&api.store.serving().load(), &question)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))
}

/// Why a client gets its answer (SPEC §12), with the running health checks.
async fn explain(
    State(api): State<Api>,
    Path(site): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.store.groups(&site)?;
    let get = |key: &str| q.get(key).map(String::as_str);
    let invalid = |e: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e);
    let hostname = get("hostname").ok_or_else(|| invalid("hostname is required".into()))?;
    let question =
        crate::explain::Question::parse(hostname, get("type"), get("client"), get("ecs"))
            .map_err(invalid)?;
    crate::explain::explain(
        &api.store.config(),
        api.store.health(),
        Some(&**api.store.serving().load()),
        Some(&site),
        &question,
    )
    .map(Json)
    .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e))
}

/// A proposed change, each part in the shape of its PUT body (SPEC §12 "Preview").
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    #[serde(default)]
    origin_groups: std::collections::BTreeMap<String, GroupSpec>,
    #[serde(default)]
    tasks: Vec<TaskSpec>,
}

/// Shares of address space and of answers per origin, before and after the proposed
/// change, with warnings; nothing is changed.
async fn preview(
    State(api): State<Api>,
    Path(site): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: PreviewBody = parse(&headers, body)?;
    let groups = body.origin_groups.into_iter().collect();
    // Tens of thousands of routed draws per hostname: off the async workers.
    let preview = tokio::task::spawn_blocking(move || api.store.preview(&site, groups, body.tasks))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Json(preview?))
}

/// `lbdns status`: everything an operator checks first (SPEC §14).
async fn status(State(api): State<Api>) -> Json<crate::status::Report> {
    Json(crate::status::Report::of(&api.store))
}

async fn list_sites(State(api): State<Api>) -> Json<SiteList> {
    Json(SiteList {
        sites: api.store.sites(),
    })
}

async fn list_groups(
    State(api): State<Api>,
    Path(site): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let groups = found(api.store.groups(&site))?;
    Ok(Json(json!({"origin_groups": groups})))
}

async fn get_group(
    State(api): State<Api>,
    Path((site, name)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(found(api.store.group(&site, &name))?))
}

async fn put_group(
    State(api): State<Api>,
    Path((site, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let spec: GroupSpec = parse(&headers, body)?;
    Ok(Json(api.store.put_group(&site, &name, spec).await?))
}

async fn delete_group(
    State(api): State<Api>,
    Path((site, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    api.store.delete_group(&site, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_secondaries(
    State(api): State<Api>,
    Path(site): Path<String>,
) -> Result<Json<Secondaries>, ApiError> {
    let secondaries = found(api.store.secondaries(&site))?;
    Ok(Json(Secondaries { secondaries }))
}

async fn put_secondaries(
    State(api): State<Api>,
    Path(site): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Secondaries>, ApiError> {
    let Secondaries { secondaries } = parse(&headers, body)?;
    let secondaries = api.store.put_secondaries(&site, secondaries).await?;
    Ok(Json(Secondaries { secondaries }))
}

async fn list_tasks(
    State(api): State<Api>,
    Path(site): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tasks = found(api.store.tasks(&site))?;
    Ok(Json(json!({"tasks": tasks})))
}

async fn create_task(
    State(api): State<Api>,
    Path(site): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let spec: TaskSpec = parse(&headers, body)?;
    let task = api.store.create_task(&site, spec).await?;
    Ok(created(&site, task))
}

fn created(site: &str, task: TaskView) -> Response {
    let location = format!("/v1/sites/{site}/tasks/{}", task.id);
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(task),
    )
        .into_response()
}

async fn get_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(found(api.store.task(&site, &id))?))
}

/// Creates or replaces the task `id`: 201 when created, 200 when replaced. With
/// `If-None-Match: *` it only creates: the same task sent again is 200 with no change
/// (so a retry is safe), a different one already there is 409.
async fn put_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let create_only = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let spec: TaskSpec = parse(&headers, body)?;
    let (task, was_created) = api.store.put_task(&site, &id, spec, create_only).await?;
    Ok(match was_created {
        true => created(&site, task),
        false => Json(task).into_response(),
    })
}

/// Changes the fields the body names (`TaskPatch`); the others stay.
async fn patch_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let patch: TaskPatch = parse(&headers, body)?;
    Ok(Json(api.store.update_task(&site, &id, patch).await?))
}

async fn delete_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    api.store.delete_task(&site, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn enable_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(api.store.set_enabled(&site, &id, true).await?))
}

async fn disable_task(
    State(api): State<Api>,
    Path((site, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(api.store.set_enabled(&site, &id, false).await?))
}

/// Always 200 while the server runs; `config` says whether the files on disk are served.
async fn healthz(State(api): State<Api>) -> Json<serde_json::Value> {
    let error = api.store.reload_error();
    let geoip = api
        .store
        .geoip()
        .map(|(path, built)| json!({"path": path.display().to_string(), "build_epoch": built}));
    // A fleet node cut off from etcd serves its copy but cannot take changes.
    let etcd = api.store.etcd_link();
    let cut_off = etcd.as_ref().is_some_and(|(_, e)| e.is_some());
    let now = crate::dnssec::lifecycle::now();
    let signing = crate::load::signing_status();
    let warnings: Vec<String> = signing.iter().filter_map(|z| z.warning(now)).collect();
    let dnssec: Vec<serde_json::Value> = signing
        .iter()
        .map(|z| {
            json!({
                "zone": z.zone.to_string(),
                "rrsig_earliest_expiry": crate::dnssec::lifecycle::rfc3339(z.earliest_expiry).to_string(),
                "next_key_event": z.next_key_event.map(|t| crate::dnssec::lifecycle::rfc3339(t).to_string()),
            })
        })
        .collect();
    let degraded = error.is_some() || cut_off || !warnings.is_empty();
    let mut health = json!({
        "status": if degraded { "degraded" } else { "ok" },
        "generation": api.store.generation(),
        "config": match error {
            Some(message) => json!({"valid": false, "error": message}),
            None => json!({"valid": true}),
        },
        "geoip": geoip,
        "secondary_zones": crate::secondary::status(),
        "dnssec": dnssec,
        "warnings": warnings,
    });
    if let Some((endpoints, error)) = etcd {
        health["etcd"] = match error {
            None => json!({"endpoints": endpoints, "connected": true}),
            Some(error) => json!({"endpoints": endpoints, "connected": false, "error": error}),
        };
    }
    Json(health)
}

async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    api.store.refresh_task_metrics();
    api.store
        .metrics()
        .refresh_dnssec(&crate::load::signing_status());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.store.metrics().encode(),
    )
}
