//! Placeholder until the sql benchmark lands.
fn main() {}
