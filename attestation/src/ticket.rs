//! Authorization tickets: short JWTs that say what a node may do in a network.
//!
//! Attestation proves *what* a peer runs; a ticket says what that peer is
//! *allowed* to do. An issuer (an operator tool holding a signing key) signs a
//! ticket for one node (`sub`, the node id) in one network (`aud`), listing the
//! streams it may produce to or consume from, the groups it may join or write
//! to, the collections it may write or read, and whether it may use the admin
//! API. Nodes list the issuers they trust ([`TrustedIssuer`], serializable for
//! the node config) and check every ticket with a [`TicketValidator`].
//!
//! ```text
//! header   {"typ":"JWT","alg":"ES256"|"EdDSA","kid":"<16 hex>"}
//! claims   {"iss":"ops","sub":"<64 hex node id>","aud":"<network>",
//!           "exp":..,"nbf":..,"iat":..,["jti":".."],
//!           ["streams":{"name":["produce","consume"]}],
//!           ["groups":{"name":["join","write"]}],
//!           ["collections":{"name":["write","read"]}],
//!           ["admin":true]}
//! token    base64url(header) "." base64url(claims) "." base64url(signature)
//! ```
//!
//! Choices that matter for security:
//! - Only ES256 (P-256) and EdDSA (Ed25519) are accepted, and for a given
//!   `kid` only the algorithm registered with that key: a token cannot pick its
//!   own algorithm (`none`, or HS256 keyed with our public key).
//! - Time is an explicit `now` argument. jsonwebtoken's own `exp`/`nbf` checks
//!   read the system clock, so they are switched off and done here, which also
//!   makes expiry testable with a frozen clock.
//! - Tokens longer than [`MAX_TICKET_LEN`] are refused before any parsing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Largest ticket, in bytes, that [`TicketValidator::validate`] will parse.
///
/// A ticket with a few dozen grants is well under 2 KiB; the bound keeps a
/// hostile peer from making us base64-decode and parse megabytes.
pub const MAX_TICKET_LEN: usize = 8 * 1024;

/// Default tolerance, in seconds, for clock skew between issuer and node when
/// checking `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Longest key id accepted for a [`TrustedIssuer`].
const MAX_KID_LEN: usize = 128;

/// Longest stream, group or collection name accepted in a ticket.
const MAX_RESOURCE_NAME_LEN: usize = 256;

/// How much of an attacker-supplied string (kid, audience, ...) an error keeps:
/// enough to diagnose, not enough to flood logs.
const MAX_ERROR_ECHO: usize = 64;

/// Why a ticket could not be issued or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// The token is not a well-formed JWT with the expected claims.
    #[error("ticket is malformed: {reason}")]
    Malformed {
        /// What could not be parsed.
        reason: String,
    },
    /// The token is longer than [`MAX_TICKET_LEN`].
    #[error("ticket is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Length of the token.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header's `kid` names no trusted issuer.
    #[error("ticket is signed with key id {kid:?}, which no trusted issuer has; add the issuer to the trusted issuers or get a ticket from a trusted one")]
    UnknownIssuer {
        /// The key id from the header (clipped).
        kid: String,
    },
    /// The `iss` claim is not the name registered for the signing key.
    #[error("ticket claims issuer {found:?} but key {kid:?} belongs to issuer {expected:?}")]
    IssuerMismatch {
        /// The key id that signed (or would sign) the ticket.
        kid: String,
        /// The issuer name registered for that key.
        expected: String,
        /// The `iss` claim (clipped).
        found: String,
    },
    /// The signature does not verify under the trusted issuer's key.
    #[error("ticket signature does not verify under the issuer's key")]
    BadSignature,
    /// `now` is at or past `exp` plus the leeway.
    #[error("ticket expired at {exp} (now {now}); ask the issuer for a new ticket")]
    Expired {
        /// The `exp` claim, Unix seconds.
        exp: u64,
        /// The time of validation, Unix seconds.
        now: u64,
    },
    /// `now` plus the leeway is before `nbf`.
    #[error("ticket is not valid before {nbf} (now {now}); check the clocks of issuer and node")]
    NotYetValid {
        /// The `nbf` claim, Unix seconds.
        nbf: u64,
        /// The time of validation, Unix seconds.
        now: u64,
    },
    /// The ticket is for another network.
    #[error("ticket is for network {found:?}, not {expected:?}")]
    WrongAudience {
        /// This node's network.
        expected: String,
        /// The `aud` claim (clipped).
        found: String,
    },
    /// The ticket is bound to another node.
    #[error("ticket is for node {found:?}, not {expected:?}")]
    WrongSubject {
        /// The node id the caller expected.
        expected: String,
        /// The `sub` claim (clipped).
        found: String,
    },
    /// The header names an algorithm other than ES256 or EdDSA.
    #[error("ticket algorithm {alg:?} is not accepted; only ES256 and EdDSA are")]
    UnsupportedAlgorithm {
        /// The `alg` header (clipped).
        alg: String,
    },
    /// The header names an accepted algorithm, but not the one registered for
    /// its `kid`.
    #[error("ticket uses {found} but key {kid:?} is registered for {expected}")]
    AlgorithmMismatch {
        /// The key id from the header.
        kid: String,
        /// The algorithm registered for that key.
        expected: TicketAlgorithm,
        /// The algorithm in the header.
        found: TicketAlgorithm,
    },
    /// A grant that makes no sense for its kind of resource, e.g. `join` on a
    /// stream.
    #[error("{kind} {name:?} cannot carry permission {permission}; a {kind} allows only {allowed}", allowed = PermissionList(.kind.allowed()))]
    InvalidPermission {
        /// The kind of resource.
        kind: ResourceKind,
        /// The resource name (clipped).
        name: String,
        /// The permission that does not apply.
        permission: Permission,
    },
    /// A claim has a value that no valid ticket can have.
    #[error("ticket claim {claim} is invalid: {reason}")]
    InvalidClaim {
        /// The claim's name.
        claim: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Two trusted issuers have the same key id, so a ticket's issuer would
    /// be ambiguous.
    #[error("two trusted issuers share key id {kid:?}; give each key its own kid")]
    DuplicateIssuer {
        /// The shared key id.
        kid: String,
    },
    /// A signing or public key is unusable (wrong format, wrong curve,
    /// private and public halves that do not match).
    #[error("ticket key is unusable: {0}")]
    Key(String),
}

impl TicketError {
    /// A stable snake_case name for the error, for metrics and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            TicketError::Malformed { .. } => "malformed",
            TicketError::TooLarge { .. } => "too_large",
            TicketError::UnknownIssuer { .. } => "unknown_issuer",
            TicketError::IssuerMismatch { .. } => "issuer_mismatch",
            TicketError::BadSignature => "bad_signature",
            TicketError::Expired { .. } => "expired",
            TicketError::NotYetValid { .. } => "not_yet_valid",
            TicketError::WrongAudience { .. } => "wrong_audience",
            TicketError::WrongSubject { .. } => "wrong_subject",
            TicketError::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            TicketError::AlgorithmMismatch { .. } => "algorithm_mismatch",
            TicketError::InvalidPermission { .. } => "invalid_permission",
            TicketError::InvalidClaim { .. } => "invalid_claim",
            TicketError::DuplicateIssuer { .. } => "duplicate_issuer",
            TicketError::Key(_) => "key",
        }
    }

    fn malformed(reason: impl Into<String>) -> Self {
        TicketError::Malformed {
            reason: reason.into(),
        }
    }

    fn invalid_claim(claim: &'static str, reason: impl Into<String>) -> Self {
        TicketError::InvalidClaim {
            claim,
            reason: reason.into(),
        }
    }
}

