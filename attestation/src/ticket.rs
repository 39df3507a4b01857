//! JWT tickets (being written).
