//! Malformed evidence never panics: random corruptions of real quotes,
//! collateral and policies each end in a typed error (or, for bytes outside the
//! signed parts, a verdict), never a crash. Deterministic, so failures replay.

use tessella_attestation::measurements::{MeasurementPolicy, TcbRules};
use tessella_attestation::{Collateral, Policy, Quote, Verifier};
use tessella_tests::tdx_samples;

/// xorshift64*: a tiny deterministic generator; the seed makes runs replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    match rng.below(5) {
        0 => {
            let cut = rng.below(out.len());
            out.truncate(cut);
        }
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
        }
        2 => {
            // Overwrite a length-like u16/u32 with an extreme value.
            let i = rng.below(out.len().saturating_sub(4).max(1));
            let v = [0u8, 0xff][rng.below(2)];
            for b in out.iter_mut().skip(i).take(4) {
                *b = v;
            }
        }
        3 => {
            let i = rng.below(out.len());
            let extra: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            out.splice(i..i, extra);
        }
        _ => {
            let i = rng.below(out.len());
            let j = (i + rng.below(256)).min(out.len());
            out.drain(i..j);
        }
    }
    out
}

#[test]
fn corrupted_quotes_give_errors_not_panics() {
    let dir = tdx_samples();
    let raw = std::fs::read(dir.join("intel/tdx_quote")).expect("read");
    let collateral =
        Collateral::from_file(&dir.join("intel/tdx_quote_collateral.json")).expect("collateral");
    let policy = Policy::insecure_unpinned_measurements(TcbRules {
        allow_dynamic_platform: true,
        allow_cached_keys: true,
        allow_smt: true,
        ..TcbRules::default()
    });
    let verifier = Verifier::intel();
    let mut rng = Rng(0x7e55_e11a);
    let (mut parsed, mut accepted) = (0, 0);
    for _ in 0..400 {
        let bytes = mutate(&mut rng, &raw);
        let Ok(q) = Quote::decode(&bytes) else {
            continue;
        };
        parsed += 1;
        let _ = q.fmspc();
        let _ = q.measurements();
        if verifier
            .verify(&q, &collateral, &policy, 1_750_500_000, None)
            .is_ok()
        {
            accepted += 1;
            // Only bytes outside what is signed or checked may change and still pass:
            // the padding region and the unsigned tail of the certification data.
            assert_eq!(
                q.measurements(),
                Quote::decode(&raw).expect("ok").measurements()
            );
        }
    }
    assert!(
        parsed > 50,
        "mutations too destructive to exercise verification: {parsed}"
    );
    assert!(accepted < parsed, "corruptions must be refused");
}

#[test]
fn corrupted_collateral_and_policies_give_errors_not_panics() {
    let dir = tdx_samples();
    let collateral = std::fs::read(dir.join("intel/tdx_quote_collateral.json")).expect("read");
    let policy = std::fs::read(dir.join("flashbots/measurements.json")).expect("read");
    let mut rng = Rng(0xc011_a7e2);
    for _ in 0..500 {
        let _ = Collateral::from_json(&mutate(&mut rng, &collateral));
        let _ = MeasurementPolicy::from_json_any(&mutate(&mut rng, &policy));
    }
}
