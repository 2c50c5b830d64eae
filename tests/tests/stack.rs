//! The example units in `units/`: every one is a unit fleet accepts, and every embedded
//! shell script is valid bash once systemd has unescaped it.
//!
//! The scripts are embedded (not shipped as files) because fleet carries only the unit
//! text to the machines. That makes systemd's own quoting the risk: `$` and `%` must be
//! doubled, and a stray `\` or `'` changes the script. These tests catch that offline.
//! The end-to-end test of the stack in a lab is `tests/pending/stack_e2e.rs` until the
//! agent runs units.

use std::path::{Path, PathBuf};
use std::process::Command;

use fleet_core::unit::{Requirements, UnitFile, UnitName};

/// The repository's `units/` directory.
fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../units")
}

/// Every unit file under `units/` (the docker variants included), sorted.
fn unit_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![units_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "service") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn parse(path: &Path) -> (UnitName, UnitFile) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let name = UnitName::parse(name).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = std::fs::read_to_string(path).unwrap();
    let file = UnitFile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (name, file)
}

/// The value of an option as systemd sees it: continuation lines joined by a space.
fn joined(value: &str) -> String {
    value.replace("\\\n", " ")
}

/// The specifiers systemd expands in our units, with sample values.
const SPECIFIERS: [(char, &str); 5] = [
    ('i', "07"),
    ('H', "node1"),
    ('n', "web@07.service"),
    ('p', "web"),
    ('m', "0123456789abcdef0123456789abcdef"),
];

/// What systemd passes to the program after expanding `$$` and specifiers; panics on a
/// bare `$` (systemd would substitute its own environment) or an unknown specifier.
fn systemd_expand(unit: &str, value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => {
                let next = chars.next();
                assert_eq!(
                    next,
                    Some('$'),
                    "{unit}: a single `$` in an Exec line is expanded by systemd; write `$$`: {value}"
                );
                out.push('$');
            }
            '%' => match chars.next() {
                Some('%') => out.push('%'),
                Some(s) => {
                    let (_, sample) = SPECIFIERS
                        .iter()
                        .find(|(k, _)| *k == s)
                        .unwrap_or_else(|| panic!("{unit}: unexpected specifier %{s}: {value}"));
                    out.push_str(sample);
                }
                None => panic!("{unit}: trailing %: {value}"),
            },
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn every_unit_parses_and_its_requirements_validate() {
    let files = unit_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "db.service",
        "dbhelper.service",
        "mondb.service",
        "web@.service",
        "monweb@.service",
        "lb.service",
        "redis@.service",
        "webapp@.service",
        "hello.service",
        "hello@.service",
        "global.service",
    ] {
        assert!(names.iter().any(|n| n == want), "units/{want} is missing");
    }
    for path in &files {
        let (name, file) = parse(path);
        let reqs = Requirements::parse(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            reqs.unrecognized.is_empty(),
            "{name}: unknown [X-Fleet] keys {:?}",
            reqs.unrecognized
        );
        assert!(file.description().is_some(), "{name} has no Description");
        assert_eq!(
            file.values("Service", "ExecStart").count(),
            1,
            "{name}: one ExecStart"
        );
        // fleet schedules every instance of a template, so peers must resolve to units here.
        for peer in &reqs.machine_of {
            let template = peer.replace("%i", "");
            assert!(
                names.iter().any(|n| *n == template || *n == *peer),
                "{name}: MachineOf={peer} names no unit in units/"
            );
        }
    }
}

#[test]
fn the_stack_has_the_placement_the_demo_relies_on() {
    let reqs = |unit: &str| {
        let (name, file) = parse(&units_dir().join(unit));
        let instance = name.as_str().replace("@.", "@01.");
        Requirements::for_unit(&file, &UnitName::parse(&instance).unwrap())
    };
    assert_eq!(reqs("dbhelper.service").machine_of, ["db.service"]);
    assert_eq!(reqs("mondb.service").machine_of, ["db.service"]);
    assert_eq!(reqs("monweb@.service").machine_of, ["web@01.service"]);
    let redis = reqs("redis@.service");
    assert!(redis.conflicts_with("redis@2.service"));
    assert_eq!(redis.metadata["purpose"].iter().next().unwrap(), "db");
    let webapp = reqs("webapp@.service");
    assert!(webapp.conflicts_with("webapp@2.service"));
    assert_eq!(webapp.metadata["purpose"].iter().next().unwrap(), "web");
    // The helpers stop with what they serve, on the machine that runs it.
    for (unit, bound) in [
        ("dbhelper.service", "db.service"),
        ("mondb.service", "db.service"),
        ("monweb@.service", "web@%i.service"),
    ] {
        let (_, file) = parse(&units_dir().join(unit));
        assert_eq!(file.values("Unit", "BindsTo").collect::<Vec<_>>(), [bound]);
    }
}

#[test]
fn embedded_scripts_are_valid_bash_after_systemd_unescaping() {
    let mut checked = 0;
    for path in unit_files() {
        let (name, file) = parse(&path);
        for option in file.options() {
            if option.section != "Service" || !option.name.starts_with("Exec") {
                continue;
            }
            let line = systemd_expand(name.as_str(), &joined(&option.value));
            let line = line.trim_start_matches(['-', '@', '+', '!']);
            let Some(rest) = line.strip_prefix("/bin/bash -c '") else {
                continue;
            };
            let script = rest
                .strip_suffix('\'')
                .unwrap_or_else(|| panic!("{name}: the script must be the last argument"));
            // systemd unescapes `\` even inside quotes, and a `'` would end the script.
            assert!(
                !script.contains(['\\', '\'']),
                "{name}: no backslash or single quote inside an embedded script"
            );
            let out = Command::new("bash")
                .args(["-n", "-c", script])
                .output()
                .expect("run bash -n");
            assert!(
                out.status.success(),
                "{name}: bash -n: {}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} embedded scripts found");
}
