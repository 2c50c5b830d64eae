//! fleet-lab. (In progress.)
fn main() {}
