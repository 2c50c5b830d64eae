//! Globs: a table of Go `path.Match` cases, and a property test against a direct port
//! of Go's `path.Match` (Go 1.16+, which reports a malformed pattern even on mismatch).

use proptest::prelude::*;

use super::*;

#[test]
fn go_path_match_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("conflict.*.service", "conflict.1.service", true),
        ("conflict.*.service", "conflict.service", false),
        ("*", "anything.service", true),
        ("*", "", true),
        ("hello.service", "hello.service", true),
        ("hello.service", "hello.socket", false),
        ("web@?.service", "web@1.service", true),
        ("web@?.service", "web@12.service", false),
        ("web@[0-9].service", "web@7.service", true),
        ("web@[^0-9].service", "web@7.service", false),
        ("web@[^0-9].service", "web@x.service", true),
        // Go has no `!` negation: `[!a]` is the class of `!` and `a`
        ("[!a]", "a", true),
        ("[!a]", "b", false),
        ("[!a]", "!", true),
        // no alternation in Go: braces and commas are literal
        ("{a,b}.service", "a.service", false),
        ("{a,b}.service", "{a,b}.service", true),
        // escapes, outside and inside classes
        ("\\*.service", "*.service", true),
        ("\\*.service", "x.service", false),
        ("[\\]]", "]", true),
        ("[\\-]", "-", true),
        ("a\\\\b", "a\\b", true),
        // `**` is just `*`
        ("a**b", "axxb", true),
        // `]` outside a class is literal
        ("a]", "a]", true),
        // `*` never crosses `/`
        ("a*", "a/b", false),
        // an empty range matches nothing; its negation anything
        ("[z-a]", "m", false),
        ("[^z-a]", "m", true),
        // classes with characters globset treats by position
        ("[]a]", "]", false), // malformed in Go: `]` cannot start a range
        ("[a-]", "a", false), // malformed
        ("[^^]", "^", false),
        ("[^^]", "x", true),
        ("[!^]", "^", true),
        ("[!^]", "!", true),
        ("[!^]", "x", false),
        ("[+-/]", "-", true),
        ("[+-/]", ",", true),
        ("[+-/]", "0", false),
        ("[\\]-a]", "^", true),
        // malformed patterns match nothing
        ("[", "[", false),
        ("a\\", "a", false),
        ("[a", "a", false),
        ("[]", "]", false),
        ("", "", true),
        ("", "a", false),
    ];
    for &(pattern, name, want) in cases {
        assert_eq!(
            UnitGlob::new(pattern).matches(name),
            want,
            "{pattern:?} vs {name:?}"
        );
        assert_eq!(
            go_match(pattern, name).unwrap_or(false),
            want,
            "oracle {pattern:?}"
        );
    }
}

#[test]
fn equality_debug_and_validity() {
    assert_eq!(UnitGlob::new("a*"), UnitGlob::new("a*"));
    assert_ne!(UnitGlob::new("a*"), UnitGlob::new("b*"));
    assert_eq!(format!("{:?}", UnitGlob::new("a*")), "UnitGlob(\"a*\")");
    assert_eq!(UnitGlob::new("a*").to_string(), "a*");
    assert!(UnitGlob::new("a*").is_valid());
    assert!(!UnitGlob::new("[").is_valid());
}

proptest! {
    #[test]
    fn agrees_with_go_path_match(
        pattern in "[ab!^\\-\\]\\[\\\\*?{},.]{0,8}",
        name in "[ab!^\\-\\]\\[\\\\{},./]{0,6}",
    ) {
        let want = go_match(&pattern, &name).unwrap_or(false);
        prop_assert_eq!(UnitGlob::new(&pattern).matches(&name), want);
    }
}

proptest! {
    /// The shapes the fast path handles (no `?`, `[`, `\\`), with `/` in names.
    #[test]
    fn fast_path_agrees_with_go_path_match(
        pattern in "[ab*./{]{0,6}",
        name in "[ab./{]{0,6}",
    ) {
        let want = go_match(&pattern, &name).unwrap_or(false);
        prop_assert_eq!(UnitGlob::new(&pattern).matches(&name), want);
    }
}

/// Go's `ErrBadPattern`.
#[derive(Debug)]
struct BadPattern;

/// Port of Go's `path.Match` over ASCII (bytes stand for runes).
fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'outer: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&b'/'));
        }
        let (t, ok) = match_chunk(chunk, name)?;
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                let (t, ok) = match_chunk(chunk, &name[i + 1..])?;
                if ok {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'outer;
                }
                i += 1;
            }
        }
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while pattern.first() == Some(&b'*') {
        pattern = &pattern[1..];
        star = true;
    }
    let mut inrange = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => inrange = true,
            b']' => inrange = false,
            b'*' if !inrange => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<(&'a [u8], bool), BadPattern> {
    let mut failed = false;
    while !chunk.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match chunk[0] {
            b'[' => {
                let mut r = 0u8;
                if !failed {
                    r = s[0];
                    s = &s[1..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&b']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let hi = if chunk[0] == b'-' {
                        let (hi, rest) = get_esc(&chunk[1..])?;
                        chunk = rest;
                        hi
                    } else {
                        lo
                    };
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
            c => {
                let c = if c == b'\\' {
                    chunk = &chunk[1..];
                    *chunk.first().ok_or(BadPattern)?
                } else {
                    c
                };
                if !failed {
                    if c != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed {
        Ok((b"", false))
    } else {
        Ok((s, true))
    }
}

fn get_esc(chunk: &[u8]) -> Result<(u8, &[u8]), BadPattern> {
    let mut chunk = chunk;
    match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(BadPattern),
        Some(b'\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return Err(BadPattern);
            }
        }
        _ => {}
    }
    let r = chunk[0];
    let rest = &chunk[1..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}