/// Keep at most [`MAX_ERROR_ECHO`] characters of an untrusted string that goes
/// into an error (and from there into logs).
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_ECHO) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// What a ticket allows on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Append records to a stream.
    Produce,
    /// Read a stream.
    Consume,
    /// Become a member of a replication group.
    Join,
    /// Propose writes to a group, or write to a collection (and replicate
    /// it as a voter).
    Write,
    /// Read a collection (and replicate it as a learner).
    Read,
}

impl Permission {
    fn as_str(self) -> &'static str {
        match self {
            Permission::Produce => "produce",
            Permission::Consume => "consume",
            Permission::Join => "join",
            Permission::Write => "write",
            Permission::Read => "read",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats a permission list as `produce|consume` for error messages.
struct PermissionList(&'static [Permission]);

impl fmt::Display for PermissionList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, permission) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(permission.as_str())?;
        }
        Ok(())
    }
}

/// The kinds of resource a ticket grants access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A stream (claim `streams`): produce and consume.
    Stream,
    /// A replication group (claim `groups`): join and write.
    Group,
    /// A collection (claim `collections`): write and read.
    Collection,
}

impl ResourceKind {
    /// The permissions that mean something for this kind of resource.
    pub fn allowed(self) -> &'static [Permission] {
        match self {
            ResourceKind::Stream => &[Permission::Produce, Permission::Consume],
            ResourceKind::Group => &[Permission::Join, Permission::Write],
            ResourceKind::Collection => &[Permission::Write, Permission::Read],
        }
    }

    /// The name of the claim that holds grants of this kind.
    pub fn claim(self) -> &'static str {
        match self {
            ResourceKind::Stream => "streams",
            ResourceKind::Group => "groups",
            ResourceKind::Collection => "collections",
        }
    }

    const ALL: [ResourceKind; 3] = [
        ResourceKind::Stream,
        ResourceKind::Group,
        ResourceKind::Collection,
    ];
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Stream => "stream",
            ResourceKind::Group => "group",
            ResourceKind::Collection => "collection",
        })
    }
}

/// Grants of one kind: resource name to the permissions on it.
///
/// A set, not a list, so duplicates vanish and the encoding is canonical.
pub type Grants = BTreeMap<String, BTreeSet<Permission>>;

fn is_false(value: &bool) -> bool {
    !*value
}

/// The claims of a ticket.
///
/// Empty grants, `admin: false` and a missing `jti` are left out of the token
/// to keep tickets small. Unknown claims are ignored, so a typo in a grant
/// claim fails closed (the grant is missing), never open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// Issuer name; must be the name registered for the signing key.
    pub iss: String,
    /// Subject: the node id, 64 lowercase hex characters (32 bytes).
    pub sub: String,
    /// Audience: the network the ticket is valid in.
    pub aud: String,
    /// Expiry, Unix seconds; the ticket is refused from this time on.
    pub exp: u64,
    /// Not-before, Unix seconds; the ticket is refused before this time.
    pub nbf: u64,
    /// Issued-at, Unix seconds (informational).
    pub iat: u64,
    /// Ticket id, so a single ticket can be revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Streams: `produce` and/or `consume`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub streams: Grants,
    /// Groups: `join` and/or `write`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: Grants,
    /// Collections: `write` and/or `consume` (read).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub collections: Grants,
    /// Whether the node may use the admin API. Independent of the grants: an
    /// admin ticket does not by itself allow producing to any stream.
    #[serde(default, skip_serializing_if = "is_false")]
    pub admin: bool,
}

impl TicketClaims {
    /// Claims for node `sub` in network `aud`, valid from `iat` (also used as
    /// `nbf`) until `exp`, with no grants.
    pub fn new(
        iss: impl Into<String>,
        sub: impl Into<String>,
        aud: impl Into<String>,
        iat: u64,
        exp: u64,
    ) -> Self {
        TicketClaims {
            iss: iss.into(),
            sub: sub.into(),
            aud: aud.into(),
            exp,
            nbf: iat,
            iat,
            jti: None,
            streams: Grants::new(),
            groups: Grants::new(),
            collections: Grants::new(),
            admin: false,
        }
    }

    /// Adds `permission` on resource `name` of `kind`. Nonsensical grants
    /// (e.g. `join` on a stream) are accepted here and refused by
    /// [`TicketIssuer::issue`] or [`TicketClaims::check`].
    pub fn grant(
        mut self,
        kind: ResourceKind,
        name: impl Into<String>,
        permission: Permission,
    ) -> Self {
        self.grants_mut(kind)
            .entry(name.into())
            .or_default()
            .insert(permission);
        self
    }

    /// Sets the admin flag.
    pub fn with_admin(mut self, admin: bool) -> Self {
        self.admin = admin;
        self
    }

    /// Sets the ticket id.
    pub fn with_jti(mut self, jti: impl Into<String>) -> Self {
        self.jti = Some(jti.into());
        self
    }

    /// The grants of one kind.
    pub fn grants(&self, kind: ResourceKind) -> &Grants {
        match kind {
            ResourceKind::Stream => &self.streams,
            ResourceKind::Group => &self.groups,
            ResourceKind::Collection => &self.collections,
        }
    }

    fn grants_mut(&mut self, kind: ResourceKind) -> &mut Grants {
        match kind {
            ResourceKind::Stream => &mut self.streams,
            ResourceKind::Group => &mut self.groups,
            ResourceKind::Collection => &mut self.collections,
        }
    }

    /// Whether the ticket grants `permission` on the resource `name` of
    /// `kind`. Names match exactly; there are no wildcards. `admin` does not
    /// imply any grant.
    pub fn may(&self, kind: ResourceKind, name: &str, permission: Permission) -> bool {
        self.grants(kind)
            .get(name)
            .is_some_and(|permissions| permissions.contains(&permission))
    }

