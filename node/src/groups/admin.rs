//! The groups sub-router of the admin API.
//!
//! | Route                              | Success | Errors |
//! |------------------------------------|---------|--------|
//! | `GET /v1/groups`                   | 200 `{"groups":[GroupStatus]}` | 401, 403 |
//! | `GET /v1/groups/{name}`            | 200 `GroupStatus` | 404 `no_such_group` |
//! | `POST /v1/groups/{name}/members`   | 200 `{"log_index":n}`: body `{"action":"add_learner"\|"promote"\|"remove","node":"<node id hex>"}`, sent to the leader | 400 `bad_body`, 404, 409 `membership_refused` |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::error::GroupError;
use super::group::GroupStatus;
use super::subsystem::{Groups, MemberChange};
use crate::admin::{AdminCaller, ApiError};
use crate::id::NodeId;

/// `GET /v1/groups`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupsResponse {
    /// Every group this node runs.
    pub groups: Vec<GroupStatus>,
}

/// `POST /v1/groups/{name}/members` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct MembersRequest {
    /// `add_learner`, `promote` or `remove`.
    pub action: String,
    /// The node, as its hex id.
    pub node: String,
}

/// `POST /v1/groups/{name}/members` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct MembersChanged {
    /// The log index of the membership entry.
    pub log_index: u64,
}

/// The sub-router (merged into the admin API, behind its auth).
pub fn router(groups: Arc<Groups>) -> Router {
    Router::new()
        .route("/v1/groups", get(list))
        .route("/v1/groups/{name}", get(one))
        .route("/v1/groups/{name}/members", post(members))
        .with_state(groups)
}

async fn list(State(groups): State<Arc<Groups>>) -> Json<GroupsResponse> {
    Json(GroupsResponse {
        groups: groups.statuses(),
    })
}

async fn one(
    State(groups): State<Arc<Groups>>,
    Path(name): Path<String>,
) -> Result<Json<GroupStatus>, ApiError> {
    groups
        .status(&name)
        .map(Json)
        .ok_or(ApiError::NoSuchGroup(clip(&name)))
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

async fn members(
    State(groups): State<Arc<Groups>>,
    Extension(AdminCaller(caller)): Extension<AdminCaller>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MembersChanged>, ApiError> {
    let body = body.map_err(|r| ApiError::BadBody(r.body_text()))?;
    let req: MembersRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadBody(format!(
            r#"expected {{"action": "...", "node": "<hex>"}}: {e}"#
        ))
    })?;
    let node: NodeId = req
        .node
        .trim()
        .parse()
        .map_err(|_| ApiError::BadBody("node must be a 64-hex node id".into()))?;
    let change = match req.action.as_str() {
        "add_learner" => MemberChange::AddLearner(node),
        "promote" => MemberChange::Promote(node),
        "remove" => MemberChange::Remove(node),
        _ => {
            return Err(ApiError::BadBody(
                "action must be add_learner, promote or remove".into(),
            ))
        }
    };
    if groups.status(&name).is_none() {
        return Err(ApiError::NoSuchGroup(clip(&name)));
    }
    match groups.change_members(&name, change).await {
        Ok(log_index) => {
            tracing::warn!(operator = %caller.sub, group = %clip(&name), ?change, log_index, "group membership changed through the admin API");
            Ok(Json(MembersChanged { log_index }))
        }
        Err(GroupError::Membership(detail)) => Err(ApiError::MembershipRefused(detail)),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}
