//! Quote providers (being written).