    /// Whether the ticket allows the admin API.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Checks what can be checked without keys or clock: `sub` is a node id,
    /// `iss`/`aud` are non-empty, `nbf < exp`, resource names are sane and
    /// every permission fits its kind of resource.
    pub fn check(&self) -> Result<(), TicketError> {
        if self.iss.is_empty() {
            return Err(TicketError::invalid_claim("iss", "is empty"));
        }
        if self.aud.is_empty() {
            return Err(TicketError::invalid_claim("aud", "is empty"));
        }
        // Node ids are compared as strings, so only the canonical (lowercase)
        // hex spelling is allowed: otherwise an uppercase `sub` would never
        // match and look like a ticket for another node.
        let canonical_node_id = self.sub.len() == 64
            && self
                .sub
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !canonical_node_id {
            return Err(TicketError::invalid_claim(
                "sub",
                format!(
                    "{:?} is not a node id (64 lowercase hex characters)",
                    clip(&self.sub)
                ),
            ));
        }
        if self.nbf >= self.exp {
            return Err(TicketError::invalid_claim(
                "exp",
                format!("{} is not after nbf {}", self.exp, self.nbf),
            ));
        }
        for kind in ResourceKind::ALL {
            for (name, permissions) in self.grants(kind) {
                if name.is_empty() || name.len() > MAX_RESOURCE_NAME_LEN {
                    return Err(TicketError::invalid_claim(
                        kind.claim(),
                        format!(
                            "{kind} name must be 1 to {MAX_RESOURCE_NAME_LEN} bytes, got {}",
                            name.len()
                        ),
                    ));
                }
                if let Some(&permission) = permissions.iter().find(|p| !kind.allowed().contains(p))
                {
                    return Err(TicketError::InvalidPermission {
                        kind,
                        name: clip(name),
                        permission,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The signature algorithms tickets may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TicketAlgorithm {
    /// ECDSA over P-256 with SHA-256. Public key: 65-byte uncompressed SEC1
    /// point.
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519. Public key: 32 raw bytes.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl TicketAlgorithm {
    /// The JOSE name (`alg` header value).
    pub fn as_str(self) -> &'static str {
        match self {
            TicketAlgorithm::Es256 => "ES256",
            TicketAlgorithm::EdDsa => "EdDSA",
        }
    }

    fn from_jose(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(TicketAlgorithm::Es256),
            "EdDSA" => Some(TicketAlgorithm::EdDsa),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            TicketAlgorithm::Es256 => Algorithm::ES256,
            TicketAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }

    /// Wraps a public key in the form jsonwebtoken's rust_crypto backend
    /// expects. Despite the name, `from_ec_der` wants the SEC1 point and
    /// `from_ed_der` the raw 32 bytes.
    fn decoding_key(self, public_key: &[u8]) -> DecodingKey {
        match self {
            TicketAlgorithm::Es256 => DecodingKey::from_ec_der(public_key),
            TicketAlgorithm::EdDsa => DecodingKey::from_ed_der(public_key),
        }
    }
}

impl fmt::Display for TicketAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default key id of a public key: the first 8 bytes of its blake3 hash,
/// as 16 hex characters.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&blake3::hash(public_key).as_bytes()[..8])
}

/// Checks that `public_key` is a usable key for `alg`, in its canonical
/// encoding (so the derived kid is the same for everyone).
fn check_public_key(alg: TicketAlgorithm, public_key: &[u8]) -> Result<(), TicketError> {
    let shape_ok = match alg {
        TicketAlgorithm::Es256 => public_key.len() == 65 && public_key[0] == 0x04,
        // jsonwebtoken's EdDSA verifier slices `[..32]` and would panic on a
        // shorter key, so the length must be checked before it sees one.
        TicketAlgorithm::EdDsa => public_key.len() == 32,
    };
    if !shape_ok {
        return Err(TicketError::Key(format!(
            "{alg} public key must be {}, got {} bytes",
            match alg {
                TicketAlgorithm::Es256 => "a 65-byte uncompressed SEC1 point",
                TicketAlgorithm::EdDsa => "32 raw bytes",
            },
            public_key.len()
        )));
    }
    // Let the backend that will verify tickets parse the key now (on-curve
    // check for P-256, point decoding for Ed25519), so a bad config entry
    // fails at load time, not at the first ticket. The empty signature makes
    // the probe return Ok(false) once the key has parsed.
    jsonwebtoken::crypto::verify("", b"", &alg.decoding_key(public_key), alg.jwt())
        .map(|_| ())
        .map_err(|err| TicketError::Key(format!("{alg} public key rejected: {err}")))
}

fn check_kid(kid: &str) -> Result<(), TicketError> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TicketError::Key(format!(
            "kid {:?} must be 1 to {MAX_KID_LEN} printable ASCII characters",
            clip(kid)
        )));
    }
    Ok(())
}

/// A ticket issuer's public half, as listed in a node's config.
///
/// JSON form: `{"name": "ops", "kid": "<16 hex>", "alg": "ES256" | "EdDSA",
/// "public_key": "<hex>"}`. `kid` may be omitted and then defaults to
/// [`key_id`] of the public key; it can be set for issuers that are not a
/// [`TicketIssuer`] and pick their own. Deserializing checks the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TrustedIssuerRepr", into = "TrustedIssuerRepr")]
pub struct TrustedIssuer {
    name: String,
    kid: String,
    alg: TicketAlgorithm,
    public_key: Vec<u8>,
}

impl TrustedIssuer {
    /// An issuer called `name` with the given public key (65-byte SEC1 point
    /// for ES256, 32 bytes for EdDSA); its kid is [`key_id`] of the key.
    pub fn new(
        name: impl Into<String>,
        alg: TicketAlgorithm,
        public_key: impl Into<Vec<u8>>,
    ) -> Result<Self, TicketError> {
        let name = name.into();
        if name.is_empty() {
            return Err(TicketError::invalid_claim("iss", "issuer name is empty"));
        }
        let public_key = public_key.into();
        check_public_key(alg, &public_key)?;
        Ok(TrustedIssuer {
            kid: key_id(&public_key),
            name,
            alg,
            public_key,
        })
    }

    /// Replaces the derived kid by one the issuer chose.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, TicketError> {
        let kid = kid.into();
        check_kid(&kid)?;
        self.kid = kid;
        Ok(self)
    }

    /// The issuer's name (the `iss` its tickets must carry).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id its tickets carry in the header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm accepted for this key.
    pub fn alg(&self) -> TicketAlgorithm {
        self.alg
    }

    /// The public key bytes.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
}

#[derive(Serialize, Deserialize)]
struct TrustedIssuerRepr {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    alg: TicketAlgorithm,
    public_key: String,
}

impl TryFrom<TrustedIssuerRepr> for TrustedIssuer {
    type Error = TicketError;

    fn try_from(repr: TrustedIssuerRepr) -> Result<Self, TicketError> {
        let public_key = hex::decode(repr.public_key.trim())
            .map_err(|err| TicketError::Key(format!("public_key is not hex: {err}")))?;
        let issuer = TrustedIssuer::new(repr.name, repr.alg, public_key)?;
        match repr.kid {
            Some(kid) => issuer.with_kid(kid),
            None => Ok(issuer),
        }
    }
}

impl From<TrustedIssuer> for TrustedIssuerRepr {
    fn from(issuer: TrustedIssuer) -> Self {
        TrustedIssuerRepr {
            name: issuer.name,
            kid: Some(issuer.kid),
            alg: issuer.alg,
            public_key: hex::encode(issuer.public_key),
        }
    }
}

/// Signs tickets. Holds the private key; [`TicketIssuer::public_key`] gives
/// the half that nodes trust.
pub struct TicketIssuer {
    trusted: TrustedIssuer,
    key: EncodingKey,
}

impl fmt::Debug for TicketIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketIssuer")
            .field("name", &self.trusted.name)
            .field("kid", &self.trusted.kid)
            .field("alg", &self.trusted.alg)
            .finish_non_exhaustive()
    }
}

