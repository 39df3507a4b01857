//! Measurement helpers shared by the attestation benchmarks.

#![allow(dead_code)] // each bench uses its own part

use std::time::Instant;

/// `name` from the environment as a number, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Seconds per iteration of `f`, over `iters` iterations.
pub fn time_per_iter(iters: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() / iters as f64
}

/// One figure for scripts, beside the table:
/// `BENCH {"bench": .., "figure": .., "value": .., "unit": ..}`.
pub fn bench_line(bench: &str, figure: &str, value: f64, unit: &str) {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    println!(
        "BENCH {{\"bench\": \"{}\", \"figure\": \"{}\", \"value\": {value:.3}, \"unit\": \"{}\"}}",
        esc(bench),
        esc(figure),
        esc(unit)
    );
}
