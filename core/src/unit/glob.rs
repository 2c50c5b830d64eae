//! Unit-name globs for `Conflicts=` and `Replaces=`, with Go `path.Match` semantics.
//!
//! fleet matches these with Go's `path.Match`; we compile them with `globset` once per
//! pattern. globset's syntax is a superset with different meanings in places (`{a,b}`
//! alternation, `[!x]` negation, `**`, no escapes inside classes), so a Go pattern is
//! first translated into a globset pattern that means exactly the same thing. A pattern
//! Go would reject (`ErrBadPattern`) matches nothing, as fleet ignores that error.

use std::fmt;

use globset::{GlobBuilder, GlobMatcher};

/// A compiled glob over unit names.
#[derive(Clone)]
pub struct UnitGlob {
    pattern: String,
    /// `None` for a malformed pattern, or one no name can match (`[z-a]`).
    matcher: Option<Matcher>,
}

/// Most fleet globs are a unit name or `prefix*suffix`; those skip globset, whose
/// regex compilation costs ~15 µs a pattern (the scheduler re-reads requirements).
#[derive(Clone)]
enum Matcher {
    Exact(String),
    /// One `*`: the name starts and ends with these and the middle has no `/`.
    Star(String, String),
    Glob(GlobMatcher),
}

impl PartialEq for UnitGlob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}
impl Eq for UnitGlob {}

impl fmt::Debug for UnitGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnitGlob({:?})", self.pattern)
    }
}

impl fmt::Display for UnitGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl UnitGlob {
    /// Compiles a pattern; a malformed pattern matches nothing (as Go's path.Match errors).
    pub fn new(pattern: &str) -> UnitGlob {
        let matcher = simple(pattern).or_else(|| {
            let p = translate(pattern)?;
            let glob = GlobBuilder::new(&p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .ok()?;
            Some(Matcher::Glob(glob.compile_matcher()))
        });
        UnitGlob {
            pattern: pattern.to_string(),
            matcher,
        }
    }

    /// The pattern as written in the unit (what fleet prints in its messages).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern is well-formed Go `path.Match` syntax and can match a name.
    pub fn is_valid(&self) -> bool {
        self.matcher.is_some()
    }

    /// Whether the glob matches a unit name.
    pub fn matches(&self, name: &str) -> bool {
        match &self.matcher {
            None => false,
            Some(Matcher::Exact(s)) => name == s,
            Some(Matcher::Star(pre, suf)) => {
                name.len() >= pre.len() + suf.len()
                    && name.starts_with(pre.as_str())
                    && name.ends_with(suf.as_str())
                    && !name[pre.len()..name.len() - suf.len()].contains('/')
            }
            Some(Matcher::Glob(m)) => m.is_match(name),
        }
    }
}

/// The fast path: patterns without `?`, `[`, `\\` and with at most one run of `*`.
fn simple(pattern: &str) -> Option<Matcher> {
    if pattern.contains(['?', '[', '\\']) {
        return None;
    }
    match pattern.split_once('*') {
        None => Some(Matcher::Exact(pattern.to_string())),
        Some((pre, rest)) => {
            let suf = rest.trim_start_matches('*');
            (!suf.contains('*')).then(|| Matcher::Star(pre.to_string(), suf.to_string()))
        }
    }
}

/// Characters globset treats specially outside a class; escaped when Go means them
/// literally.
const GLOBSET_SPECIAL: &str = "?*[]{},\\!^-";

/// Translates Go `path.Match` syntax into globset syntax with the same meaning, or
/// `None` if Go would reject the pattern or nothing can match it.
fn translate(go: &str) -> Option<String> {
    let mut out = String::with_capacity(go.len() + 8);
    let mut chars = go.chars().peekable();
    let mut after_star = false;
    while let Some(c) = chars.next() {
        let star = c == '*';
        match c {
            // Runs of `*` mean one `*` in Go; `**` would be recursive in globset.
            '*' if after_star => {}
            '*' => out.push('*'),
            '?' => out.push('?'),
            '\\' => push_literal(&mut out, chars.next()?),
            '[' => push_class(&mut out, parse_go_class(&mut chars)?)?,
            c => push_literal(&mut out, c),
        }
        after_star = star;
    }
    Some(out)
}

fn push_literal(out: &mut String, c: char) {
    if GLOBSET_SPECIAL.contains(c) {
        out.push('\\');
    }
    out.push(c);
}

/// A Go character class: `negated` and inclusive rune ranges (possibly empty ones).
struct GoClass {
    negated: bool,
    ranges: Vec<(char, char)>,
}

/// Parses a Go class after its `[`, with Go's errors: a range endpoint may not be a
/// bare `-` or `]`, `\` escapes the next rune, and the class must close.
fn parse_go_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<GoClass> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
            return Some(GoClass { negated, ranges });
        }
        let lo = go_class_char(chars)?;
        let hi = if chars.next_if_eq(&'-').is_some() {
            go_class_char(chars)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

/// Go's `getEsc`: one (possibly escaped) class rune, which must be followed by more.
fn go_class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    let c = match chars.next()? {
        '-' | ']' => return None,
        '\\' => chars.next()?,
        c => c,
    };
    chars.peek()?;
    Some(c)
}