impl TicketIssuer {
    /// A new issuer called `name` with a fresh P-256 key.
    pub fn generate_es256(name: impl Into<String>) -> Result<Self, TicketError> {
        Self::generate(name, TicketAlgorithm::Es256, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// A new issuer called `name` with a fresh Ed25519 key.
    pub fn generate_ed25519(name: impl Into<String>) -> Result<Self, TicketError> {
        Self::generate(name, TicketAlgorithm::EdDsa, &rcgen::PKCS_ED25519)
    }

    fn generate(
        name: impl Into<String>,
        alg: TicketAlgorithm,
        rcgen_alg: &'static rcgen::SignatureAlgorithm,
    ) -> Result<Self, TicketError> {
        let key_pair = rcgen::KeyPair::generate_for(rcgen_alg)
            .map_err(|err| TicketError::Key(format!("cannot generate {alg} key: {err}")))?;
        Self::from_pkcs8_der(name, alg, &key_pair.serialize_der())
    }

    /// An issuer called `name` signing with the PKCS#8 DER private key `der`
    /// (as written by [`TicketIssuer::secret_pkcs8_der`], OpenSSL or rcgen).
    pub fn from_pkcs8_der(
        name: impl Into<String>,
        alg: TicketAlgorithm,
        der: &[u8],
    ) -> Result<Self, TicketError> {
        let (key, public_key) = match alg {
            TicketAlgorithm::Es256 => {
                // p256 is what jsonwebtoken's rust_crypto backend signs with,
                // so it parses exactly the keys that backend accepts.
                use p256::pkcs8::DecodePrivateKey;
                let signing = p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|err| {
                    TicketError::Key(format!("not a P-256 PKCS#8 private key: {err}"))
                })?;
                let point = signing.verifying_key().to_encoded_point(false);
                (EncodingKey::from_ec_der(der), point.as_bytes().to_vec())
            }
            TicketAlgorithm::EdDsa => {
                // Accepts PKCS#8 v1 (OpenSSL) and v2 (ring, rcgen).
                use ring::signature::KeyPair;
                let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|err| {
                        TicketError::Key(format!("not an Ed25519 PKCS#8 private key: {err}"))
                    })?;
                (
                    EncodingKey::from_ed_der(der),
                    pair.public_key().as_ref().to_vec(),
                )
            }
        };
        let issuer = TicketIssuer {
            trusted: TrustedIssuer::new(name, alg, public_key)?,
            key,
        };
        issuer.self_test()?;
        Ok(issuer)
    }

    /// Signs and verifies a probe through jsonwebtoken, so a key that the
    /// backend cannot use, or whose halves disagree, fails now rather than
    /// producing tickets no node accepts.
    fn self_test(&self) -> Result<(), TicketError> {
        const PROBE: &[u8] = b"tessella ticket issuer self-test";
        let alg = self.trusted.alg;
        let signature = jsonwebtoken::crypto::sign(PROBE, &self.key, alg.jwt())
            .map_err(|err| TicketError::Key(format!("{alg} key cannot sign: {err}")))?;
        let decoding = alg.decoding_key(&self.trusted.public_key);
        match jsonwebtoken::crypto::verify(&signature, PROBE, &decoding, alg.jwt()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TicketError::Key(format!(
                "{alg} private and public key do not match"
            ))),
            Err(err) => Err(TicketError::Key(format!(
                "{alg} public key rejected: {err}"
            ))),
        }
    }

    /// The issuer's name.
    pub fn name(&self) -> &str {
        &self.trusted.name
    }

    /// The key id put in every ticket header.
    pub fn kid(&self) -> &str {
        &self.trusted.kid
    }

    /// The public half, to list in node configs.
    pub fn public_key(&self) -> TrustedIssuer {
        self.trusted.clone()
    }

    /// The private key as PKCS#8 DER, to store it. Secret: whoever holds it
    /// can authorize any node.
    pub fn secret_pkcs8_der(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// Claims from this issuer for node `sub` in network `aud`, valid for
    /// `ttl_secs` from `now`, with no grants yet.
    pub fn claims(
        &self,
        sub: impl Into<String>,
        aud: impl Into<String>,
        now: u64,
        ttl_secs: u64,
    ) -> TicketClaims {
        TicketClaims::new(
            self.trusted.name.clone(),
            sub,
            aud,
            now,
            now.saturating_add(ttl_secs),
        )
    }

    /// Signs `claims` into a ticket, after [`TicketClaims::check`] and after
    /// checking that `iss` is this issuer's name.
    pub fn issue(&self, claims: &TicketClaims) -> Result<String, TicketError> {
        claims.check()?;
        if claims.iss != self.trusted.name {
            return Err(TicketError::IssuerMismatch {
                kid: self.trusted.kid.clone(),
                expected: self.trusted.name.clone(),
                found: clip(&claims.iss),
            });
        }
        let mut header = Header::new(self.trusted.alg.jwt());
        header.kid = Some(self.trusted.kid.clone());
        let token = jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|err| TicketError::Key(format!("cannot sign ticket: {err}")))?;
        // Never hand out a ticket that every validator would refuse.
        if token.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLarge {
                len: token.len(),
                max: MAX_TICKET_LEN,
            });
        }
        Ok(token)
    }
}

/// A trusted issuer with its key ready for verification.
#[derive(Debug, Clone)]
struct TrustedKey {
    issuer: TrustedIssuer,
    key: DecodingKey,
}

/// Checks tickets against a set of trusted issuers, for one network.
#[derive(Debug, Clone)]
pub struct TicketValidator {
    issuers: BTreeMap<String, TrustedKey>,
    audience: String,
    leeway_secs: u64,
    verified: Arc<Mutex<Verified>>,
}

/// Most tickets whose signature a validator remembers as verified.
pub const VERIFIED_TICKETS: usize = 4096;

/// Signatures already verified, by the BLAKE3 hash of the whole token.
///
/// The same bytes verify the same way under a validator's keys, which are
/// fixed at construction: so a peer reconnecting, or a ticket seen again in a
/// gossiped record, costs a hash instead of an ECDSA verification. Only the
/// signature step is skipped; every claim check runs again on each use,
/// since those depend on `now` and the expected subject. Failures are not
/// remembered here. Bounded at [`VERIFIED_TICKETS`], oldest first out.
#[derive(Debug, Default)]
struct Verified {
    claims: HashMap<[u8; 32], TicketClaims>,
    order: VecDeque<[u8; 32]>,
}

impl Verified {
    fn get(&self, hash: &[u8; 32]) -> Option<TicketClaims> {
        self.claims.get(hash).cloned()
    }

    fn insert(&mut self, hash: [u8; 32], claims: TicketClaims) {
        if self.claims.contains_key(&hash) {
            return;
        }
        while self.order.len() >= VERIFIED_TICKETS {
            if let Some(old) = self.order.pop_front() {
                self.claims.remove(&old);
            }
        }
        self.order.push_back(hash);
        self.claims.insert(hash, claims);
    }
}

/// The header fields we act on, parsed by us before jsonwebtoken sees the
/// token, so that `alg: none` or `HS256` are named as such rather than
/// reported as a JSON error.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

impl TicketValidator {
    /// A validator for network `audience` trusting `issuers`, with
    /// [`DEFAULT_LEEWAY_SECS`] of leeway.
    pub fn new(
        audience: impl Into<String>,
        issuers: impl IntoIterator<Item = TrustedIssuer>,
    ) -> Result<Self, TicketError> {
        let audience = audience.into();
        if audience.is_empty() {
            return Err(TicketError::invalid_claim(
                "aud",
                "expected audience is empty",
            ));
        }
        let mut map = BTreeMap::new();
        for issuer in issuers {
            let key = issuer.alg.decoding_key(&issuer.public_key);
            let kid = issuer.kid.clone();
            // A kid names one key: with two, which signature to check would
            // depend on iteration order.
            if map
                .insert(kid.clone(), TrustedKey { issuer, key })
                .is_some()
            {
                return Err(TicketError::DuplicateIssuer { kid });
            }
        }
        Ok(TicketValidator {
            issuers: map,
            audience,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            verified: Arc::default(),
        })
    }

