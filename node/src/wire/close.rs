//! Numbered application close and reset codes (table in the [`crate::wire`] docs).

use std::fmt;

/// Why a connection was closed or a stream reset / stopped.
///
/// The number is the QUIC application error code; it is stable (see the table
/// in the [`crate::wire`] module docs). Convert with `code.into()` where quinn
/// wants a [`quinn::VarInt`], and back with [`CloseCode::from_u64`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CloseCode {
    /// Orderly close, nothing wrong (a duplicate connection, a finished exchange).
    Normal = 0,
    /// The peer sent something malformed or unexpected: a bad stream header, a
    /// frame that does not decode, a message out of order.
    ProtocolViolation = 1,
    /// The stream header names a protocol family this node does not serve.
    UnknownFamily = 2,
    /// The peer's attestation verdict or ticket was refused by policy.
    AdmissionRefused = 3,
    /// The ticket that admitted the session has expired; present a fresh one.
    TicketExpired = 4,
    /// The peer belongs to another network.
    WrongNetwork = 5,
    /// This node is shutting down; reconnect later or to another node.
    Shutdown = 6,
    /// A frame's length prefix exceeds the receiver's maximum frame size.
    FrameTooLarge = 7,
    /// This node left the network gracefully; drop it from the catalog.
    Departed = 8,
    /// The ticket that admitted the session has been revoked.
    TicketRevoked = 9,
    /// The protocol version in the stream header is not spoken by this node.
    UnsupportedVersion = 10,
    /// A local failure that is not the peer's fault (an I/O error, a bug).
    Internal = 11,
    /// The stream names a resource (group, stream, collection) this node
    /// does not serve.
    UnknownResource = 12,
    /// The peer's ticket does not grant what the stream asks for (e.g.
    /// `join` on a group), or it is not a member of the resource.
    NotPermitted = 13,
}

impl CloseCode {
    /// Every code, in numeric order.
    pub const ALL: [CloseCode; 14] = [
        CloseCode::Normal,
        CloseCode::ProtocolViolation,
        CloseCode::UnknownFamily,
        CloseCode::AdmissionRefused,
        CloseCode::TicketExpired,
        CloseCode::WrongNetwork,
        CloseCode::Shutdown,
        CloseCode::FrameTooLarge,
        CloseCode::Departed,
        CloseCode::TicketRevoked,
        CloseCode::UnsupportedVersion,
        CloseCode::Internal,
        CloseCode::UnknownResource,
        CloseCode::NotPermitted,
    ];

    /// The code's number.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// The code with this number, if it is one of ours.
    pub fn from_u64(code: u64) -> Option<CloseCode> {
        CloseCode::ALL
            .into_iter()
            .find(|c| u64::from(c.as_u32()) == code)
    }

    /// A short ASCII reason, suitable as the close reason bytes.
    pub const fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::ProtocolViolation => "protocol violation",
            CloseCode::UnknownFamily => "unknown stream family",
            CloseCode::AdmissionRefused => "admission refused",
            CloseCode::TicketExpired => "ticket expired",
            CloseCode::WrongNetwork => "wrong network",
            CloseCode::Shutdown => "shutting down",
            CloseCode::FrameTooLarge => "frame too large",
            CloseCode::Departed => "departed",
            CloseCode::TicketRevoked => "ticket revoked",
            CloseCode::UnsupportedVersion => "unsupported protocol version",
            CloseCode::Internal => "internal error",
            CloseCode::UnknownResource => "unknown resource",
            CloseCode::NotPermitted => "not permitted",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.as_u32())
    }
}

impl From<CloseCode> for u32 {
    fn from(code: CloseCode) -> u32 {
        code.as_u32()
    }
}

impl From<CloseCode> for quinn::VarInt {
    fn from(code: CloseCode) -> quinn::VarInt {
        quinn::VarInt::from_u32(code.as_u32())
    }
}

impl TryFrom<quinn::VarInt> for CloseCode {
    type Error = quinn::VarInt;

    /// Our code for a peer's close code; the unknown number back otherwise.
    fn try_from(code: quinn::VarInt) -> Result<CloseCode, quinn::VarInt> {
        CloseCode::from_u64(code.into_inner()).ok_or(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable() {
        // These numbers are on the wire; changing one breaks old peers.
        let expected = [
            (CloseCode::Normal, 0),
            (CloseCode::ProtocolViolation, 1),
            (CloseCode::UnknownFamily, 2),
            (CloseCode::AdmissionRefused, 3),
            (CloseCode::TicketExpired, 4),
            (CloseCode::WrongNetwork, 5),
            (CloseCode::Shutdown, 6),
            (CloseCode::FrameTooLarge, 7),
            (CloseCode::Departed, 8),
            (CloseCode::TicketRevoked, 9),
            (CloseCode::UnsupportedVersion, 10),
            (CloseCode::Internal, 11),
            (CloseCode::UnknownResource, 12),
            (CloseCode::NotPermitted, 13),
        ];
        assert_eq!(expected.len(), CloseCode::ALL.len());
        for (code, n) in expected {
            assert_eq!(code.as_u32(), n);
            assert_eq!(CloseCode::from_u64(u64::from(n)), Some(code));
        }
        for (i, code) in CloseCode::ALL.iter().enumerate() {
            assert_eq!(code.as_u32() as usize, i, "ALL is in numeric order");
        }
        assert_eq!(CloseCode::from_u64(14), None);
        assert_eq!(CloseCode::from_u64(u64::MAX), None);
    }

    #[test]
    fn varint_round_trip_and_reasons() {
        for code in CloseCode::ALL {
            let v: quinn::VarInt = code.into();
            assert_eq!(v.into_inner(), u64::from(code.as_u32()));
            assert_eq!(CloseCode::try_from(v), Ok(code));
            let reason = code.reason();
            assert!(!reason.is_empty() && reason.is_ascii() && reason.len() < 40);
        }
        assert_eq!(
            CloseCode::try_from(quinn::VarInt::from_u32(999)),
            Err(quinn::VarInt::from_u32(999))
        );
        assert_eq!(CloseCode::FrameTooLarge.to_string(), "frame too large (7)");
    }
}
