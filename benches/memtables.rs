//! Placeholder until the memtables benchmark lands.
fn main() {}
