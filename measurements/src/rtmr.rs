//! The RTMR extend operation and a set of four runtime registers.
//!
//! A TDX runtime measurement register starts at 48 zero bytes and is only ever
//! changed by an extend: `RTMR = SHA384(RTMR ‖ digest48)`.

use ring::digest::{Context, SHA384};

use crate::Digest48;

/// SHA-384 of `data` as a [`Digest48`].
pub fn sha384(data: &[u8]) -> Digest48 {
    let mut ctx = Context::new(&SHA384);
    ctx.update(data);
    finish(ctx)
}

/// Finish a SHA-384 context into a [`Digest48`].
pub(crate) fn finish(ctx: Context) -> Digest48 {
    let mut out = [0u8; 48];
    out.copy_from_slice(ctx.finish().as_ref());
    Digest48(out)
}

/// Extend `register` with `digest`: `register = SHA384(register ‖ digest)`.
pub fn extend(register: &mut Digest48, digest: &Digest48) {
    let mut ctx = Context::new(&SHA384);
    ctx.update(&register.0);
    ctx.update(&digest.0);
    *register = finish(ctx);
}

/// An RTMR index outside 0..=3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RTMR index {0} out of range (0..=3)")]
pub struct RtmrIndexError(pub usize);

/// The four runtime measurement registers RTMR0..RTMR3, starting at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtmrs(pub [Digest48; 4]);

impl Default for Rtmrs {
    fn default() -> Self {
        Rtmrs::new()
    }
}

impl Rtmrs {
    /// All four registers at 48 zero bytes, as at TD start.
    pub fn new() -> Self {
        Rtmrs([Digest48::ZERO; 4])
    }

    /// Extend RTMR `index` with `digest`.
    pub fn extend(&mut self, index: usize, digest: &Digest48) -> Result<(), RtmrIndexError> {
        let reg = self.0.get_mut(index).ok_or(RtmrIndexError(index))?;
        extend(reg, digest);
        Ok(())
    }

    /// Replay `(index, digest)` pairs in order from zeroed registers.
    pub fn replay<'a, I>(extends: I) -> Result<Self, RtmrIndexError>
    where
        I: IntoIterator<Item = (usize, &'a Digest48)>,
    {
        let mut r = Rtmrs::new();
        for (index, digest) in extends {
            r.extend(index, digest)?;
        }
        Ok(r)
    }

    /// Replay a sequence of digests into a single register from zero.
    pub fn replay_one<'a, I>(digests: I) -> Digest48
    where
        I: IntoIterator<Item = &'a Digest48>,
    {
        let mut reg = Digest48::ZERO;
        for d in digests {
            extend(&mut reg, d);
        }
        reg
    }

    /// The register values RTMR0..RTMR3.
    pub fn values(&self) -> [Digest48; 4] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_matches_definition() {
        let d = sha384(b"x");
        let mut concat = vec![0u8; 48];
        concat.extend_from_slice(&d.0);
        let mut r = Rtmrs::new();
        r.extend(2, &d).expect("in range");
        assert_eq!(r.0[2], sha384(&concat));
        assert_eq!(r.0[0], Digest48::ZERO);
        assert_eq!(Rtmrs::replay_one([&d]), r.0[2]);
        assert_eq!(r.extend(4, &d), Err(RtmrIndexError(4)));
    }

    #[test]
    fn sha384_known_answer() {
        // FIPS 180-2 "abc".
        assert_eq!(
            sha384(b"abc").to_hex(),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7"
        );
    }
}
