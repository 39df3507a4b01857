//! The running node as the admin API sees it: snapshots of its state under
//! short locks, and collateral uploads verified before they are stored.

use tessella_attestation::ratls::ParsedCert;
use tessella_attestation::{Collateral, Quote, VerifyError};

use crate::admin::{
    AdminBackend, AttestationView, CollateralAccepted, CollateralRejected, NodeMode, NodeStatus,
    PeerView, Readiness, ReadinessCheck, ServiceView, VerdictView,
};
use crate::discovery::{Discovery, Service};
use crate::network::Network;

/// Serves a [`Network`] to the admin API.
pub struct NodeAdmin(pub Network);

impl AdminBackend for NodeAdmin {
    fn status(&self) -> NodeStatus {
        let n = &self.0;
        let now = n.now();
        NodeStatus {
            node_id: n.node_id().to_string(),
            network: n.name().to_string(),
            network_id: n.network_id().to_string(),
            mode: if n.mode() == "dev" {
                NodeMode::Dev
            } else {
                NodeMode::Tdx
            },
            uptime_secs: now.saturating_sub(n.started_at()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: n.started_at(),
        }
    }

    fn ready(&self) -> Readiness {
        let n = &self.0;
        let now = n.now();
        let cert = n.certificate();
        let cert_ok = cert.not_before() <= now && now <= cert.not_after();
        let collateral = n.collateral().len();
        Readiness::from_checks(vec![
            ReadinessCheck::new("endpoint", true, format!("listening on {}", n.local_addr())),
            ReadinessCheck::new(
                "certificate",
                cert_ok,
                format!("valid until {}", cert.not_after()),
            ),
            ReadinessCheck::new(
                "collateral",
                collateral > 0,
                format!("{collateral} platform model(s)"),
            ),
            ReadinessCheck::new("running", !n.is_stopping(), "accepting peers"),
            ReadinessCheck::new(
                "ticket",
                n.ticket_expires() > now,
                if n.ticket_expires() == 0 {
                    "none installed: POST /v1/ticket".to_string()
                } else {
                    format!("valid until {}", n.ticket_expires())
                },
            ),
        ])
    }

    fn attestation(&self) -> AttestationView {
        let n = &self.0;
        let cert = n.certificate();
        let quote = ParsedCert::parse(cert.cert_der().as_ref())
            .map(|p| p.quote)
            .unwrap_or_default();
        let measurements = Quote::decode(&quote)
            .map(|q| q.measurements())
            .ok()
            .or_else(|| n.own_measurements())
            .unwrap_or_else(zero_measurements);
        AttestationView {
            node_id: cert.node_id().to_string(),
            quote_hex: hex::encode(&quote),
            cert_pem: cert.cert_pem(),
            measurements,
            cert_not_before: cert.not_before(),
            cert_not_after: cert.not_after(),
            anchor: n.anchor_name(),
        }
    }

    fn upload_collateral(&self, body: &[u8]) -> Result<CollateralAccepted, CollateralRejected> {
        let collateral = Collateral::from_json(body)
            .map_err(|e| CollateralRejected::new("bad_collateral", e.to_string()))?;
        let stored = self
            .0
            .add_collateral(collateral.clone())
            .map_err(|e| match e {
                VerifyError::NoCollateral { fmspc } => CollateralRejected::new(
                    "unverifiable",
                    format!(
                        "no quote of platform {fmspc} is at hand to verify this collateral with"
                    ),
                ),
                e => CollateralRejected::new(e.code(), e.to_string()),
            })?;
        Ok(CollateralAccepted {
            fmspc: collateral.fmspc().to_string(),
            valid_from: collateral.validity().not_before,
            valid_until: collateral.validity().not_after,
            stored,
        })
    }

    fn install_ticket(
        &self,
        token: &str,
    ) -> Result<crate::admin::TicketInstalled, tessella_attestation::TicketError> {
        let expires = self.0.install_ticket(token)?;
        Ok(crate::admin::TicketInstalled {
            node_id: self.0.node_id().to_string(),
            expires,
        })
    }

    fn revoke(&self, id: &str) -> Option<usize> {
        self.0.revoke(id)
    }

    fn metrics_text(&self) -> String {
        crate::metrics::render()
    }
}

fn verdict(id: &tessella_attestation::ratls::PeerIdentity) -> VerdictView {
    VerdictView {
        measurements: id.measurements,
        tcb_status: id.tcb_status.clone(),
        advisory_ids: id.advisory_ids.clone(),
        matched_entry: id.matched_entry.clone(),
        anchor: id.anchor.clone(),
        verdict_expires: id.verdict_expires,
    }
}

/// All-zero registers, for the (unreachable) case of an unreadable own quote.
fn zero_measurements() -> tessella_attestation::measurements::TdMeasurements {
    use tessella_attestation::measurements::{Digest48, TdMeasurements};
    TdMeasurements {
        mrtd: Digest48::ZERO,
        rtmr: [Digest48::ZERO; 4],
        mrconfigid: Digest48::ZERO,
        mrowner: Digest48::ZERO,
        mrownerconfig: Digest48::ZERO,
        td_attributes: [0; 8],
        xfam: [0; 8],
    }
}

/// `GET /v1/peers`: discovery's catalog joined with the transport's
/// sessions (connected peers whose record has not arrived yet included).
pub fn peer_views(network: &Network, discovery: &Discovery) -> Vec<PeerView> {
    let connected = network.connected();
    let mut views: Vec<PeerView> = discovery
        .catalog_peers()
        .into_iter()
        .map(|(record, seen_secs_ago)| {
            let conn = connected
                .iter()
                .find(|c| c.identity.node_id == record.node_id);
            PeerView {
                node_id: record.node_id.to_string(),
                addrs: record.addrs.iter().map(|a| a.to_string()).collect(),
                connected: conn.is_some(),
                verdict: conn.map(|c| verdict(&c.identity)),
                ticket_expires: conn.map(|c| c.ticket_expires),
                tags: record.tags.iter().map(hex::encode).collect(),
                services: record.services.iter().map(service_view).collect(),
                last_seen_secs_ago: seen_secs_ago,
            }
        })
        .collect();
    // Connected peers whose record has not arrived yet.
    for c in &connected {
        let id = c.identity.node_id.to_string();
        if !views.iter().any(|v| v.node_id == id) {
            views.push(PeerView {
                node_id: id,
                addrs: vec![c.addr.to_string()],
                connected: true,
                verdict: Some(verdict(&c.identity)),
                ticket_expires: Some(c.ticket_expires),
                tags: Vec::new(),
                services: Vec::new(),
                last_seen_secs_ago: 0,
            });
        }
    }
    views.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    views
}

/// A record's service as `GET /v1/peers` shows it.
fn service_view(service: &Service) -> ServiceView {
    ServiceView {
        kind: service.kind().to_string(),
        id: hex::encode(service.id_bytes()),
        role: service.role().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{GroupRole, StreamRole};
    use crate::id::{GroupId, StreamId};

    #[test]
    fn services_render_as_kind_hex_id_and_role() {
        let views: Vec<serde_json::Value> = [
            Service::Stream {
                id: StreamId::from_name("orders"),
                role: StreamRole::Producer,
            },
            Service::Group {
                id: GroupId::from_name("ledger"),
                role: GroupRole::Voter,
            },
        ]
        .iter()
        .map(|s| serde_json::to_value(service_view(s)).expect("json"))
        .collect();
        assert_eq!(
            views,
            [
                serde_json::json!({"kind": "stream",
                    "id": StreamId::from_name("orders").to_string(), "role": "producer"}),
                serde_json::json!({"kind": "group",
                    "id": GroupId::from_name("ledger").to_string(), "role": "voter"}),
            ]
        );
    }
}
