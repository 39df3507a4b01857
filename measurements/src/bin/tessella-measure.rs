//! `tessella-measure`: compute and replay TDX measurements.
//!
//! - `replay LOG` replays a dstack JSON event log (bare or inside
//!   `quote-report.json`) or a binary CCEL / TCG2 event log and prints the four
//!   RTMRs with the events that produced each, so a mismatch against a quote can
//!   be debugged register by register.
//! - `mrtd FW` prints the TDVF sections of an OVMF image and the MRTD it gives
//!   for each page-add order.
//! - `image DIR` computes every register of an appliance directory written by
//!   `tessella-image build` (MRTD, RTMR0's computable part, RTMR1, RTMR2, RTMR3,
//!   MRCONFIGID) with the events behind each, and writes the measurement policy;
//!   with `--ccel` it compares them with a TD's captured event log.
//! - `rtmr0-capture CCEL` turns a firmware event log captured on a real host
//!   into the RTMR0 host-events allow-list input (the events after the separator).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tessella_measurements::appliance::{self, ApplianceInputs, ApplianceMeasurements, Comparison};
use tessella_measurements::{EventLog, LogFormat, MrtdOrder, Rtmr0HostEvents, Tdvf};

/// Compute and replay TDX measurements.
#[derive(Parser)]
#[command(name = "tessella-measure", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay an event log and print RTMR0..3 with their events.
    Replay {
        /// dstack quote-report.json, a dstack event-log JSON array, or a binary CCEL file.
        log: PathBuf,
        /// Input format.
        #[arg(long, value_enum, default_value_t = Format::Auto)]
        format: Format,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the TDVF sections of an OVMF firmware image and its MRTD.
    Mrtd {
        /// The firmware file (e.g. OVMF.fd).
        firmware: PathBuf,
        /// Page-add order of the host (single-pass: current KVM/QEMU; two-pass: old Intel QEMU 8).
        #[arg(long, value_enum, default_value_t = Order::Both)]
        order: Order,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compute the registers of an appliance directory and the policy pinning them.
    Image {
        /// The directory `tessella-image build` wrote.
        dir: PathBuf,
        /// Guest RAM in MiB (default: `vm.ram_mib` from the directory's image.json).
        #[arg(long)]
        memory_mib: Option<u64>,
        /// The deployment config to pin as MRCONFIGID (SHA-384 of its bytes).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Captured host-dependent RTMR0 events (from `rtmr0-capture`); without
        /// them RTMR0 is not pinned.
        #[arg(long)]
        rtmr0_host_events: Option<PathBuf>,
        /// Write the measurement policy (tessella-measurement-policy v1) here.
        #[arg(long)]
        policy_out: Option<PathBuf>,
        /// The policy entry's id.
        #[arg(long, default_value = "tessella-appliance")]
        id: String,
        /// A firmware event log captured in a TD booted from this image
        /// (`/sys/firmware/acpi/tables/data/CCEL`): compare it with the
        /// expected events register by register; exit 1 on a difference.
        #[arg(long)]
        ccel: Option<PathBuf>,
        /// Print the full report (registers, variants, events, notes) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the host-dependent RTMR0 events of a captured CCEL as host-events JSON.
    Rtmr0Capture {
        /// Binary CCEL / TCG2 event log (`/sys/firmware/acpi/tables/data/CCEL`).
        ccel: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Order {
    SinglePass,
    TwoPass,
    Both,
}

impl Order {
    fn orders(self) -> &'static [MrtdOrder] {
        match self {
            Order::SinglePass => &[MrtdOrder::SinglePass],
            Order::TwoPass => &[MrtdOrder::TwoPass],
            Order::Both => &MrtdOrder::ALL,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Auto,
    Dstack,
    Tcg,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Mismatch>() => {
            eprintln!("tessella-measure: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("tessella-measure: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Replay { log, format, json } => {
            let input =
                std::fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
            let format = match format {
                Format::Auto => None,
                Format::Dstack => Some(LogFormat::Dstack),
                Format::Tcg => Some(LogFormat::Tcg),
            };
            let parsed = EventLog::parse(&input, format)
                .with_context(|| format!("parsing {}", log.display()))?;
            let out = if json {
                serde_json::to_string_pretty(&to_json(&parsed))? + "\n"
            } else {
                text(&parsed)
            };
            print(&out)
        }
        Command::Mrtd {
            firmware,
            order,
            json,
        } => {
            let input = std::fs::read(&firmware)
                .with_context(|| format!("reading {}", firmware.display()))?;
            let tdvf =
                Tdvf::parse(&input).with_context(|| format!("parsing {}", firmware.display()))?;
            let out = if json {
                serde_json::to_string_pretty(&mrtd_json(&tdvf, order.orders()))? + "\n"
            } else {
                mrtd_text(&tdvf, order.orders())
            };
            print(&out)
        }
        Command::Image {
            dir,
            memory_mib,
            config,
            rtmr0_host_events,
            policy_out,
            id,
            ccel,
            json,
        } => {
            let memory = memory_mib
                .map(|m| m.checked_mul(1 << 20).context("--memory-mib too large"))
                .transpose()?;
            let mut inputs = ApplianceInputs::from_dir(&dir, memory)?;
            if let Some(path) = config {
                inputs.config = Some(
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                );
            }
            if let Some(path) = rtmr0_host_events {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                inputs.rtmr0_host = Some(
                    Rtmr0HostEvents::from_json(&bytes)
                        .with_context(|| format!("parsing {}", path.display()))?,
                );
            }
            let measured = appliance::measure(&inputs)?;
            let policy = measured.to_policy(&id)?;
            if let Some(path) = policy_out {
                std::fs::write(&path, policy.to_json_pretty())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let comparison = match ccel {
                Some(path) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let log = EventLog::parse(&bytes, None)
                        .with_context(|| format!("parsing {}", path.display()))?;
                    Some(appliance::compare(&measured, &log))
                }
                None => None,
            };
            let out = if json {
                let mut value = serde_json::to_value(&measured)?;
                if let (Some(c), Some(obj)) = (&comparison, value.as_object_mut()) {
                    obj.insert("comparison".into(), serde_json::to_value(c)?);
                }
                serde_json::to_string_pretty(&value)? + "\n"
            } else {
                let mut text = image_text(&measured);
                if let Some(c) = &comparison {
                    text.push_str(&comparison_text(c));
                }
                text
            };
            print(&out)?;
            if comparison.is_some_and(|c| !c.matches) {
                return Err(Mismatch.into());
            }
            Ok(())
        }
        Command::Rtmr0Capture { ccel } => {
            let input =
                std::fs::read(&ccel).with_context(|| format!("reading {}", ccel.display()))?;
            let host = Rtmr0HostEvents::from_ccel(&input)
                .with_context(|| format!("parsing {}", ccel.display()))?;
            print(&host.to_json())
        }
    }
}

/// The captured log disagrees with the expected events (exit 1, not 2).
#[derive(Debug)]
struct Mismatch;

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the captured event log differs from the expected events")
    }
}

impl std::error::Error for Mismatch {}

fn comparison_text(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "comparison with the captured log: {}",
        if c.matches { "MATCHES" } else { "DIFFERS" }
    );
    for r in &c.registers {
        let state = match r.first_difference {
            None => "matches".to_string(),
            Some(i) => format!("first difference at event #{i}"),
        };
        let variant = r
            .variant
            .as_deref()
            .map(|v| format!(" ({v})"))
            .unwrap_or_default();
        let partial = if r.complete {
            ""
        } else {
            " [host events not given: only the computed prefix is compared]"
        };
        let _ = writeln!(out, "{}{variant}: {state}{partial}", r.register);
        for row in &r.rows {
            let show = |e: &Option<tessella_measurements::appliance::EventSummary>| {
                e.as_ref()
                    .map(|e| format!("{:<24} {}", e.name, e.digest))
                    .unwrap_or_else(|| "-".into())
            };
            let mark = if row.same { " " } else { "!" };
            let _ = writeln!(
                out,
                " {mark} #{:<2} expected {}\n       actual   {}",
                row.index,
                show(&row.expected),
                show(&row.actual)
            );
        }
    }
    out
}

fn image_text(m: &ApplianceMeasurements) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "appliance measurements ({} MiB RAM)",
        m.memory_bytes >> 20
    );
    for v in &m.mrtd {
        let _ = writeln!(out, "mrtd        {}  ({})", v.value, v.when);
    }
    match &m.rtmr0.value {
        Some(v) => {
            let _ = writeln!(out, "rtmr0       {v}");
        }
        None => {
            let _ = writeln!(out, "rtmr0       NOT PINNED (host events missing)");
        }
    }
    for e in &m.rtmr0.events {
        let source = match e.source {
            tessella_measurements::EventSource::Computed => "computed",
            tessella_measurements::EventSource::Input => "input",
        };
        let _ = writeln!(
            out,
            "  rtmr0 event {:<28} {}  [{source}]",
            e.event.name, e.event.digest
        );
    }
    for v in &m.rtmr1 {
        let _ = writeln!(out, "rtmr1       {}  ({})", v.value, v.when);
        for e in &v.events {
            let _ = writeln!(out, "  rtmr1 event {:<28} {}", e.name, e.digest);
        }
    }
    let _ = writeln!(out, "rtmr2       {}  ({})", m.rtmr2.value, m.rtmr2.when);
    for e in &m.rtmr2.events {
        let _ = writeln!(out, "  rtmr2 event {:<28} {}", e.name, e.digest);
    }
    let _ = writeln!(out, "rtmr3       {}", m.rtmr3);
    match &m.mrconfigid {
        Some(v) => {
            let _ = writeln!(out, "mrconfigid  {v}");
        }
        None => {
            let _ = writeln!(out, "mrconfigid  not pinned");
        }
    }
    for n in &m.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

fn print(out: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing output"),
    }
}

fn mrtd_json(tdvf: &Tdvf, orders: &[MrtdOrder]) -> serde_json::Value {
    let mut mrtd = serde_json::Map::new();
    for &o in orders {
        mrtd.insert(o.name().to_string(), tdvf.mrtd(o).to_hex().into());
    }
    serde_json::json!({
        "descriptor_offset": tdvf.descriptor_offset(),
        "sections": tdvf.sections().iter().map(|s| serde_json::json!({
            "kind": s.kind,
            "data_offset": s.data_offset,
            "raw_size": s.raw_size,
            "gpa": format!("{:#x}", s.gpa),
            "mem_size": s.mem_size,
            "attributes": s.attributes,
            "mr_extend": s.mr_extend(),
            "page_aug": s.page_aug(),
        })).collect::<Vec<_>>(),
        "mrtd": mrtd,
    })
}

fn mrtd_text(tdvf: &Tdvf, orders: &[MrtdOrder]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "TDVF descriptor at {:#x}, {} sections:",
        tdvf.descriptor_offset(),
        tdvf.sections().len()
    );
    let _ = writeln!(
        out,
        "  {:>2} {:<12} {:>10} {:>10} {:>18} {:>10}  attributes",
        "#", "type", "offset", "raw size", "gpa", "mem size"
    );
    for (i, s) in tdvf.sections().iter().enumerate() {
        let mut attrs = Vec::new();
        if s.mr_extend() {
            attrs.push("MR_EXTEND");
        }
        if s.page_aug() {
            attrs.push("PAGE_AUG");
        }
        let _ = writeln!(
            out,
            "  {i:>2} {:<12} {:>#10x} {:>#10x} {:>#18x} {:>#10x}  {}",
            s.kind.name(),
            s.data_offset,
            s.raw_size,
            s.gpa,
            s.mem_size,
            if attrs.is_empty() {
                "-".to_string()
            } else {
                attrs.join("|")
            }
        );
    }
    for &o in orders {
        let _ = writeln!(out, "mrtd {:<11} {}", o.name(), tdvf.mrtd(o));
    }
    out
}

