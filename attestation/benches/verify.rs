//! Quote verifications per second, cold (no verdict cache): tessella's whole
//! path (decode, collateral lookup by FMSPC, dcap-qvl verification, TCB and
//! measurement policy) beside a bare `dcap_qvl::verify::verify` loop on the same
//! quote and collateral, interleaved in the same run so machine noise hits both.
//!
//! Run: `cargo bench -p tessella-attestation --bench verify`
//! (`TESSELLA_BENCH_ROUNDS`, `TESSELLA_BENCH_ITERS` to change the effort.)
//! Target: our path costs at most 10% more than the bare call.

mod stats;

use stats::{env_usize, median, time_per_iter};

use std::hint::black_box;

use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::{Collateral, CollateralStore, Policy, Quote, Verifier};

struct Case {
    name: &'static str,
    quote: &'static str,
    collateral: &'static str,
    now: u64,
}

const CASES: [Case; 2] = [
    Case {
        name: "intel v4 (TD1.0)",
        quote: "intel/tdx_quote",
        collateral: "intel/tdx_quote_collateral.json",
        now: 1_750_500_000,
    },
    Case {
        name: "flashbots v4 (GCP, zero-padded)",
        quote: "flashbots/dcap-tdx-1766059550570652607",
        collateral: "flashbots/dcap-quote-collateral-00.json",
        now: 1_769_509_141,
    },
];

fn main() {
    let rounds = env_usize("TESSELLA_BENCH_ROUNDS", 21);
    let iters = env_usize("TESSELLA_BENCH_ITERS", 40);
    let samples = tessella_tests::tdx_samples();
    println!("quote verification, cold: {rounds} rounds x {iters} iterations, medians per round");
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "sample", "bare/s", "tessella/s", "bare us", "tessella us", "overhead"
    );
    for case in CASES {
        let raw = std::fs::read(samples.join(case.quote)).expect("read quote");
        let collateral =
            Collateral::from_file(&samples.join(case.collateral)).expect("read collateral");
        let dcap_collateral = collateral.as_dcap().clone();
        let store = CollateralStore::new();
        store.insert(collateral);

        // A pinned policy as a node would run it: the quote's own MRTD and
        // RTMRs, cloud platform flags allowed.
        let m = Quote::decode(&raw).expect("parses").measurements();
        let mut entry = PolicyEntry::new("bench", vec![m.mrtd]);
        entry.rtmr0 = Some(vec![m.rtmr[0]]);
        entry.rtmr1 = Some(vec![m.rtmr[1]]);
        entry.rtmr2 = Some(vec![m.rtmr[2]]);
        entry.rtmr3 = Some(vec![m.rtmr[3]]);
        let tcb = TcbRules {
            allow_dynamic_platform: true,
            allow_cached_keys: true,
            allow_smt: true,
            ..TcbRules::default()
        };
        let policy = Policy::new(MeasurementPolicy::new(vec![entry], tcb).expect("policy"));
        let verifier = Verifier::intel();

        let ours = || {
            let quote = Quote::decode(black_box(&raw)).expect("decode");
            let verified = verifier
                .verify_in(&quote, &store, &policy, case.now, None)
                .expect("accepted");
            black_box(verified);
        };
        let bare = || {
            let report = dcap_qvl::verify::verify(black_box(&raw), &dcap_collateral, case.now)
                .expect("dcap verifies");
            black_box(report);
        };
        // Warm caches and the allocator.
        for _ in 0..3 {
            ours();
            bare();
        }

        let (mut t_bare, mut t_ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which runs first so drift does not favour one side.
            let (b, o) = if round % 2 == 0 {
                let b = time_per_iter(iters, bare);
                (b, time_per_iter(iters, ours))
            } else {
                let o = time_per_iter(iters, ours);
                (time_per_iter(iters, bare), o)
            };
            t_bare.push(b);
            t_ours.push(o);
            ratios.push(o / b);
        }
        let (b, o, r) = (
            median(&mut t_bare),
            median(&mut t_ours),
            median(&mut ratios),
        );
        println!(
            "{:<34} {:>12.0} {:>12.0} {:>12.1} {:>12.1} {:>+8.1}%",
            case.name,
            1.0 / b,
            1.0 / o,
            b * 1e6,
            o * 1e6,
            (r - 1.0) * 100.0
        );
        let figure = |what: &str| format!("{}_{what}", case.name.replace(' ', "_"));
        stats::bench_line("verify", &figure("bare_per_s"), 1.0 / b, "per_s");
        stats::bench_line("verify", &figure("tessella_per_s"), 1.0 / o, "per_s");
        stats::bench_line(
            "verify",
            &figure("overhead_pct"),
            (r - 1.0) * 100.0,
            "percent",
        );
    }
    println!("overhead = median over rounds of (tessella time / bare time) - 1; target <= +10%");
}
