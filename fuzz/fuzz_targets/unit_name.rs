//! Unit names on arbitrary text: validation never panics, an accepted name is one systemd
//! accepts too (length, characters, a non-empty prefix), and its parts reassemble it.
#![no_main]

use fleet_core::UnitName;
use fleet_core::unit::name::MAX_NAME_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((name, path)) = UnitName::from_arg(text) {
        assert!(path.ends_with(name.as_str()));
    }
    let Ok(name) = UnitName::parse(text) else {
        return;
    };
    let s = name.as_str();
    assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN);
    assert!(!s.starts_with('@') && !name.stem().is_empty(), "{s:?}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.@\\-".contains(&b)),
        "{s:?}"
    );
    assert_eq!(format!("{}.{}", name.stem(), name.unit_type()), s);
    if name.is_instance() {
        let template = name.template().expect("an instance has a template");
        assert!(template.is_template());
    }
});
