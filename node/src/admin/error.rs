//! The admin API's error type and its JSON rendering.
//!
//! Clients get a status, a stable code and a message written for them; the
//! full story ([`ApiError`]'s `Display`, which may name this node's network,
//! its trusted issuers or an internal failure) only goes to the node's log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tessella_attestation::TicketError;

use super::types::{CollateralRejected, ErrorBody, ErrorDetail};

/// `WWW-Authenticate` for a request without usable credentials (RFC 6750 §3).
const CHALLENGE: &str = r#"Bearer realm="tessella-admin""#;
/// `WWW-Authenticate` for a token that was refused.
const CHALLENGE_INVALID: &str = r#"Bearer realm="tessella-admin", error="invalid_token""#;
/// `WWW-Authenticate` for a valid token without the admin permission.
const CHALLENGE_SCOPE: &str = r#"Bearer realm="tessella-admin", error="insufficient_scope""#;

/// Why an admin API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No usable `Authorization: Bearer` header. 401 `unauthenticated`.
    #[error("no usable credentials: {reason}")]
    Unauthenticated {
        /// What is wrong with the header (never the header's value).
        reason: &'static str,
    },
    /// The bearer token is not a valid ticket for this network. 401, with
    /// the [`TicketError::code`].
    #[error("ticket refused: {0}")]
    InvalidTicket(#[from] TicketError),
    /// A valid ticket without the admin permission. 403 `forbidden`.
    #[error("ticket for {sub} does not grant the admin permission")]
    Forbidden {
        /// The ticket's subject (the operator's id).
        sub: String,
    },
    /// The backend refused an uploaded collateral bundle. 400 with its code.
    #[error("collateral refused ({}): {}", .0.code, .0.reason)]
    CollateralRejected(#[from] CollateralRejected),
    /// An uploaded ticket for this node was refused. 400 with the ticket
    /// error's code.
    #[error("ticket for this node refused: {0}")]
    TicketRejected(TicketError),
    /// The request body could not be read. 400 `bad_body`.
    #[error("cannot read the request body: {0}")]
    BadBody(String),
    /// The request body is over the route's limit. 413 `payload_too_large`.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// No such route. 404 `not_found`.
    #[error("no such route")]
    NotFound,
    /// The route exists, not for this method. 405 `method_not_allowed`.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The revocation list is full. 507 `revocations_full`.
    #[error("the revocation list is full")]
    RevocationsFull,
    /// No group of that name runs on this node. 404 `no_such_group`.
    #[error("no group {0} on this node")]
    NoSuchGroup(String),
    /// A group membership change was refused (this node does not lead the
    /// group, or another change is in progress). 409 `membership_refused`.
    #[error("membership change refused: {0}")]
    MembershipRefused(String),
    /// The body is not JSON. 400 `bad_json`.
    #[error("the body is not JSON: {0}")]
    BadJson(String),
    /// A key or value over its limit. 413 `too_large`.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// What: "the key" or "the value".
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// No collection of that name is served here. 404 `no_such_collection`.
    #[error("no collection {0} on this node")]
    NoSuchCollection(String),
    /// The key is absent. 404 `no_such_key`.
    #[error("no such key")]
    NoSuchKey,
    /// A conditional write's condition failed. 412 `precondition_failed`.
    #[error("precondition failed: the entry's version is {0:?}")]
    PreconditionFailed(Option<u64>),
    /// A bad query parameter or header. 400 `bad_request`.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No quorum (no leader answered in time); nothing was applied. 503
    /// `no_quorum` with `Retry-After`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The write reached a leader that was lost before answering: it may or
    /// may not have applied. 504 `outcome_unknown`.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The ticket grants neither admin nor the needed permission on the
    /// resource. 403 `forbidden`.
    #[error("ticket for {sub} does not grant {need}")]
    NotGranted {
        /// The ticket's subject.
        sub: String,
        /// What was needed, e.g. `read on collection kv`.
        need: String,
    },
    /// Something broke inside the node. 500 `internal`; the detail is only
    /// logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated { .. } | ApiError::InvalidTicket(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::CollateralRejected(_)
            | ApiError::BadBody(_)
            | ApiError::TicketRejected(_)
            | ApiError::BadJson(_)
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } | ApiError::TooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::NotFound
            | ApiError::NoSuchGroup(_)
            | ApiError::NoSuchCollection(_)
            | ApiError::NoSuchKey => StatusCode::NOT_FOUND,
            ApiError::NotGranted { .. } => StatusCode::FORBIDDEN,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OutcomeUnknown(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::MembershipRefused(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RevocationsFull => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code in the body (and the `code` label of the
    /// `tessella_admin_refused_total` counter).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated { .. } => "unauthenticated",
            ApiError::InvalidTicket(err) => err.code(),
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::CollateralRejected(rejected) => rejected.code,
            ApiError::TicketRejected(e) => e.code(),
            ApiError::BadBody(_) => "bad_body",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RevocationsFull => "revocations_full",
            ApiError::NoSuchGroup(_) => "no_such_group",
            ApiError::MembershipRefused(_) => "membership_refused",
            ApiError::BadJson(_) => "bad_json",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::NoSuchCollection(_) => "no_such_collection",
            ApiError::NoSuchKey => "no_such_key",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unavailable(_) => "no_quorum",
            ApiError::OutcomeUnknown(_) => "outcome_unknown",
            ApiError::NotGranted { .. } => "forbidden",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The message the client sees. Ticket refusals get a fixed sentence per
    /// code, so an unauthenticated caller learns why its token failed but not
    /// this node's network name or issuer names (those are in the log line).
    fn client_message(&self) -> String {
        match self {
            ApiError::Unauthenticated { reason } => {
                format!("{reason}; send `Authorization: Bearer <admin ticket>`")
            }
            ApiError::InvalidTicket(err) => ticket_message(err).to_owned(),
            ApiError::Forbidden { .. } => "the ticket does not grant the admin permission; \
                 ask the issuer for a ticket with \"admin\": true"
                .to_owned(),
            ApiError::CollateralRejected(rejected) => rejected.reason.clone(),
            ApiError::TicketRejected(e) => format!("the ticket was refused: {}", e.code()),
            ApiError::BadBody(_) => "the request body could not be read".to_owned(),
            ApiError::PayloadTooLarge { limit } => {
                format!("the request body is larger than the {limit} bytes allowed")
            }
            ApiError::NotFound => "no such route; see the admin API table in the README".to_owned(),
            ApiError::MethodNotAllowed => {
                "method not allowed on this route; see the Allow header".to_owned()
            }
            ApiError::RevocationsFull => {
                "the revocation list is full; restart the node with fresh tickets".to_owned()
            }
            ApiError::NoSuchGroup(_) => "this node runs no group of that name".to_owned(),
            ApiError::MembershipRefused(_) => "the membership change was refused: send it to \
                 the group's leader (see GET /v1/groups/{name}) once no other change is in \
                 progress; the node's log has the detail"
                .to_owned(),
            ApiError::BadJson(e) => format!("the body is not JSON: {e}"),
            ApiError::TooLarge { what, limit } => format!("{what} is larger than {limit} bytes"),
            ApiError::NoSuchCollection(_) => {
                "this node serves no collection of that name (see GET /v1/collections)".to_owned()
            }
            ApiError::NoSuchKey => "no such key".to_owned(),
            ApiError::PreconditionFailed(v) => match v {
                Some(v) => format!("precondition failed: the entry's version is {v}"),
                None => "precondition failed: the key is absent".to_owned(),
            },
            ApiError::BadRequest(e) => e.clone(),
            ApiError::Unavailable(_) => {
                "no quorum: the collection's group has no leader now; nothing was applied, retry"
                    .to_owned()
            }
            ApiError::OutcomeUnknown(_) => "the leader was lost before answering: the write \
                 may or may not have applied; read it back before retrying"
                .to_owned(),
            ApiError::NotGranted { need, .. } => {
                format!("the ticket grants neither admin nor {need}")
            }
            ApiError::Internal(_) => "internal error; see the node's log".to_owned(),
        }
    }

    fn challenge(&self) -> Option<&'static str> {
        match self {
            ApiError::Unauthenticated { .. } => Some(CHALLENGE),
            ApiError::InvalidTicket(_) => Some(CHALLENGE_INVALID),
            ApiError::Forbidden { .. } | ApiError::NotGranted { .. } => Some(CHALLENGE_SCOPE),
            _ => None,
        }
    }
}

fn ticket_message(err: &TicketError) -> &'static str {
    match err {
        TicketError::Malformed { .. } => "the bearer token is not a well-formed ticket",
        TicketError::TooLarge { .. } => "the bearer token is too large to be a ticket",
        TicketError::UnknownIssuer { .. } => {
            "the ticket is signed by an issuer this node does not trust; \
             get a ticket from a trusted issuer"
        }
        TicketError::IssuerMismatch { .. } => "the ticket's issuer does not match its signing key",
        TicketError::BadSignature => "the ticket's signature does not verify",
        TicketError::Expired { .. } => "the ticket has expired; ask the issuer for a new one",
        TicketError::NotYetValid { .. } => {
            "the ticket is not valid yet; check the clocks of the issuer and the node"
        }
        TicketError::WrongAudience { .. } => "the ticket is for another network",
        TicketError::UnsupportedAlgorithm { .. } | TicketError::AlgorithmMismatch { .. } => {
            "the ticket's signature algorithm is not accepted"
        }
        TicketError::InvalidPermission { .. } | TicketError::InvalidClaim { .. } => {
            "the ticket's claims are invalid"
        }
        _ => "the ticket was refused",
    }
}

/// Put on every error response, for the logging layer to write one line per
/// refused call (see `log_refusals` in the parent module).
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) code: &'static str,
    pub(crate) detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.client_message(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(challenge) = self.challenge() {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let ApiError::Unavailable(_) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(Refusal {
            code: self.code(),
            detail: self.to_string(),
        });
        response
    }
}
