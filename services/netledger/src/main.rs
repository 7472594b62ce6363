//! The netledger binary.
fn main() {}
