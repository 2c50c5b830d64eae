//! The unit-file parser on arbitrary text: it never panics, and whatever it accepts is a
//! fixed point (its canonical form parses to the same options, passes the API's
//! read-back check and hashes the same), so what fleetctl stores is what machines run.
#![no_main]

use fleet_core::UnitFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = UnitFile::parse(text) else {
        return;
    };
    let canonical = file.canonical();
    let again = UnitFile::parse(&canonical).expect("the canonical form of a parsed file parses");
    assert_eq!(again.canonical(), canonical, "canonical form is a fixed point");
    assert_eq!(again.hash(), file.hash());
    file.check().expect("a parsed file passes the API's read-back check");
});
