//! The test kit: building blocks for tessella's cluster tests, starting with
//! link faults injected beneath the real QUIC stack.

pub mod faults;