    /// Sets the clock-skew tolerance for `exp` and `nbf`. Every second added
    /// is a second an expired ticket is still honoured.
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// The clock-skew tolerance, in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway_secs
    }

    /// The network tickets must be for.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The trusted issuers, by kid.
    pub fn issuers(&self) -> impl Iterator<Item = &TrustedIssuer> {
        self.issuers.values().map(|trusted| &trusted.issuer)
    }

    /// Checks `token` at time `now` (Unix seconds): size, algorithm, trusted
    /// key, signature, issuer, audience, subject (if `expected_sub` is given),
    /// validity window with leeway, and the shape of the grants. Returns the
    /// claims only if everything holds.
    pub fn validate(
        &self,
        token: &str,
        expected_sub: Option<&str>,
        now: u64,
    ) -> Result<TicketClaims, TicketError> {
        if token.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLarge {
                len: token.len(),
                max: MAX_TICKET_LEN,
            });
        }
        let raw = parse_header(token)?;
        if raw.crit.is_some() {
            // RFC 7515 §4.1.11: a recipient must refuse critical extensions it
            // does not understand, and we understand none.
            return Err(TicketError::malformed("header has critical extensions"));
        }
        let found_alg = TicketAlgorithm::from_jose(&raw.alg).ok_or_else(|| {
            TicketError::UnsupportedAlgorithm {
                alg: clip(&raw.alg),
            }
        })?;
        let kid = raw
            .kid
            .ok_or_else(|| TicketError::malformed("header has no kid"))?;
        let trusted = self
            .issuers
            .get(&kid)
            .ok_or_else(|| TicketError::UnknownIssuer { kid: clip(&kid) })?;
        let issuer = &trusted.issuer;
        if found_alg != issuer.alg {
            return Err(TicketError::AlgorithmMismatch {
                kid,
                expected: issuer.alg,
                found: found_alg,
            });
        }

        let hash = *blake3::hash(token.as_bytes()).as_bytes();
        let remembered = self.verified().get(&hash);
        let claims = match remembered {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signature(token, trusted, &raw.alg, &kid)?;
                self.verified().insert(hash, claims.clone());
                claims
            }
        };

        if claims.iss != issuer.name {
            return Err(TicketError::IssuerMismatch {
                kid,
                expected: issuer.name.clone(),
                found: clip(&claims.iss),
            });
        }
        if claims.aud != self.audience {
            return Err(TicketError::WrongAudience {
                expected: self.audience.clone(),
                found: clip(&claims.aud),
            });
        }
        if let Some(expected) = expected_sub {
            if claims.sub != expected {
                return Err(TicketError::WrongSubject {
                    expected: expected.to_owned(),
                    found: clip(&claims.sub),
                });
            }
        }
        // RFC 7519: the token must not be accepted on or after `exp`, nor
        // before `nbf`; the leeway widens both ends for clock skew.
        if now >= claims.exp.saturating_add(self.leeway_secs) {
            return Err(TicketError::Expired {
                exp: claims.exp,
                now,
            });
        }
        if now.saturating_add(self.leeway_secs) < claims.nbf {
            return Err(TicketError::NotYetValid {
                nbf: claims.nbf,
                now,
            });
        }
        // A signed ticket can still carry grants that make no sense, from a
        // buggy or foreign issuer; refuse rather than guess.
        claims.check()?;
        tracing::debug!(
            iss = %claims.iss,
            sub = %claims.sub,
            jti = ?claims.jti,
            exp = claims.exp,
            "ticket accepted"
        );
        Ok(claims)
    }
}

impl TicketValidator {
    fn verified(&self) -> std::sync::MutexGuard<'_, Verified> {
        // A panic while holding the lock leaves a consistent map.
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The signature check: jsonwebtoken verifies with exactly this key and
    /// algorithm. Its claim checks are all off: the time ones read the
    /// system clock, and the others give less precise errors than ours.
    fn verify_signature(
        &self,
        token: &str,
        trusted: &TrustedKey,
        alg: &str,
        kid: &str,
    ) -> Result<TicketClaims, TicketError> {
        let issuer = &trusted.issuer;
        let mut validation = Validation::new(issuer.alg.jwt());
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<TicketClaims>(token, &trusted.key, &validation)
            .map_err(|err| map_decode_error(err.into_kind(), alg))?;
        // Our header parse and jsonwebtoken's read the same signed bytes; if
        // they ever disagree, trust neither.
        if data.header.alg != issuer.alg.jwt() || data.header.kid.as_deref() != Some(kid) {
            return Err(TicketError::malformed("header is ambiguous"));
        }
        Ok(data.claims)
    }
}

