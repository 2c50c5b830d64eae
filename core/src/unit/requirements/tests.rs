//! `[X-Fleet]` parsing and validation tables, from fleet-behaviour.md §3.4–3.5.

use super::*;

/// A unit file with the given `[X-Fleet]` lines.
fn fleet(lines: &str) -> UnitFile {
    UnitFile::parse(&format!("[Unit]\nDescription=x\n\n[X-Fleet]\n{lines}")).unwrap()
}

fn reqs(lines: &str) -> Requirements {
    Requirements::parse(&fleet(lines)).unwrap_or_else(|e| panic!("{lines:?}: {e}"))
}

fn err(lines: &str) -> String {
    match Requirements::parse(&fleet(lines)) {
        Ok(r) => panic!("{lines:?} accepted: {r:?}"),
        Err(e) => e.to_string(),
    }
}

fn patterns(globs: &[UnitGlob]) -> Vec<&str> {
    globs.iter().map(UnitGlob::pattern).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn name(n: &str) -> UnitName {
    UnitName::parse(n).unwrap()
}

#[test]
fn no_section_is_trivial() {
    let r = Requirements::parse(&UnitFile::parse("[Service]\nExecStart=/bin/true\n").unwrap());
    assert_eq!(r, Ok(Requirements::default()));
    assert!(Requirements::default().is_trivial());
    assert!(!reqs("Global=true\n").is_trivial());
    assert!(!reqs("MachineMetadata=a=b\n").is_trivial());
}

#[test]
fn machine_id_first_value_wins_and_aliases() {
    assert_eq!(
        reqs("MachineID=abc\nMachineID=def\n").machine_id.as_deref(),
        Some("abc")
    );
    // the modern key beats the aliases wherever they are
    let r = reqs("X-ConditionMachineID=old\nX-ConditionMachineBootID=boot\nMachineID=new\n");
    assert_eq!(r.machine_id.as_deref(), Some("new"));
    assert_eq!(
        reqs("X-ConditionMachineBootID=boot\nX-ConditionMachineID=old\n")
            .machine_id
            .as_deref(),
        Some("old")
    );
    assert_eq!(
        reqs("X-ConditionMachineBootID=boot\n")
            .machine_id
            .as_deref(),
        Some("boot")
    );
    // quoted multi-value: the first item
    assert_eq!(
        reqs("MachineID=\"a\" \"b\"\n").machine_id.as_deref(),
        Some("a")
    );
}

#[test]
fn machine_id_matches_full_or_short() {
    let id = MachineId::new("113f16a7cc1b4a9b8bd1a4d5c2e1f0aa").unwrap();
    assert!(reqs("MachineID=113f16a7cc1b4a9b8bd1a4d5c2e1f0aa\n").allows_machine_id(&id));
    assert!(reqs("MachineID=113f16a7\n").allows_machine_id(&id));
    assert!(!reqs("MachineID=113f16a\n").allows_machine_id(&id));
    assert!(!reqs("MachineID=other\n").allows_machine_id(&id));
    assert!(Requirements::default().allows_machine_id(&id));
}

#[test]
fn machine_of_keeps_all_peers() {
    let r = reqs("MachineOf=a.service\nX-ConditionMachineOf=b.service\nMachineOf=c.service\n");
    // the deprecated key's values come first, as in fleet's Peers()
    assert_eq!(r.machine_of, ["b.service", "a.service", "c.service"]);
}

#[test]
fn metadata_or_within_key_and_across_lines() {
    // fleet-behaviour.md §3.4: diskType=SSD AND region ∈ {us-east-1, us-west-1}
    let r = reqs(
        "MachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\nMachineMetadata=region=us-west-1\n",
    );
    let want: BTreeMap<String, BTreeSet<String>> = [
        ("diskType".to_string(), set(&["SSD"])),
        ("region".to_string(), set(&["us-east-1", "us-west-1"])),
    ]
    .into();
    assert_eq!(r.metadata, want);
    let machine = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(r.allows_metadata(&machine(&[("region", "us-west-1"), ("diskType", "SSD")])));
    assert!(r.allows_metadata(&machine(&[
        ("region", "us-east-1"),
        ("diskType", "SSD"),
        ("x", "y")
    ])));
    assert!(!r.allows_metadata(&machine(&[("region", "us-west-1")])));
    assert!(!r.allows_metadata(&machine(&[("region", "eu"), ("diskType", "SSD")])));
    assert!(Requirements::default().allows_metadata(&machine(&[])));
}

#[test]
fn metadata_malformed_items_ignored() {
    // an item counts only if it splits on `=` into exactly two non-empty parts;
    // unquoted `a=b c=d` is a single item with three parts
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("MachineMetadata=a=b c=d\n", &[]), // three `=`-parts: ignored
        ("MachineMetadata=a=b c\n", &[("a", "b c")]), // one `=`: a value with a space
        ("MachineMetadata=a=\n", &[]),      // empty value
        ("MachineMetadata==b\n", &[]),      // empty key
        ("MachineMetadata=ab\n", &[]),      // no `=`
        ("MachineMetadata=a=b=c\n", &[]),   // values containing `=` cannot match
        ("X-ConditionMachineMetadata=a=b\n", &[("a", "b")]),
        (
            "MachineMetadata=\"a=1\"  \"b=2\"\n",
            &[("a", "1"), ("b", "2")],
        ),
    ];
    for (lines, want) in cases {
        let got: Vec<(String, String)> = reqs(lines)
            .metadata
            .into_iter()
            .flat_map(|(k, vs)| vs.into_iter().map(move |v| (k.clone(), v)))
            .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want, "{lines:?}");
    }
}

