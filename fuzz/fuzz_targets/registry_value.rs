//! The registry's value decoders on any key and value, as etcd can hold anything a
//! client with access wrote: decoding never panics, errors are one visible line naming
//! the key, and a decoded record survives encode → decode unchanged.
//!
//! Input: a directory selector byte, then the key's tail up to the first NUL, then the
//! value (so the fuzzer reaches every decoder rather than only unparsable keys).
#![no_main]

use fleet_registry::Keys;
use libfuzzer_sys::fuzz_target;

const DIRS: [&str; 8] = [
    "unit/",
    "job/",
    "machine/",
    "schedule/",
    "machine-state/",
    "unplaced/",
    "leader/",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&dir, rest)) = data.split_first() else {
        return;
    };
    let (tail, value) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let keys = Keys::new("/_coreos.com/fleet/").expect("valid prefix");
    let mut key = keys.prefix().as_bytes().to_vec();
    key.extend_from_slice(DIRS[usize::from(dir) % DIRS.len()].as_bytes());
    key.extend_from_slice(tail);
    fleet_registry::fuzz_check(&keys, &key, value);
});
