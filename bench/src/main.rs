//! fleet-bench. (In progress.)
fn main() {}
