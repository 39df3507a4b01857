//! `tessella-measure`: compute and replay TDX measurements.
//!
//! Only `replay LOG` exists so far: it replays a dstack JSON event log (bare or
//! inside `quote-report.json`) or a binary CCEL / TCG2 event log and prints the
//! four RTMRs with the events that produced each, so a mismatch against a
//! quote can be debugged register by register.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tessella_measurements::{EventLog, LogFormat};

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
            match std::io::stdout().lock().write_all(out.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.context("writing output"),
            }
        }
    }
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
