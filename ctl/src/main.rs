//! fleetctl. (In progress.)
fn main() {
    println!("fleetctl version {}", fleet_core::VERSION);
}
