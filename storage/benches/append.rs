//! Placeholder; the criterion benchmark comes in a later commit.
fn main() {}
