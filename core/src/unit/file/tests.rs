//! Parser, canonical form and hash: tables of (input, expected options) per rule.

use super::*;

/// Parses `text` and compares its options as `(section, name, value)` triples.
fn check(text: &str, want: &[(&str, &str, &str)]) {
    let got = UnitFile::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let got: Vec<(&str, &str, &str)> = got
        .options()
        .iter()
        .map(|o| (o.section.as_str(), o.name.as_str(), o.value.as_str()))
        .collect();
    assert_eq!(got, want, "input {text:?}");
}

fn check_err(text: &str, want: &str) {
    match UnitFile::parse(text) {
        Ok(f) => panic!("{text:?} parsed: {f:?}"),
        Err(e) => assert_eq!(e.to_string(), want, "input {text:?}"),
    }
}

const HELLO: &str = "[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/bash -c \"while true; do echo \\\"Hello, world\\\"; sleep 1; done\"\n";

#[test]
fn hash_matches_fleet_docs() {
    let f = UnitFile::parse(HELLO).unwrap();
    assert_eq!(f.canonical(), HELLO);
    assert_eq!(
        f.hash().to_string(),
        "e55c0aeb44ba0b68004ceb8a200e685194448b45"
    );
    assert_eq!(f.hash().short(), "e55c0ae");
    assert_eq!(f.hash().to_string().parse::<UnitHash>(), Ok(f.hash()));
    assert_eq!(f.description(), Some("Hello World"));
}

#[test]
fn basic_rules() {
    // text before the first section is skipped, even if it looks like an option
    check("junk\nA=b\n[S]\nK=v\n", &[("S", "K", "v")]);
    // `#` and `;` comments, also indented
    check("# c\n[S]\n; c\n  # c\nK=v\n", &[("S", "K", "v")]);
    // names and values trimmed; the value keeps inner `=` and spaces
    check("[S]\n  K  =  a = b  \n", &[("S", "K", "a = b")]);
    // empty values are kept (they mean "reset" to systemd)
    check("[S]\nK=\nL=   \n", &[("S", "K", ""), ("S", "L", "")]);
    // repeated keys kept in order
    check("[S]\nK=1\nK=2\n", &[("S", "K", "1"), ("S", "K", "2")]);
    // a value may start with a comment character
    check("[S]\nK=#x\n", &[("S", "K", "#x")]);
    // an empty section yields no options
    check("[A]\n[B]\nK=v\n", &[("B", "K", "v")]);
    // no trailing newline
    check("[S]\nK=v", &[("S", "K", "v")]);
    // CRLF line endings
    check("[S]\r\nK=v\r\n", &[("S", "K", "v")]);
    // section names are not trimmed (go-systemd)
    check("[ S ]\nK=v\n", &[(" S ", "K", "v")]);
    // an empty name is allowed
    check("[S]\n=v\n", &[("S", "", "v")]);
    check("", &[]);
    check("no sections at all\n", &[]);
}

#[test]
fn continuation_keeps_backslash_and_newline() {
    // fleet (go-systemd) keeps `\` and the newline; indentation of the next line too
    check("[S]\nK=a \\\n   b\n", &[("S", "K", "a \\\n   b")]);
    check(
        "[S]\nK=a\\\nb\\\nc\nL=d\n",
        &[("S", "K", "a\\\nb\\\nc"), ("S", "L", "d")],
    );
    // a blank line ends the continuation and the newline is kept
    check(
        "[S]\nK=a\\\n\nL=d\n",
        &[("S", "K", "a\\\n"), ("S", "L", "d")],
    );
    // `\` on the last line of the file, without a newline, continues nothing: written
    // back with its newline it would continue, so it is refused (found by fuzzing)
    assert!(matches!(
        UnitFile::parse("[S]\nK=a\\"),
        Err(ParseError::Syntax { line: 2, .. })
    ));
    // nor may spaces follow the backslash that would then glue the next option on
    assert!(matches!(
        UnitFile::parse("[S]\nK=a\\ \nL=b\n"),
        Err(ParseError::Syntax { line: 2, .. })
    ));
    // a backslash that is not last does not continue
    check(
        "[S]\nK=a\\ b\nL=c\n",
        &[("S", "K", "a\\ b"), ("S", "L", "c")],
    );
    // CRLF continuation (go-systemd would not continue here; systemd does)
    check("[S]\r\nK=a\\\r\nb\r\n", &[("S", "K", "a\\\nb")]);
}

#[test]
fn comment_inside_continuation_is_skipped_like_systemd() {
    // systemd.syntax(7)'s own example: comment lines inside a continuation are ignored
    check(
        "[S]\nK=value 3\\\n# ignored\n; ignored too\n       continued\nL=x\n",
        &[("S", "K", "value 3\\\n       continued"), ("S", "L", "x")],
    );
    // a comment right after `\` does not end the value
    check("[S]\nK=a \\\n  # c\nL=x\n", &[("S", "K", "a \\\nL=x")]);
}

#[test]
fn comment_ending_in_backslash_swallows_next_line() {
    // go-systemd quirk kept for hash compatibility
    check("[S]\n# c \\\nK=v\nL=w\n", &[("S", "L", "w")]);
}

#[test]
fn repeated_sections_merge_in_canonical_form() {
    let f = UnitFile::parse("[A]\na=1\n[B]\nb=1\n[A]\na=2\n").unwrap();
    assert_eq!(f.canonical(), "[A]\na=1\na=2\n\n[B]\nb=1\n");
    assert_eq!(f.values("A", "a").collect::<Vec<_>>(), ["1", "2"]);
    assert!(f.has_section("B") && !f.has_section("C"));
}