#[test]
fn conflicts_split_on_whitespace_and_aliases() {
    let r = reqs("Conflicts=conflict.2.service conflict.1.service conflict.0.service\n");
    assert_eq!(
        patterns(&r.conflicts),
        [
            "conflict.2.service",
            "conflict.1.service",
            "conflict.0.service"
        ]
    );
    let r = reqs("Conflicts=a.service\nX-Conflicts=b*.service\nConflicts=  \n");
    assert_eq!(patterns(&r.conflicts), ["b*.service", "a.service"]);
    assert!(r.conflicts_with("bar.service") && r.conflicts_with("a.service"));
    assert!(!r.conflicts_with("c.service"));
    // quoted multi-value, then whitespace split of each item
    let r = reqs("Conflicts=\"a.service b.service\" \"c.service\"\n");
    assert_eq!(
        patterns(&r.conflicts),
        ["a.service", "b.service", "c.service"]
    );
}

#[test]
fn replaces_not_whitespace_split() {
    let r = reqs("Replaces=a.service b.service\n");
    assert_eq!(patterns(&r.replaces), ["a.service b.service"]);
    assert!(!r.replaces_unit("a.service"));
    let r = reqs("Replaces=\"a.service\" \"b*.service\"\n");
    assert_eq!(patterns(&r.replaces), ["a.service", "b*.service"]);
    assert!(r.replaces_unit("bar.service"));
}

#[test]
fn global_truthy_last_wins() {
    for v in ["true", "TRUE", "yes", "Yes", "1", "on", "ON", "t", "T"] {
        assert!(reqs(&format!("Global={v}\n")).global, "{v}");
    }
    for v in ["false", "no", "0", "off", "", "y", "tru", " 2"] {
        assert!(!reqs(&format!("Global={v}\n")).global, "{v}");
    }
    assert!(!reqs("Global=true\nGlobal=false\n").global);
    assert!(reqs("Global=false\nGlobal=true\n").global);
}

#[test]
fn stop_on_etcd_loss_is_known_truthy_last_wins_and_not_a_placement_rule() {
    let r = reqs("StopOnEtcdLoss=yes\n");
    assert!(r.stop_on_etcd_loss && r.unrecognized.is_empty() && r.is_trivial());
    assert!(!reqs("").stop_on_etcd_loss);
    assert!(!reqs("StopOnEtcdLoss=true\nStopOnEtcdLoss=off\n").stop_on_etcd_loss);
}

#[test]
fn unrecognized_keys_collected_once() {
    let r = reqs("Foo=1\nMachineOf=a.service\nFoo=2\nX-ConditionFoo=3\n");
    assert_eq!(r.unrecognized, ["Foo", "X-ConditionFoo"]);
    // only [X-Fleet] counts
    let r = Requirements::parse(&UnitFile::parse("[Unit]\nMachineID=x\n").unwrap()).unwrap();
    assert_eq!(r, Requirements::default());
}

#[test]
fn multivalue_splitting() {
    let cases: &[(&str, &[&str])] = &[
        ("plain", &["plain"]),
        ("a b", &["a b"]),
        ("\"a\" \"b\"", &["a", "b"]),
        ("\"a b\" \"c\"", &["a b", "c"]),
        ("\"a\"  \"b\"", &["a", "", "b"]),
        ("\"a\" b \"c\"", &["a", "b", "c"]),
        ("\"\"", &[""]),
        ("\"", &[""]),
        ("\"a", &["\"a"]),
        ("a\"", &["a\""]),
        ("\"x=\"y\" z\"", &["x=y z"]),
        ("", &[""]),
    ];
    for (value, want) in cases {
        assert_eq!(split_multivalue(value), *want, "{value:?}");
    }
}