/// Splits off and parses the header of a compact JWS.
fn parse_header(token: &str) -> Result<RawHeader, TicketError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_claims), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TicketError::malformed(
            "not three dot-separated parts (header.claims.signature)",
        ));
    };
    let bytes = base64url_decode(header)
        .ok_or_else(|| TicketError::malformed("header is not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|err| TicketError::malformed(format!("header is not a JWT header: {err}")))
}

/// Maps what jsonwebtoken reports while verifying to our errors. `alg` is the
/// header's algorithm, already checked to be one we accept.
fn map_decode_error(kind: ErrorKind, alg: &str) -> TicketError {
    match kind {
        ErrorKind::InvalidSignature => TicketError::BadSignature,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => TicketError::Key(format!("trusted issuer key: {kind:?}")),
        // The header was checked before; these mean jsonwebtoken read it
        // differently, which we treat as an algorithm we do not accept.
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => TicketError::UnsupportedAlgorithm { alg: clip(alg) },
        ErrorKind::InvalidToken => TicketError::malformed("not a compact JWS"),
        ErrorKind::Base64(err) => TicketError::malformed(format!("bad base64url: {err}")),
        ErrorKind::Utf8(err) => TicketError::malformed(format!("bad utf-8: {err}")),
        // A JSON error after a good signature is a claim that is missing or
        // has the wrong type (e.g. `aud` as a list).
        ErrorKind::Json(err) => TicketError::malformed(format!("claims: {err}")),
        ErrorKind::MissingRequiredClaim(claim) => {
            TicketError::malformed(format!("missing claim {claim}"))
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            TicketError::malformed(format!("claim {claim} has the wrong type"))
        }
        // The time, audience, issuer and subject checks of jsonwebtoken are
        // switched off, and signing does not happen here; should a future
        // version report them anyway, refuse with what it said.
        other => TicketError::malformed(format!("refused by jsonwebtoken: {other:?}")),
    }
}

/// Decodes unpadded base64url (RFC 4648 §5), refusing padding, other
/// alphabets and non-zero trailing bits, as JWS requires.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000;
    const NET: &str = "net-a";
    const ISSUER: &str = "ops";

    fn node(n: u8) -> String {
        hex::encode([n; 32])
    }

    fn es256() -> TicketIssuer {
        TicketIssuer::generate_es256(ISSUER).expect("es256 issuer")
    }

    fn ed25519() -> TicketIssuer {
        TicketIssuer::generate_ed25519(ISSUER).expect("ed25519 issuer")
    }

    fn validator(issuer: &TicketIssuer) -> TicketValidator {
        TicketValidator::new(NET, [issuer.public_key()]).expect("validator")
    }

    /// One hour ticket for node 1 in NET, with a few grants.
    fn claims(issuer: &TicketIssuer) -> TicketClaims {
        issuer
            .claims(node(1), NET, NOW, 3600)
            .grant(ResourceKind::Stream, "metrics", Permission::Produce)
            .grant(ResourceKind::Stream, "metrics", Permission::Consume)
            .grant(ResourceKind::Group, "g1", Permission::Join)
            .grant(ResourceKind::Collection, "users", Permission::Read)
            .with_jti("t-1")
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn craft(header: &serde_json::Value, claims: &TicketClaims, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(&serde_json::to_vec(claims).expect("claims json")),
            b64(signature)
        )
    }

    #[test]
    fn ticket_es256_round_trip() {
        let issuer = es256();
        let claims = claims(&issuer);
        let token = issuer.issue(&claims).expect("issue");
        let got = validator(&issuer)
            .validate(&token, Some(&node(1)), NOW + 10)
            .expect("valid");
        assert_eq!(got, claims);
        assert_eq!(issuer.kid().len(), 16);
        assert_eq!(issuer.public_key().public_key().len(), 65);
    }

    #[test]
    fn ticket_eddsa_round_trip() {
        let issuer = ed25519();
        let claims = claims(&issuer);
        let token = issuer.issue(&claims).expect("issue");
        let got = validator(&issuer)
            .validate(&token, None, NOW)
            .expect("valid");
        assert_eq!(got, claims);
        assert_eq!(issuer.public_key().public_key().len(), 32);
    }

    #[test]
    fn ticket_small_encoding_omits_empty_claims() {
        let issuer = ed25519();
        let bare = issuer.claims(node(1), NET, NOW, 60);
        let json = serde_json::to_value(&bare).expect("json");
        let keys: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 6, "only iss sub aud exp nbf iat: {keys:?}");
        let token = issuer.issue(&bare).expect("issue");
        let got = validator(&issuer)
            .validate(&token, None, NOW)
            .expect("valid");
        assert!(!got.is_admin());
        assert!(got.streams.is_empty() && got.jti.is_none());
    }

    #[test]
    fn ticket_from_pkcs8_der_keeps_identity() {
        let issuer = es256();
        let again =
            TicketIssuer::from_pkcs8_der("ops", TicketAlgorithm::Es256, issuer.secret_pkcs8_der())
                .expect("reload");
        assert_eq!(again.public_key(), issuer.public_key());
        let token = again.issue(&claims(&again)).expect("issue");
        assert!(validator(&issuer).validate(&token, None, NOW).is_ok());

        // An Ed25519 key offered as ES256 is refused up front.
        let ed = ed25519();
        let err =
            TicketIssuer::from_pkcs8_der("ops", TicketAlgorithm::Es256, ed.secret_pkcs8_der())
                .expect_err("wrong algorithm");
        assert!(matches!(err, TicketError::Key(_)), "{err:?}");
        let err =
            TicketIssuer::from_pkcs8_der("ops", TicketAlgorithm::EdDsa, b"junk").expect_err("junk");
        assert!(matches!(err, TicketError::Key(_)), "{err:?}");
    }

    #[test]
    fn ticket_expiry_and_not_before_with_leeway() {
        let issuer = es256();
        let claims = claims(&issuer);
        let token = issuer.issue(&claims).expect("issue");
        let v = validator(&issuer);
        let exp = claims.exp;

        // Within leeway on both sides: accepted.
        assert!(v
            .validate(&token, None, exp + DEFAULT_LEEWAY_SECS - 1)
            .is_ok());
        assert!(v.validate(&token, None, NOW - DEFAULT_LEEWAY_SECS).is_ok());

        // Beyond leeway: refused with the times.
        let err = v
            .validate(&token, None, exp + DEFAULT_LEEWAY_SECS)
            .expect_err("expired");
        assert_eq!(
            err,
            TicketError::Expired {
                exp,
                now: exp + DEFAULT_LEEWAY_SECS
            }
        );
        assert_eq!(err.code(), "expired");
        let err = v
            .validate(&token, None, NOW - DEFAULT_LEEWAY_SECS - 1)
            .expect_err("early");
        assert!(
            matches!(err, TicketError::NotYetValid { nbf, now } if nbf == NOW && now == NOW - DEFAULT_LEEWAY_SECS - 1),
            "{err:?}"
        );

        // With no leeway the window is exact: [nbf, exp).
        let strict = validator(&issuer).with_leeway(0);
        assert!(strict.validate(&token, None, NOW).is_ok());
        assert!(strict.validate(&token, None, exp - 1).is_ok());
        assert!(matches!(
            strict.validate(&token, None, exp),
            Err(TicketError::Expired { .. })
        ));
        assert!(matches!(
            strict.validate(&token, None, NOW - 1),
            Err(TicketError::NotYetValid { .. })
        ));
    }

    #[test]
    fn ticket_for_another_network_refused() {
        let issuer = es256();
        let token = issuer
            .issue(&issuer.claims(node(1), "net-b", NOW, 60))
            .expect("issue");
        let err = validator(&issuer)
            .validate(&token, None, NOW)
            .expect_err("wrong network");
        assert_eq!(
            err,
            TicketError::WrongAudience {
                expected: NET.into(),
                found: "net-b".into()
            }
        );
    }

    #[test]
    fn ticket_for_another_node_refused() {
        let issuer = ed25519();
        let token = issuer.issue(&claims(&issuer)).expect("issue");
        let err = validator(&issuer)
            .validate(&token, Some(&node(2)), NOW)
            .expect_err("wrong node");
        assert!(
            matches!(&err, TicketError::WrongSubject { expected, found } if *expected == node(2) && *found == node(1)),
            "{err:?}"
        );
        assert_eq!(err.code(), "wrong_subject");
    }

    #[test]
    fn ticket_forged_signature_refused() {
        for issuer in [es256(), ed25519()] {
            let token = issuer.issue(&claims(&issuer)).expect("issue");
            let dot = token.rfind('.').expect("signature part");
            let mut bytes = token.into_bytes();
            // The first signature character carries 6 full bits, so any other
            // letter stays valid base64url and changes the signature.
            bytes[dot + 1] = if bytes[dot + 1] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(bytes).expect("ascii");
            let err = validator(&issuer)
                .validate(&forged, None, NOW)
                .expect_err("forged");
            assert_eq!(
                err,
                TicketError::BadSignature,
                "{}",
                issuer.public_key().alg()
            );
        }
    }

    #[test]
    fn a_remembered_signature_still_gets_every_claim_checked() {
        let issuer = es256();
        let v = validator(&issuer);
        let token = issuer.issue(&claims(&issuer)).expect("issue");
        let first = v.validate(&token, Some(&node(1)), NOW).expect("valid");
        assert_eq!(v.verified().claims.len(), 1);
        // Again, from the cache (a clone shares it): the same claims.
        let again = v
            .clone()
            .validate(&token, Some(&node(1)), NOW + 1)
            .expect("valid");
        assert_eq!(first, again);
        assert_eq!(v.verified().claims.len(), 1);
        // Time, subject and audience are checked on every use.
        assert!(matches!(
            v.validate(&token, Some(&node(1)), NOW + 3600 + DEFAULT_LEEWAY_SECS),
            Err(TicketError::Expired { .. })
        ));
        assert!(matches!(
            v.validate(&token, Some(&node(2)), NOW),
            Err(TicketError::WrongSubject { .. })
        ));
        let other_net = TicketValidator::new("net-b", [issuer.public_key()]).expect("validator");
        assert!(matches!(
            other_net.validate(&token, None, NOW),
            Err(TicketError::WrongAudience { .. })
        ));
        // A token differing in one signature byte is verified, and refused.
        let dot = token.rfind('.').expect("signature part");
        let mut bytes = token.clone().into_bytes();
        bytes[dot + 1] = if bytes[dot + 1] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).expect("ascii");
        assert_eq!(
            v.validate(&forged, None, NOW),
            Err(TicketError::BadSignature)
        );
        assert_eq!(v.verified().claims.len(), 1, "failures are not remembered");
    }

    #[test]
    fn remembered_signatures_are_bounded() {
        let issuer = es256();
        let c = claims(&issuer);
        let mut verified = Verified::default();
        for i in 0..VERIFIED_TICKETS + 10 {
            let hash = *blake3::hash(&i.to_le_bytes()).as_bytes();
            verified.insert(hash, c.clone());
            verified.insert(hash, c.clone());
        }
        assert_eq!(verified.claims.len(), VERIFIED_TICKETS);
        assert_eq!(verified.order.len(), VERIFIED_TICKETS);
        // Oldest out first.
        assert!(verified
            .get(blake3::hash(&0usize.to_le_bytes()).as_bytes())
            .is_none());
        let last = VERIFIED_TICKETS + 9;
        assert!(verified
            .get(blake3::hash(&last.to_le_bytes()).as_bytes())
            .is_some());
    }

    #[test]
    fn ticket_tampered_claims_refused() {
        let issuer = es256();
        let token = issuer.issue(&claims(&issuer)).expect("issue");
        let parts: Vec<&str> = token.split('.').collect();
        let admin = claims(&issuer).with_admin(true);
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_vec(&admin).expect("json")),
            parts[2]
        );
        let err = validator(&issuer)
            .validate(&tampered, None, NOW)
            .expect_err("tampered");
        assert_eq!(err, TicketError::BadSignature);
    }

    #[test]
    fn ticket_from_untrusted_key_with_same_kid_and_iss_refused() {
        let trusted = es256();
        let mut impostor = es256();
        // Same name and kid as the trusted issuer, different private key.
        impostor.trusted.kid = trusted.kid().to_owned();
        let token = impostor.issue(&claims(&impostor)).expect("issue");
        let err = validator(&trusted)
            .validate(&token, None, NOW)
            .expect_err("untrusted key");
        assert_eq!(err, TicketError::BadSignature);
    }

    #[test]
    fn ticket_unknown_kid_and_wrong_iss_refused() {
        let trusted = es256();
        let other = es256();
        let token = other.issue(&claims(&other)).expect("issue");
        let err = validator(&trusted)
            .validate(&token, None, NOW)
            .expect_err("unknown kid");
        assert_eq!(
            err,
            TicketError::UnknownIssuer {
                kid: other.kid().to_owned()
            }
        );

        // The key is trusted, but registered under another name.
        let renamed = TrustedIssuer::new(
            "billing",
            TicketAlgorithm::Es256,
            other.public_key().public_key(),
        )
        .expect("issuer");
        let v = TicketValidator::new(NET, [renamed]).expect("validator");
        let err = v.validate(&token, None, NOW).expect_err("iss");
        assert!(
            matches!(&err, TicketError::IssuerMismatch { expected, found, .. } if expected == "billing" && found == ISSUER),
            "{err:?}"
        );

        // And an issuer refuses to sign claims naming someone else.
        let mut foreign = claims(&other);
        foreign.iss = "root".into();
        let err = other.issue(&foreign).expect_err("iss at issue");
        assert!(
            matches!(&err, TicketError::IssuerMismatch { expected, found, .. } if expected == ISSUER && found == "root"),
            "{err:?}"
        );
    }

    #[test]
    fn ticket_alg_confusion_refused() {
        let issuer = es256();
        let trusted = issuer.public_key();
        let claims = claims(&issuer);

        // Classic confusion: HS256 keyed with the issuer's public key.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(trusted.kid().to_owned());
        let hs256 = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(trusted.public_key()),
        )
        .expect("hs256 token");
        let err = validator(&issuer)
            .validate(&hs256, None, NOW)
            .expect_err("hs256");
        assert_eq!(
            err,
            TicketError::UnsupportedAlgorithm {
                alg: "HS256".into()
            }
        );

        // Unsigned token, with and without an empty signature part.
        let none = serde_json::json!({"alg": "none", "typ": "JWT", "kid": trusted.kid()});
        let unsigned = craft(&none, &claims, b"");
        let err = validator(&issuer)
            .validate(&unsigned, None, NOW)
            .expect_err("none");
        assert_eq!(
            err,
            TicketError::UnsupportedAlgorithm { alg: "none".into() }
        );
        let two_parts = unsigned.trim_end_matches('.');
        assert!(matches!(
            validator(&issuer).validate(two_parts, None, NOW),
            Err(TicketError::Malformed { .. })
        ));

        // An accepted algorithm, but not the one registered for this kid.
        let eddsa = serde_json::json!({"alg": "EdDSA", "kid": trusted.kid()});
        let err = validator(&issuer)
            .validate(&craft(&eddsa, &claims, &[0; 64]), None, NOW)
            .expect_err("eddsa on es256 key");
        assert!(
            matches!(
                err,
                TicketError::AlgorithmMismatch {
                    expected: TicketAlgorithm::Es256,
                    found: TicketAlgorithm::EdDsa,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn ticket_garbage_and_oversized_refused() {
        let issuer = ed25519();
        let v = validator(&issuer);
        for garbage in ["", ".", "..", "a.b.c", "not a jwt", "a.b.c.d", "!!!.e30.AA"] {
            let err = v.validate(garbage, None, NOW).expect_err(garbage);
            assert!(
                matches!(err, TicketError::Malformed { .. }),
                "{garbage}: {err:?}"
            );
            assert_eq!(err.code(), "malformed");
        }
        // Valid base64url and JSON, but no alg.
        let no_alg = format!("{}.e30.AA", b64(br#"{"kid":"x"}"#));
        assert!(matches!(
            v.validate(&no_alg, None, NOW),
            Err(TicketError::Malformed { .. })
        ));
        // Critical header extensions are refused.
        let crit = serde_json::json!({"alg": "EdDSA", "kid": issuer.kid(), "crit": ["exp"]});
        assert!(matches!(
            v.validate(&craft(&crit, &claims(&issuer), &[0; 64]), None, NOW),
            Err(TicketError::Malformed { .. })
        ));
        // No kid.
        let no_kid = serde_json::json!({"alg": "EdDSA"});
        let err = v
            .validate(&craft(&no_kid, &claims(&issuer), &[0; 64]), None, NOW)
            .expect_err("no kid");
        assert!(matches!(err, TicketError::Malformed { .. }), "{err:?}");

        let huge = "a".repeat(MAX_TICKET_LEN + 1);
        let err = v.validate(&huge, None, NOW).expect_err("huge");
        assert_eq!(
            err,
            TicketError::TooLarge {
                len: MAX_TICKET_LEN + 1,
                max: MAX_TICKET_LEN
            }
        );
        assert_eq!(err.code(), "too_large");

        // A ticket too large to validate is not issued either.
        let mut big = issuer.claims(node(1), NET, NOW, 60);
        for i in 0..200 {
            big = big.grant(
                ResourceKind::Stream,
                format!("stream-{i:04}-padding"),
                Permission::Produce,
            );
        }
        assert!(matches!(
            issuer.issue(&big),
            Err(TicketError::TooLarge { .. })
        ));
    }

    #[test]
    fn ticket_signed_claims_with_wrong_shape_refused() {
        let issuer = es256();
        let v = validator(&issuer);
        // Correctly signed, but `aud` is a list: refused as malformed, not
        // silently matched.
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(issuer.kid().to_owned());
        let body = serde_json::json!({
            "iss": ISSUER, "sub": node(1), "aud": [NET], "exp": NOW + 60, "nbf": NOW, "iat": NOW
        });
        let token = jsonwebtoken::encode(&header, &body, &issuer.key).expect("sign");
        let err = v.validate(&token, None, NOW).expect_err("aud list");
        assert!(matches!(err, TicketError::Malformed { .. }), "{err:?}");

        // Correctly signed (bypassing issue()), but a stream grant of `join`.
        let body = serde_json::json!({
            "iss": ISSUER, "sub": node(1), "aud": NET, "exp": NOW + 60, "nbf": NOW, "iat": NOW,
            "streams": {"s": ["join"]}
        });
        let token = jsonwebtoken::encode(&header, &body, &issuer.key).expect("sign");
        let err = v.validate(&token, None, NOW).expect_err("join on stream");
        assert!(
            matches!(
                err,
                TicketError::InvalidPermission {
                    kind: ResourceKind::Stream,
                    permission: Permission::Join,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn ticket_permission_queries() {
        let issuer = ed25519();
        let token = issuer
            .issue(&claims(&issuer).with_admin(true))
            .expect("issue");
        let got = validator(&issuer)
            .validate(&token, Some(&node(1)), NOW)
            .expect("valid");
        assert!(got.may(ResourceKind::Stream, "metrics", Permission::Produce));
        assert!(got.may(ResourceKind::Stream, "metrics", Permission::Consume));
        assert!(!got.may(ResourceKind::Stream, "logs", Permission::Consume));
        assert!(got.may(ResourceKind::Group, "g1", Permission::Join));
        assert!(!got.may(ResourceKind::Group, "g1", Permission::Write));
        assert!(got.may(ResourceKind::Collection, "users", Permission::Read));
        assert!(!got.may(ResourceKind::Collection, "users", Permission::Write));
        // Names are per kind: a group called "metrics" is not the stream.
        assert!(!got.may(ResourceKind::Group, "metrics", Permission::Join));
        assert!(got.is_admin());
        // Admin grants no data access by itself.
        assert!(!got.may(ResourceKind::Stream, "other", Permission::Produce));
    }

    #[test]
    fn ticket_invalid_permission_refused_at_issue() {
        let issuer = es256();
        let cases = [
            (ResourceKind::Stream, Permission::Join),
            (ResourceKind::Stream, Permission::Write),
            (ResourceKind::Group, Permission::Produce),
            (ResourceKind::Group, Permission::Consume),
            (ResourceKind::Collection, Permission::Join),
            (ResourceKind::Collection, Permission::Produce),
        ];
        for (kind, permission) in cases {
            let bad = claims(&issuer).grant(kind, "x", permission);
            let err = issuer.issue(&bad).expect_err("invalid permission");
            assert_eq!(
                err,
                TicketError::InvalidPermission {
                    kind,
                    name: "x".into(),
                    permission
                }
            );
            assert_eq!(err.code(), "invalid_permission");
        }
        let msg = TicketError::InvalidPermission {
            kind: ResourceKind::Stream,
            name: "s".into(),
            permission: Permission::Join,
        }
        .to_string();
        assert_eq!(
            msg,
            "stream \"s\" cannot carry permission join; a stream allows only produce|consume"
        );
    }

    #[test]
    fn ticket_invalid_claims_refused_at_issue() {
        let issuer = es256();
        let cases = [
            (issuer.claims("ABCD", NET, NOW, 60), "sub"),
            (
                issuer.claims(node(0xab).to_uppercase(), NET, NOW, 60),
                "sub",
            ),
            (issuer.claims(node(1), "", NOW, 60), "aud"),
            (issuer.claims(node(1), NET, NOW, 0), "exp"),
            (
                issuer.claims(node(1), NET, NOW, 60).grant(
                    ResourceKind::Stream,
                    "",
                    Permission::Produce,
                ),
                "streams",
            ),
        ];
        for (claims, which) in cases {
            let err = issuer.issue(&claims).expect_err(which);
            assert!(
                matches!(err, TicketError::InvalidClaim { claim, .. } if claim == which),
                "{which}: {err:?}"
            );
        }
    }

    #[test]
    fn ticket_trusted_issuer_json() {
        let issuer = es256();
        let trusted = issuer.public_key();
        let json = serde_json::to_string(&trusted).expect("json");
        assert!(json.contains(&hex::encode(trusted.public_key())), "{json}");
        let back: TrustedIssuer = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, trusted);

        // Without kid: derived from the key.
        let no_kid = serde_json::json!({
            "name": "ops", "alg": "EdDSA", "public_key": hex::encode(ed25519().public_key().public_key())
        });
        let parsed: TrustedIssuer = serde_json::from_value(no_kid).expect("parse");
        assert_eq!(parsed.kid(), key_id(parsed.public_key()));

        // A key that is not on the curve, or of the wrong size, is refused.
        let mut off_curve = trusted.public_key().to_vec();
        off_curve[64] ^= 1;
        assert!(matches!(
            TrustedIssuer::new("ops", TicketAlgorithm::Es256, off_curve),
            Err(TicketError::Key(_))
        ));
        assert!(matches!(
            TrustedIssuer::new("ops", TicketAlgorithm::EdDsa, vec![1; 31]),
            Err(TicketError::Key(_))
        ));
        let bad = serde_json::json!({"name": "ops", "alg": "HS256", "public_key": "00"});
        assert!(serde_json::from_value::<TrustedIssuer>(bad).is_err());
    }

    #[test]
    fn ticket_duplicate_kid_refused() {
        let a = es256();
        let b = es256();
        let clash = b.public_key().with_kid(a.kid()).expect("kid");
        let err = TicketValidator::new(NET, [a.public_key(), clash]).expect_err("duplicate");
        assert_eq!(
            err,
            TicketError::DuplicateIssuer {
                kid: a.kid().to_owned()
            }
        );
    }

    #[test]
    fn ticket_several_issuers() {
        let a = es256();
        let b = ed25519();
        let v = TicketValidator::new(NET, [a.public_key(), b.public_key()]).expect("validator");
        for issuer in [&a, &b] {
            let token = issuer.issue(&claims(issuer)).expect("issue");
            assert!(v.validate(&token, None, NOW).is_ok());
        }
    }

    #[test]
    fn ticket_base64url_decoder_is_strict() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\xfe\xfd\x00"] {
            assert_eq!(base64url_decode(&b64(input)).as_deref(), Some(input));
        }
        assert_eq!(base64url_decode("Zg=="), None, "padding");
        assert_eq!(base64url_decode("Z+8"), None, "standard alphabet");
        assert_eq!(base64url_decode("Zh"), None, "non-zero trailing bits");
        assert_eq!(base64url_decode("Zm9vY"), None, "impossible length");
    }

    #[test]
    fn ticket_error_messages_clip_untrusted_input() {
        let issuer = es256();
        let long_kid = "k".repeat(1000);
        let header = serde_json::json!({"alg": "ES256", "kid": long_kid});
        let err = validator(&issuer)
            .validate(&craft(&header, &claims(&issuer), &[0; 64]), None, NOW)
            .expect_err("unknown");
        let TicketError::UnknownIssuer { kid } = &err else {
            panic!("{err:?}");
        };
        assert!(kid.chars().count() <= MAX_ERROR_ECHO + 1);
    }
}