#[test]
fn canonical_form() {
    let f = UnitFile::parse("# head\n[Unit]\n  Description = x \n\n\n[X-Fleet]\nConflicts=a*\n")
        .unwrap();
    assert_eq!(
        f.canonical(),
        "[Unit]\nDescription=x\n\n[X-Fleet]\nConflicts=a*\n"
    );
    assert_eq!(UnitFile::default().canonical(), "");
    // sha1 of the empty string
    assert_eq!(
        UnitFile::default().hash().to_string(),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
}

#[test]
fn errors() {
    check_err(
        "[Unit] x\nA=b\n",
        "line 1: found garbage after section name \"Unit\"",
    );
    check_err(
        "[Unit]\nA=b\n[S]]\n",
        "line 3: found garbage after section name \"S\"",
    );
    check_err("[Unit\n", "line 1: unable to find end of section");
    check_err(
        "[Unit]\nNoEquals\nB=c\n",
        "line 2: unexpected newline encountered while parsing option name",
    );
    check_err(
        "[Unit]\nNoEquals",
        "line 2: unexpected end of file while parsing option name",
    );
}

#[test]
fn line_length_limit() {
    // 2047 bytes of line are fine, 2048 are not (go-systemd's SYSTEMD_LINE_MAX)
    let ok = format!("[S]\nK={}\n", "x".repeat(2045));
    assert!(UnitFile::parse(&ok).is_ok());
    let long = format!("[S]\nA=b\nK={}\n", "x".repeat(2046));
    check_err(&long, "line 3: line too long (max 2048 bytes)");
    // also in comments and before the first section, and without a final newline
    check_err(
        &format!("#{}", "x".repeat(2047)),
        "line 1: line too long (max 2048 bytes)",
    );
    // API bodies are checked through their canonical form
    let f = UnitFile::from_options(vec![UnitOption {
        section: "S".into(),
        name: "K".into(),
        value: "x".repeat(3000),
    }]);
    assert_eq!(f.check(), Err(ParseError::LineTooLong { line: 2 }));
    assert_eq!(UnitFile::parse(HELLO).unwrap().check(), Ok(()));
}

#[test]
fn size_limit() {
    let big = format!("[S]\n{}", "K=v\n".repeat(MAX_UNIT_SIZE / 4));
    assert_eq!(
        UnitFile::parse(&big),
        Err(ParseError::TooLarge {
            size: big.len(),
            max: MAX_UNIT_SIZE
        })
    );
    assert_eq!(
        UnitFile::parse(&big).unwrap_err().to_string(),
        format!("unit file too large ({} bytes, max 1048576)", big.len())
    );
}

#[test]
fn section_names_on_one_line_and_lone_carriage_returns() {
    // go-systemd read `[Unit` up to a `]` lines later; systemd never did
    assert_eq!(
        UnitFile::parse("[Unit\nDescription=x]\nA=b\n"),
        Err(ParseError::Syntax {
            line: 1,
            msg: "unable to find end of section on its line".into()
        })
    );
    // a CR that is no CRLF line end is a line end to systemd only
    assert_eq!(
        UnitFile::parse("[Unit]\nDescription=a\rExecStart=/bin/evil\n"),
        Err(ParseError::ControlChar { line: 2, ch: '\r' })
    );
}

#[test]
fn control_characters_are_refused_with_their_line() {
    for (text, line, ch) in [
        ("[Service]\nExecStart=/bin/echo a\0b\n", 2, '\0'),
        ("[Unit]\nDescription=\x1b[31mred\n", 2, '\x1b'),
        ("[Unit]\x07\n", 1, '\x07'),
        ("[Unit]\nDescription=x\x7f\n", 2, '\x7f'),
    ] {
        assert_eq!(
            UnitFile::parse(text),
            Err(ParseError::ControlChar { line, ch }),
            "{text:?}"
        );
    }
    assert_eq!(
        UnitFile::parse("[Unit]\nDescription=\x1b[2J\n")
            .unwrap_err()
            .to_string(),
        "line 2: control character U+001B is not allowed in a unit file"
    );
    // Tabs and CRLF line ends are what people write; they stay accepted.
    assert!(UnitFile::parse("[Service]\r\nExecStart=/bin/echo\ta\r\n").is_ok());
}

#[test]
fn options_that_would_read_back_differently_are_refused() {
    let opt = |section: &str, name: &str, value: &str| UnitOption {
        section: section.into(),
        name: name.into(),
        value: value.into(),
    };
    // A newline in a value would add an [X-Fleet] option the checks never saw.
    let smuggled = UnitFile::from_options(vec![
        opt("Service", "ExecStart", "/bin/true"),
        opt(
            "X-Fleet",
            "Conflicts",
            "a.service\nMachineID=0123456789abcdef",
        ),
    ]);
    assert_eq!(
        smuggled.check(),
        Err(ParseError::NotPreserved {
            section: "X-Fleet".into(),
            name: "Conflicts".into()
        })
    );
    let section = UnitFile::from_options(vec![opt("Unit]\n[X-Fleet", "Global", "true")]);
    assert!(matches!(
        section.check(),
        Err(ParseError::NotPreserved { .. })
    ));
    let name = UnitFile::from_options(vec![opt("X-Fleet", "Global=true\nMachineOf", "x")]);
    assert!(matches!(name.check(), Err(ParseError::NotPreserved { .. })));
    // Ordinary options, interleaved sections and padding that reading back trims pass.
    let fine = UnitFile::from_options(vec![
        opt("Unit", "Description", "web"),
        opt("Service", "ExecStart", "/bin/true"),
        opt("Unit", "After", " db.service "),
    ]);
    assert_eq!(fine.check(), Ok(()));
}