fn to_json(log: &EventLog) -> serde_json::Value {
    let rtmrs = log.replay();
    let registers: Vec<_> = (0u8..4)
        .map(|i| {
            let events: Vec<_> = log
                .events()
                .iter()
                .enumerate()
                .filter(|(_, e)| e.rtmr == i)
                .map(|(index, e)| {
                    serde_json::json!({
                        "index": index,
                        "event_type": e.event_type,
                        "digest": e.digest.to_hex(),
                        "name": e.name,
                    })
                })
                .collect();
            serde_json::json!({
                "register": format!("rtmr{i}"),
                "value": rtmrs[usize::from(i)].to_hex(),
                "events": events,
            })
        })
        .collect();
    serde_json::json!({
        "format": log.format().name(),
        "events": log.events().len(),
        "rtmr0": rtmrs[0].to_hex(),
        "rtmr1": rtmrs[1].to_hex(),
        "rtmr2": rtmrs[2].to_hex(),
        "rtmr3": rtmrs[3].to_hex(),
        "registers": registers,
    })
}

fn text(log: &EventLog) -> String {
    let rtmrs = log.replay();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "format: {} ({} events)",
        log.format().name(),
        log.events().len()
    );
    for (i, v) in rtmrs.iter().enumerate() {
        let _ = writeln!(out, "rtmr{i} {v}");
    }
    for i in 0u8..4 {
        let _ = writeln!(out, "\nrtmr{i} events:");
        for (index, e) in log.events().iter().enumerate().filter(|(_, e)| e.rtmr == i) {
            let _ = writeln!(
                out,
                "  [{index:>3}] type {:#010x} {} {}",
                e.event_type, e.digest, e.name
            );
        }
    }
    out
}
