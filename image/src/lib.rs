//! The reproducible TDX appliance image.
//!
//! Not built yet: pinned Debian inputs, the static node build, the deterministic
//! initrd and the launch scripts arrive with the image issue. It will write its
//! expected measurements in the format owned by `tessella-measurements`.

pub use tessella_measurements as measurements;