/// Characters whose meaning inside a globset class depends on their position.
const CLASS_SPECIAL: [char; 4] = ['!', '-', ']', '^'];

/// Writes a Go class as a globset class. Inside a globset class `]` is literal only
/// first, `-` only first or last, `!`/`^` only when not first, and `\` does not
/// escape; so ranges are split around those characters, which are then placed where
/// they are literal. Returns `None` if the class can match nothing.
fn push_class(out: &mut String, class: GoClass) -> Option<()> {
    let mut plain: Vec<(char, char)> = Vec::new();
    let mut special = [false; CLASS_SPECIAL.len()];
    for (lo, hi) in class.ranges {
        if lo > hi {
            continue; // Go accepts `[z-a]`; it matches nothing.
        }
        let mut start = lo;
        for (i, &s) in CLASS_SPECIAL.iter().enumerate() {
            if s < start || s > hi {
                continue;
            }
            special[i] = true;
            if s > start {
                plain.push((start, prev_char(s)));
            }
            start = next_char(s);
        }
        if start <= hi {
            plain.push((start, hi));
        }
    }
    let [bang, dash, bracket, caret] = special;
    if plain.is_empty() && !dash && !bracket {
        match (class.negated, bang, caret) {
            (true, false, false) => out.push('?'),
            (false, false, false) => return None,
            (false, true, false) => push_literal(out, '!'),
            (false, false, true) => push_literal(out, '^'),
            (false, true, true) => out.push_str("{\\!,\\^}"),
            (true, _, _) => push_class_body(out, true, &[], bang, false, false, caret),
        }
        return Some(());
    }
    push_class_body(out, class.negated, &plain, bang, dash, bracket, caret);
    Some(())
}

/// Emits `[`, an optional `!`, then `]` or `-` first (literal there), the plain
/// ranges, `!`/`^`, a trailing `-` if `]` took the first place, and `]`. The caller
/// guarantees something non-`!`/`^` comes first unless the class is negated.
fn push_class_body(
    out: &mut String,
    negated: bool,
    plain: &[(char, char)],
    bang: bool,
    dash: bool,
    bracket: bool,
    caret: bool,
) {
    out.push('[');
    if negated {
        out.push('!');
    }
    if bracket {
        out.push(']');
    } else if dash {
        out.push('-');
    }
    for &(lo, hi) in plain {
        out.push(lo);
        if hi != lo {
            out.push('-');
            out.push(hi);
        }
    }
    if bang {
        out.push('!');
    }
    if caret {
        out.push('^');
    }
    if bracket && dash {
        out.push('-');
    }
    out.push(']');
}

// The class specials are ASCII punctuation, so their neighbours are plain chars.
fn prev_char(c: char) -> char {
    char::from_u32(c as u32 - 1).unwrap_or(c)
}

fn next_char(c: char) -> char {
    char::from_u32(c as u32 + 1).unwrap_or(c)
}

#[cfg(test)]
mod tests;
