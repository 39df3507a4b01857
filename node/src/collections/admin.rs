//! The key-value routes of the admin API, over the maps declared in the
//! node config (JSON string keys, JSON values).
//!
//! | Route | Success | Errors |
//! |---|---|---|
//! | `GET /v1/collections` | 200 `{"collections":[{name, kind, version, size}]}` | 401 |
//! | `GET /v1/collections/{name}?after=KEY&limit=N&consistency=C` | 200 `{"entries":[{key, value, version}], "version", "next"}` | 404 `no_such_collection` |
//! | `GET /v1/collections/{name}/items/{key}?consistency=C` | 200 `{key, value, version}`, `ETag: "<version>"` | 404 `no_such_key` |
//! | `PUT /v1/collections/{name}/items/{key}` (JSON body) | 200 `{"version"}`; `If-Match: "<v>"` compares and swaps, `If-None-Match: *` creates only | 400 `bad_json`, 412 `precondition_failed`, 413 `too_large` |
//! | `DELETE /v1/collections/{name}/items/{key}` | 200 `{"version"}` | 404 `no_such_key`, 412 |
//!
//! Callers need a ticket with `admin`, or `read` (GET) / `write` (PUT,
//! DELETE) on the collection. Any node that serves the collection answers:
//! writes and linearizable reads go to the group's leader inside the node.
//! No quorum answers 503 with `Retry-After`; a write whose outcome is
//! unknown (leader lost mid-commit) answers 504.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tessella_attestation::{Permission, ResourceKind};

use super::config::KvMap;
use super::error::CollectionError;
use super::map::{Expect, MAX_PAGE};
use super::replica::Collections;
use crate::admin::{AdminAuth, ApiError};
use crate::groups::{Consistency, GroupError};

/// Largest key, bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value (its JSON text), bytes. A command must fit one log entry
/// (`max_batch_bytes`, 64 KiB by default) with its key.
pub const MAX_VALUE_BYTES: usize = 60 << 10;
/// Largest request body.
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Entries per page by default.
pub const DEFAULT_PAGE: usize = 100;

/// One collection in `GET /v1/collections`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Its name.
    pub name: String,
    /// Its kind (`map`).
    pub kind: String,
    /// The version this node has applied.
    pub version: u64,
    /// Entries, as this node holds them.
    pub size: u64,
}

/// `GET /v1/collections`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionsResponse {
    /// The collections this node serves that the caller may read.
    pub collections: Vec<CollectionInfo>,
}

/// One entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// The key.
    pub key: String,
    /// The value.
    pub value: serde_json::Value,
    /// The version that wrote it.
    pub version: u64,
}

/// A page of entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page {
    /// Entries in key order.
    pub entries: Vec<Item>,
    /// The version the page was read at (this node's applied version).
    pub version: u64,
    /// The `after` of the next page; `null` at the end.
    pub next: Option<String>,
}

/// `{"version": n}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    /// The version of the write.
    pub version: u64,
}

/// Query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    after: Option<String>,
    limit: Option<usize>,
    consistency: Option<String>,
}

/// The scoped sub-router (it checks its callers itself).
pub fn router(collections: Arc<Collections>, auth: AdminAuth) -> Router {
    let state = Kv { collections, auth };
    Router::new()
        .route("/v1/collections", get(list))
        .route("/v1/collections/{name}", get(page))
        .route(
            "/v1/collections/{name}/items/{key}",
            get(read).put(write).delete(remove),
        )
        .with_state(state)
}

#[derive(Clone)]
struct Kv {
    collections: Arc<Collections>,
    auth: AdminAuth,
}

impl Kv {
    /// The caller may `need` on collection `name`: admin, or the grant.
    fn check(&self, headers: &HeaderMap, name: &str, need: Permission) -> Result<(), ApiError> {
        let claims = self.auth.authenticate(headers)?;
        let granted = claims.is_admin()
            || claims.may(ResourceKind::Collection, name, need)
            // Writers read what they write.
            || (need == Permission::Read
                && claims.may(ResourceKind::Collection, name, Permission::Write));
        if granted {
            Ok(())
        } else {
            Err(ApiError::NotGranted {
                sub: claims.sub,
                need: format!("{need} on collection {}", clip(name)),
            })
        }
    }

