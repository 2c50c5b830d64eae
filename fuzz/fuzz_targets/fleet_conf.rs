//! fleet.conf on arbitrary text: parsing never panics; a refusal is one visible line
//! (it is printed as fleetd's only output); an accepted file gives bounded values.
#![no_main]

use fleetd::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_file_text(text, "/etc/fleet/fleet.conf") {
        Ok((config, warnings)) => {
            for w in &warnings {
                assert!(!w.chars().any(char::is_control), "warning {w:?}");
            }
            assert!(!config.agent_ttl.is_zero());
            assert!(!config.etcd_request_timeout.is_zero());
            assert!(fleet_registry::Keys::new(&config.etcd_key_prefix).is_ok());
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.chars().any(char::is_control), "error {line:?}");
        }
    }
});
