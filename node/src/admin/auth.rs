//! Bearer-ticket authentication for the admin API.
//!
//! An admin call carries `Authorization: Bearer <ticket>`, a JWT from a
//! trusted issuer (see [`tessella_attestation::ticket`]) for this node's
//! network with `"admin": true`. Its `sub` is the operator's id and is not
//! compared with anything: the admin ticket authorizes a person or tool, not a
//! node. The token is never logged or echoed.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use tessella_attestation::clock::Clock;
use tessella_attestation::{TicketClaims, TicketValidator};

use super::error::ApiError;

/// How the admin API checks callers: the network's ticket validator and the
/// clock it checks expiry against.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    validator: Arc<TicketValidator>,
    clock: Arc<dyn Clock>,
    public_metrics: bool,
}

impl AdminAuth {
    /// Checks tickets with `validator` at the time `clock` gives. `/v1/*` and
    /// `/metrics` require an admin ticket.
    pub fn new(validator: Arc<TicketValidator>, clock: Arc<dyn Clock>) -> Self {
        AdminAuth {
            validator,
            clock,
            public_metrics: false,
        }
    }

    /// Serves `/metrics` without authentication, for scrapers that cannot
    /// send a bearer token. The metrics name peers, refusal reasons and
    /// traffic volumes, which help whoever maps the network; only use this
    /// when the admin listener is reachable by trusted hosts alone. Logs a
    /// warning when the router is built.
    pub fn insecure_public_metrics(mut self) -> Self {
        self.public_metrics = true;
        self
    }

    /// Whether `/metrics` is served without authentication.
    pub fn metrics_public(&self) -> bool {
        self.public_metrics
    }

    /// Checks the request's bearer ticket: well-formed header, valid ticket
    /// for this network now, admin permission. Returns the claims.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<TicketClaims, ApiError> {
        let claims = self.authenticate(headers)?;
        if !claims.is_admin() {
            return Err(ApiError::Forbidden { sub: claims.sub });
        }
        Ok(claims)
    }
}

impl AdminAuth {
    /// Checks the request's bearer ticket (well-formed header, valid ticket
    /// for this network now) without asking for the admin permission:
    /// routes with their own grants (collections) check those.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<TicketClaims, ApiError> {
        let token = bearer_token(headers)?;
        Ok(self
            .validator
            .validate(token, None, self.clock.now_unix())?)
    }
}

/// The caller of an admin route, put in the request's extensions by the
/// authentication layer for handlers that want to log who did what.
#[derive(Debug, Clone)]
pub struct AdminCaller(pub TicketClaims);

/// The token from the one `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let unauthenticated = |reason| ApiError::Unauthenticated { reason };
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or_else(|| unauthenticated("missing Authorization header"))?;
    if values.next().is_some() {
        return Err(unauthenticated("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("Authorization header is not visible ASCII"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| unauthenticated("Authorization header is not `Bearer <token>`"))?;
    // Auth schemes are case-insensitive (RFC 9110 §11.1).
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthenticated("Authorization scheme is not Bearer"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(unauthenticated("empty bearer token"));
    }
    Ok(token)
}

/// Middleware: refuse the request unless it carries an admin ticket.
pub(crate) async fn require_admin(
    State(auth): State<AdminAuth>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let claims = auth.authorize(request.headers())?;
    request.extensions_mut().insert(AdminCaller(claims));
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(value).expect("header value"),
            );
        }
        map
    }

    fn reason(result: Result<&str, ApiError>) -> &'static str {
        match result {
            Err(ApiError::Unauthenticated { reason }) => reason,
            other => panic!("expected unauthenticated, got {other:?}"),
        }
    }

    #[test]
    fn admin_bearer_header_parsing() {
        assert_eq!(
            bearer_token(&headers(&[b"Bearer abc.def.ghi"])).ok(),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer_token(&headers(&[b"bearer  t "])).ok(), Some("t"));
        assert_eq!(bearer_token(&headers(&[b"BEARER t"])).ok(), Some("t"));
        assert_eq!(
            reason(bearer_token(&headers(&[]))),
            "missing Authorization header"
        );
        assert_eq!(
            reason(bearer_token(&headers(&[b"Bearer a", b"Bearer b"]))),
            "more than one Authorization header"
        );
        assert_eq!(
            reason(bearer_token(&headers(&[b"Basic dXNlcjpwdw=="]))),
            "Authorization scheme is not Bearer"
        );
        assert_eq!(
            reason(bearer_token(&headers(&[b"Bearer"]))),
            "Authorization header is not `Bearer <token>`"
        );
        assert_eq!(
            reason(bearer_token(&headers(&[b"Bearer    "]))),
            "Authorization header is not `Bearer <token>`"
        );
        assert_eq!(
            reason(bearer_token(&headers(&[b"Bearer \xff"]))),
            "Authorization header is not visible ASCII"
        );
    }
}