    fn map(&self, name: &str) -> Result<KvMap, ApiError> {
        match self.collections.kv.get(name) {
            Some(Some(map)) => Ok(map),
            Some(None) => Err(ApiError::Unavailable(format!(
                "collection {} is declared but not open yet (does this node's ticket grant write on it?)",
                clip(name)
            ))),
            None => Err(ApiError::NoSuchCollection(clip(name))),
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn consistency(p: &Option<String>) -> Result<Consistency, ApiError> {
    match p.as_deref() {
        None | Some("linearizable") => Ok(Consistency::Linearizable),
        Some("leader") => Ok(Consistency::Leader),
        Some("local") => Ok(Consistency::Local),
        Some(other) => Err(ApiError::BadRequest(format!(
            "consistency {:?}: use linearizable, leader or local",
            clip(other)
        ))),
    }
}

fn params(
    q: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Params, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("bad query parameters: {}", e.body_text())))
}

fn api(e: CollectionError) -> ApiError {
    match e {
        CollectionError::Group(GroupError::NoLeader(d)) => {
            ApiError::Unavailable(format!("no leader within {d:?}"))
        }
        CollectionError::Group(GroupError::Lagging { index, applied }) => {
            ApiError::Unavailable(format!("member lags: applied {applied}, needs {index}"))
        }
        CollectionError::Group(GroupError::Indeterminate(e)) => ApiError::OutcomeUnknown(e),
        CollectionError::Group(GroupError::Stopped) => {
            ApiError::Unavailable("the collection's group stopped".into())
        }
        other => ApiError::Internal(other.to_string()),
    }
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::TooLarge {
            what: "the key",
            limit: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

fn value_of(text: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text)
        .map_err(|e| ApiError::Internal(format!("stored value is not JSON: {e}")))
}

/// `"<n>"` or `W/"<n>"` to n.
fn etag(v: &HeaderValue) -> Result<u64, ApiError> {
    let bad = || ApiError::BadRequest("If-Match must be one version in quotes, \"<n>\"".into());
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}

fn expectation(headers: &HeaderMap) -> Result<Expect, ApiError> {
    let m = headers.get(header::IF_MATCH);
    let n = headers.get(header::IF_NONE_MATCH);
    match (m, n) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "send If-Match or If-None-Match, not both".into(),
        )),
        (Some(v), None) => Ok(Expect::Version(etag(v)?)),
        (None, Some(v)) if v.as_bytes() == b"*" => Ok(Expect::Absent),
        (None, Some(_)) => Err(ApiError::BadRequest("If-None-Match supports only *".into())),
        (None, None) => Ok(Expect::Any),
    }
}

async fn list(
    State(kv): State<Kv>,
    headers: HeaderMap,
) -> Result<Json<CollectionsResponse>, ApiError> {
    let claims = kv.auth.authenticate(&headers)?;
    let mut collections = Vec::new();
    for (name, map) in kv.collections.kv.all() {
        let visible = claims.is_admin()
            || claims.may(ResourceKind::Collection, &name, Permission::Read)
            || claims.may(ResourceKind::Collection, &name, Permission::Write);
        if !visible {
            continue;
        }
        let size = map.len(Consistency::Local).await.map_err(api)?;
        collections.push(CollectionInfo {
            name,
            kind: "map".into(),
            version: map.version(),
            size,
        });
    }
    Ok(Json(CollectionsResponse { collections }))
}

async fn page(
    State(kv): State<Kv>,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    kv.check(&headers, &name, Permission::Read)?;
    let map = kv.map(&name)?;
    let p = params(q)?;
    let c = consistency(&p.consistency)?;
    let limit = p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE.min(1000));
    if let Some(a) = &p.after {
        check_key(a)?;
    }
    let rows = map.page(p.after.as_ref(), limit, c).await.map_err(api)?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|(k, _)| k.clone()))
        .flatten();
    let mut entries = Vec::with_capacity(rows.len());
    for (key, e) in rows {
        entries.push(Item {
            key,
            value: value_of(&e.value)?,
            version: e.version,
        });
    }
    Ok(Json(Page {
        entries,
        version: map.version(),
        next,
    }))
}

async fn read(
    State(kv): State<Kv>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    kv.check(&headers, &name, Permission::Read)?;
    let map = kv.map(&name)?;
    check_key(&key)?;
    let p = params(q)?;
    let c = consistency(&p.consistency)?;
    let entry = map
        .entry(&key, c)
        .await
        .map_err(api)?
        .ok_or(ApiError::NoSuchKey)?;
    let tag = HeaderValue::from_str(&format!("\"{}\"", entry.version))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let item = Item {
        key,
        value: value_of(&entry.value)?,
        version: entry.version,
    };
    let mut response = Json(item).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    Ok(response)
}

async fn write(
    State(kv): State<Kv>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Written>, ApiError> {
    kv.check(&headers, &name, Permission::Write)?;
    let map = kv.map(&name)?;
    check_key(&key)?;
    let expect = expectation(&headers)?;
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            }
        } else {
            ApiError::BadBody(e.body_text())
        }
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let text = value.to_string();
    if text.len() > MAX_VALUE_BYTES {
        return Err(ApiError::TooLarge {
            what: "the value",
            limit: MAX_VALUE_BYTES,
        });
    }
    match map.put_if(&key, Some(&text), expect).await.map_err(api)? {
        Ok(version) => Ok(Json(Written { version })),
        Err(current) => Err(ApiError::PreconditionFailed(current)),
    }
}

async fn remove(
    State(kv): State<Kv>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Written>, ApiError> {
    kv.check(&headers, &name, Permission::Write)?;
    let map = kv.map(&name)?;
    check_key(&key)?;
    let expect = match expectation(&headers)? {
        Expect::Absent => {
            return Err(ApiError::BadRequest(
                "If-None-Match makes no sense on DELETE".into(),
            ))
        }
        other => other,
    };
    let (version, outcome) = map.remove_if(&key, expect).await.map_err(api)?;
    match outcome {
        Ok(true) => Ok(Json(Written { version })),
        Ok(false) => Err(ApiError::NoSuchKey),
        Err(current) => Err(ApiError::PreconditionFailed(current)),
    }
}
