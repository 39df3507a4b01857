//! `measure`: the image's expected registers, written next to it.
//!
//! Runs after the artefacts are in the output directory and before they are
//! hashed, so `measurements.json` (the measurement policy, format owned by
//! `tessella-measurements`) and `measurement-events.json` (every register's
//! events, for debugging a mismatch on hardware) are artefacts like the rest
//! and part of the reproducibility check.

use serde_json::json;
use tessella_measurements::appliance::{files, measure, ApplianceInputs};

use crate::error::BuildError;
use crate::pipeline::{BuildContext, Progress, Step};

/// The policy entry id the build writes.
pub const POLICY_ENTRY_ID: &str = "tessella-appliance";

/// `measure`: compute MRTD, RTMR0's computable part, RTMR1-3 for the image's RAM.
#[derive(Debug)]
pub struct MeasureStep;

impl Step for MeasureStep {
    fn name(&self) -> &'static str {
        "measure"
    }

    fn run(&self, ctx: &mut BuildContext, progress: &dyn Progress) -> Result<String, BuildError> {
        let out = &ctx.config.out_dir;
        progress.update("reading the artefacts");
        let memory = u64::from(ctx.config.vm.ram_mib) << 20;
        let inputs = ApplianceInputs::from_dir(out, Some(memory))
            .map_err(|e| BuildError::Measure(e.to_string()))?;
        progress.update("computing MRTD and RTMR0-3");
        let m = measure(&inputs).map_err(|e| BuildError::Measure(e.to_string()))?;
        let policy = m
            .to_policy(POLICY_ENTRY_ID)
            .map_err(|e| BuildError::Measure(e.to_string()))?;
        for (name, text) in [
            (files::POLICY, policy.to_json_pretty()),
            (files::EVENTS, m.events_json() + "\n"),
        ] {
            let path = out.join(name);
            std::fs::write(&path, text)
                .map_err(BuildError::io(format!("writing {}", path.display())))?;
        }
        let variants = |v: &[tessella_measurements::appliance::Variant]| {
            v.iter()
                .map(|v| json!({ "value": v.value, "when": v.when }))
                .collect::<Vec<_>>()
        };
        ctx.measurements = Some(json!({
            "policy": files::POLICY,
            "events": files::EVENTS,
            "memory_mib": ctx.config.vm.ram_mib,
            "mrtd": variants(&m.mrtd),
            "rtmr0": m.rtmr0.value,
            "rtmr1": variants(&m.rtmr1),
            "rtmr2": m.rtmr2.value,
            "rtmr3": m.rtmr3,
            "notes": m.notes,
        }));
        Ok(format!(
            "MRTD {} (single-pass); RTMR2 {}; RTMR0 {}",
            m.mrtd[0].value,
            m.rtmr2.value,
            if m.rtmr0.value.is_some() {
                "pinned"
            } else {
                "not pinned (host events needed)"
            }
        ))
    }
}
