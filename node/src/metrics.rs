//! Metrics through the `metrics` facade, exported in the Prometheus text
//! format by the admin API.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `tessella_up` | gauge | node |
//! | `tessella_peers` | gauge | node |
//! | `tessella_catalog_size` | gauge | node |
//! | `tessella_handshake_seconds` | histogram | direction (in, out) |
//! | `tessella_admissions_refused_total` | counter | reason |
//! | `tessella_gossip_messages_total` | counter | direction |
//!
//! One recorder serves the process (several nodes in one process, as in the
//! dev cluster and tests, share it and are told apart by the `node` label).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the Prometheus recorder (once per process) and return its handle;
/// `None` if another recorder was installed first.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                None
            }
        })
        .as_ref()
}

/// The current metrics in the Prometheus text exposition format.
pub fn render() -> String {
    prometheus().map(|h| h.render()).unwrap_or_default()
}
