//! The shared harness of the node tests: the test kit (`tessella_tests::kit`).

#![allow(unused_imports)] // each test file uses its own part of the kit

pub use tessella_tests::kit::*;
