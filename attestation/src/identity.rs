//! Node and network identifiers that attestation binds.

use std::fmt;
use std::str::FromStr;

/// A node's identity: derived from its TLS public key (SPKI DER), so it is
/// stable for the key and cannot be claimed without it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 32]);

/// The network a node belongs to, derived from the network's name. Bound into
/// every RA-TLS quote so evidence made for one network is refused by another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(pub [u8; 32]);

impl NodeId {
    /// The id of the key whose SubjectPublicKeyInfo is `spki_der`.
    pub fn from_spki(spki_der: &[u8]) -> NodeId {
        NodeId(blake3::derive_key("tessella node id v1", spki_der))
    }
}

impl NetworkId {
    /// The id of the network called `name`.
    pub fn from_name(name: &str) -> NetworkId {
        NetworkId(blake3::derive_key(
            "tessella network id v1",
            name.as_bytes(),
        ))
    }
}

macro_rules! hex_id {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), &hex::encode(self.0)[..16])
            }
        }

        impl FromStr for $t {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s.trim(), &mut out)?;
                Ok($t(out))
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = <String as serde::Deserialize>::deserialize(d)?;
                    text.parse().map_err(serde::de::Error::custom)
                } else {
                    let bytes = <Vec<u8> as serde::Deserialize>::deserialize(d)?;
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map($t)
                        .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"32 bytes"))
                }
            }
        }
    };
}

hex_id!(NodeId);
hex_id!(NetworkId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_domain_separated_and_round_trip() {
        let net = NetworkId::from_name("prod");
        assert_eq!(net, NetworkId::from_name("prod"));
        assert_ne!(net, NetworkId::from_name("prod2"));
        assert_ne!(net.0, NodeId::from_spki(b"prod").0);
        let text = net.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<NetworkId>().expect("hex"), net);
        assert!("xyz".parse::<NodeId>().is_err());
    }
}
