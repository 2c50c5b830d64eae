//! fleet's functional-test fixture units (fleet-behaviour.md §8.2), re-written in our
//! own words: every one parses, is already canonical, passes submit-time validation,
//! and yields the requirements the functional tests rely on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use fleet_core::unit::{Requirements, UnitFile, UnitGlob, UnitName};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/units")
}

fn load(name: &str) -> UnitFile {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    UnitFile::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Requirements of fixture `file` as the scheduler sees them for unit `unit`.
fn reqs(file: &str, unit: &str) -> Requirements {
    Requirements::for_unit(&load(file), &UnitName::parse(unit).unwrap())
}

fn patterns(globs: &[UnitGlob]) -> Vec<&str> {
    globs.iter().map(UnitGlob::pattern).collect()
}

#[test]
fn every_fixture_is_canonical_valid_and_named_validly() {
    let mut count = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = UnitFile::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(file.canonical(), text, "{name} is not canonical");
        UnitName::parse(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = Requirements::parse(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(r.unrecognized.is_empty(), "{name}");
        count += 1;
    }
    assert_eq!(count, 30);
}

#[test]
fn plain_units_have_no_requirements() {
    for f in [
        "hello.service",
        "goodbye.service",
        "replace.0.service",
        "ping.1.service",
    ] {
        assert!(reqs(f, f).is_trivial(), "{f}");
    }
    let r = reqs("single@.service", "single@3.service");
    assert!(r.is_trivial());
}

#[test]
fn conflict_glob_units_conflict_with_each_other_and_nothing_else() {
    let r = reqs("conflict.0.service", "conflict.0.service");
    assert_eq!(patterns(&r.conflicts), ["conflict.*.service"]);
    for other in [
        "conflict.1.service",
        "conflict.4.service",
        "conflict.0.service",
    ] {
        assert!(r.conflicts_with(other), "{other}");
    }
    // `*` matches dots too, so the multiple.* units are caught as well
    assert!(r.conflicts_with("conflict.multiple.2.service"));
    assert!(!r.conflicts_with("conflicts-with-hello.service"));
    assert!(!r.conflicts_with("hello.service"));
}

#[test]
fn conflict_multiple_one_line_and_repeated_keys_agree() {
    let want = [
        "conflict.2.service",
        "conflict.1.service",
        "conflict.0.service",
    ];
    for f in [
        "conflict.multiple.0.service",
        "conflict.multiple.1.service",
        "conflict.multiple.2.service",
    ] {
        let r = reqs(f, f);
        assert_eq!(patterns(&r.conflicts), want, "{f}");
        assert!(!r.conflicts_with("conflict.3.service"));
    }
}

#[test]
fn one_way_conflict() {
    let r = reqs(
        "conflicts-with-hello.service",
        "conflicts-with-hello.service",
    );
    assert!(r.conflicts_with("hello.service"));
    assert!(!reqs("hello.service", "hello.service").conflicts_with("conflicts-with-hello.service"));
}

#[test]
fn global_units() {
    assert!(reqs("global.service", "global.service").global);
    assert!(reqs("global@.service", "global@1.service").global);
    let r = reqs("conflict-global.0.service", "conflict-global.0.service");
    assert!(r.global && r.conflicts_with("conflict-global.1.service"));
}

#[test]
fn sidekick_discovery_unit() {
    let f = load("discovery.service");
    assert!(f.has_section("Install"));
    assert_eq!(
        f.values("Unit", "BindsTo").collect::<Vec<_>>(),
        ["hello.service"]
    );
    assert_eq!(
        reqs("discovery.service", "discovery.service").machine_of,
        ["hello.service"]
    );
}

#[test]
fn specifiers_in_metadata_and_machine_id() {
    let r = reqs("metadata@.service", "metadata@smoke1.service");
    let want: BTreeMap<String, BTreeSet<String>> =
        [("hostname".to_string(), ["smoke1".to_string()].into())].into();
    assert_eq!(r.metadata, want);
    let r = reqs("pin@.service", "pin@113f16a7.service");
    assert_eq!(r.machine_id.as_deref(), Some("113f16a7"));
}

#[test]
fn ping_pong_and_replace() {
    for i in 0..3 {
        let f = format!("pong.{i}.service");
        assert_eq!(reqs(&f, &f).machine_of, [format!("ping.{i}.service")]);
    }
    assert_eq!(
        reqs("replace.2.service", "replace.2.service").machine_of,
        ["replace.1.service"]
    );
    let r = reqs("replace-kick0.service", "replace-kick0.service");
    assert_eq!(patterns(&r.replaces), ["replace.0.service"]);
    assert!(r.replaces_unit("replace.0.service") && !r.replaces_unit("replace.1.service"));
}

#[test]
fn instances_share_the_template_body_hash() {
    // fleet stores one body per hash: an instance created from a template has the
    // template's hash because the body is copied unchanged (§3.1, §3.3).
    let t = load("hello@.service");
    let copy = UnitFile::parse(&t.canonical()).unwrap();
    assert_eq!(t.hash(), copy.hash());
    assert_ne!(t.hash(), load("hello.service").hash());
}