#[test]
fn validation_messages_and_order() {
    let cases: &[(&str, &str)] = &[
        (
            "MachineOf=web.service\nConflicts=web*\n",
            "unresolvable requirements: peer \"web.service\" matches conflict \"web*\"",
        ),
        (
            "MachineOf=web.service\nReplaces=*.service\n",
            "unresolvable requirements: peer \"web.service\" matches replace \"*.service\"",
        ),
        // peer/conflict is checked before the combinations
        (
            "MachineID=m\nMachineOf=web.service\nConflicts=web*\n",
            "unresolvable requirements: peer \"web.service\" matches conflict \"web*\"",
        ),
        (
            "MachineID=m\nMachineOf=a.service\n",
            "MachineID cannot be used with Peers",
        ),
        (
            "MachineID=m\nConflicts=a*\n",
            "MachineID cannot be used with Conflicts",
        ),
        (
            "MachineID=m\nGlobal=true\n",
            "MachineID cannot be used with Global",
        ),
        (
            "MachineID=m\nReplaces=a.service\n",
            "MachineID cannot be used with Replaces",
        ),
        (
            "Global=true\nMachineOf=a.service\n",
            "Global cannot be used with Peers",
        ),
        (
            "Global=true\nReplaces=a.service\n",
            "Global cannot be used with Replaces",
        ),
        (
            "Conflicts=a*\nReplaces=b.service\n",
            "Conflicts cannot be used with Replaces",
        ),
        // first hit in fleet's order
        (
            "Global=true\nMachineID=m\nMachineOf=a.service\n",
            "MachineID cannot be used with Peers",
        ),
        (
            "Global=yes\nMachineOf=a.service\nReplaces=b.service\n",
            "Global cannot be used with Peers",
        ),
    ];
    for (lines, want) in cases {
        assert_eq!(err(lines), *want, "{lines:?}");
    }
}

#[test]
fn allowed_combinations() {
    for lines in [
        "Global=true\nMachineMetadata=a=b\n",
        "Global=true\nConflicts=x*\n",
        "MachineOf=a.service\nMachineMetadata=a=b\n",
        "MachineOf=a.service\nConflicts=b*\n",
        "MachineID=m\nMachineMetadata=a=b\n",
        "Replaces=a.service\nMachineMetadata=a=b\n",
        "Replaces=a.service\nMachineOf=b.service\n",
        // Global=false is not global
        "Global=false\nMachineID=m\n",
        // validation is on raw text: `%p.service` does not match `foo*`
        "MachineOf=%p.service\nConflicts=foo*\n",
    ] {
        assert!(Requirements::parse(&fleet(lines)).is_ok(), "{lines:?}");
    }
}

#[test]
fn specifiers_expanded_per_unit() {
    let f = fleet(
        "MachineID=%i\nMachineMetadata=hostname=%i\nMachineOf=%p.socket\nConflicts=%N-* %n\nReplaces=old-%i.service\nFoo=%n\n",
    );
    let r = Requirements::for_unit(&f, &name("pin@abc123.service"));
    assert_eq!(r.machine_id.as_deref(), Some("abc123"));
    assert_eq!(r.metadata["hostname"], set(&["abc123"]));
    assert_eq!(r.machine_of, ["pin.socket"]);
    assert_eq!(
        patterns(&r.conflicts),
        ["pin@abc123-*", "pin@abc123.service"]
    );
    assert_eq!(patterns(&r.replaces), ["old-abc123.service"]);
    assert_eq!(r.unrecognized, ["Foo"]);
    // raw parse keeps the specifiers (and this combination is invalid only raw-wise)
    let raw = fleet("MachineMetadata=hostname=%i\n");
    assert_eq!(
        Requirements::parse(&raw).unwrap().metadata["hostname"],
        set(&["%i"])
    );
    // a plain unit has an empty instance
    let r = Requirements::for_unit(&raw, &name("metadata.service"));
    assert!(
        r.metadata.is_empty(),
        "hostname= is an empty value: ignored"
    );
}

#[test]
fn for_unit_never_fails_even_when_expansion_makes_it_invalid() {
    let f = fleet("MachineOf=%p.service\nConflicts=foo*\n");
    assert!(Requirements::parse(&f).is_ok());
    let r = Requirements::for_unit(&f, &name("foo@1.service"));
    assert_eq!(r.machine_of, ["foo.service"]);
    assert!(r.validate().is_err());
    assert!(validate_unit(&name("foo@1.service"), &f).is_ok());
}

#[test]
fn validate_unit_returns_expanded_requirements() {
    let f = fleet("MachineID=%i\n");
    let r = validate_unit(&name("pin@m1.service"), &f).unwrap();
    assert_eq!(r.machine_id.as_deref(), Some("m1"));
    let bad = fleet("MachineID=%i\nGlobal=1\n");
    assert_eq!(
        validate_unit(&name("pin@m1.service"), &bad),
        Err(InvalidRequirements::MachineIdWithGlobal)
    );
}

#[test]
fn specifier_expansion_order_and_no_escape() {
    let n = name("foo@bar.service");
    assert_eq!(
        expand_specifiers("%n|%N|%p|%i|%%|%x", &n),
        "foo@bar.service|foo@bar|foo|bar|%%|%x"
    );
    assert_eq!(expand_specifiers("no specifiers", &n), "no specifiers");
}
