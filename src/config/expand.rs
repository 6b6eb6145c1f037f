//! Environment expansion of the raw config text, as Go LiteFS's `ExpandEnv`: Go's `os.Expand`
//! scanner (`$NAME`, `${...}`, `$1`, `$*`, ...), with the text inside braces trimmed and
//! optionally read as a comparison that expands to `true` or `false`:
//!
//! | form | result |
//! |---|---|
//! | `$VAR`, `${VAR}`, `${ VAR }` | the value, or empty when undefined |
//! | `${VAR == 'x'}`, `${VAR != "x"}` | compare a variable with a quoted literal |
//! | `${A == B}`, `${A != B}` | compare two variables (undefined counts as empty) |
//!
//! There is no escape for a literal `$` (Go has none). A `$` followed by a character that
//! cannot start a name (space, `.`, `/`, ...) or at the very end is kept as is; `${}` and an
//! unclosed `${` are removed, as Go does.

/// Expands `text`; `lookup` returns a variable's value, `None` when undefined. Pure: the
/// caller supplies the environment (`|k| std::env::var(k).ok()` in production).
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let get = |name: &str| lookup(name).unwrap_or_default();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // `copied_to` is the start of text not yet copied. All slice boundaries below sit next to
    // ASCII bytes (`$`, braces, name characters), so they are always char boundaries.
    let mut copied_to = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 == bytes.len() {
            i += 1;
            continue;
        }
        out.push_str(&text[copied_to..i]);
        let (name, width) = shell_name(&text[i + 1..]);
        match name {
            Some(name) => out.push_str(&evaluate(name, &get)),
            // Valid syntax but no name: keep the `$` itself.
            None if width == 0 => out.push('$'),
            // Bad syntax (`${}` or an unclosed `${`): Go drops those characters.
            None => {}
        }
        i += 1 + width;
        copied_to = i;
    }
    out.push_str(&text[copied_to..]);
    out
}

/// Go's `getShellName`: the name after a `$` and how many bytes it used. `(None, 0)` means no
/// name (the `$` stays); `(None, n > 0)` means bad syntax whose `n` bytes are dropped.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match b.iter().position(|&c| c == b'}') {
            Some(1) => (None, 2),
            Some(close) => (Some(&s[1..close]), close + 1),
            None => (None, 1),
        };
    }
    if is_special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let len = b.iter().take_while(|&&c| is_word(c)).count();
    if len == 0 {
        (None, 0)
    } else {
        (Some(&s[..len]), len)
    }
}

/// Shell special parameters that Go's scanner accepts as one-character names (`$*`, `$1`).
fn is_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

/// RE2's `\w`: ASCII letters, digits and underscore.
fn is_word(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// RE2's `\s`: `[\t\n\f\r ]` (note: not `\v`).
fn is_re2_space(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// LiteFS's mapping: trim, then try `NAME op 'lit'`, `NAME op "lit"`, `NAME op NAME`, else
/// look the trimmed text up as a variable name.
fn evaluate(raw: &str, get: &impl Fn(&str) -> String) -> String {
    let text = raw.trim();
    match parse_comparison(text) {
        Some(cmp) => {
            let left = get(cmp.left);
            let right = match cmp.right {
                Operand::Literal(lit) => lit.to_string(),
                Operand::Variable(name) => get(name),
            };
            ((left == right) == cmp.equal).to_string()
        }
        None => get(text),
    }
}

struct Comparison<'a> {
    left: &'a str,
    equal: bool,
    right: Operand<'a>,
}

enum Operand<'a> {
    Literal(&'a str),
    Variable(&'a str),
}

/// Matches LiteFS's three regexes, `^(\w+)\s*(==|!=)\s*'(.*)'$`, the same with `"`, and
/// `^(\w+)\s*(==|!=)\s*(\w+)$`. `.` does not match a newline, so a quoted literal spanning
/// lines is not a comparison.
fn parse_comparison(text: &str) -> Option<Comparison<'_>> {
    let b = text.as_bytes();
    let name_len = b.iter().take_while(|&&c| is_word(c)).count();
    if name_len == 0 {
        return None;
    }
    let mut i = name_len;
    while i < b.len() && is_re2_space(b[i]) {
        i += 1;
    }
    let equal = match b.get(i..i + 2)? {
        b"==" => true,
        b"!=" => false,
        _ => return None,
    };
    i += 2;
    while i < b.len() && is_re2_space(b[i]) {
        i += 1;
    }
    let rest = &text[i..];
    let right = if let Some(lit) = quoted(rest, '\'').or_else(|| quoted(rest, '"')) {
        Operand::Literal(lit)
    } else if !rest.is_empty() && rest.bytes().all(is_word) {
        Operand::Variable(rest)
    } else {
        return None;
    };
    Some(Comparison {
        left: &text[..name_len],
        equal,
        right,
    })
}

/// The inside of `q...q` when `s` is exactly that and contains no newline.
fn quoted(s: &str, q: char) -> Option<&str> {
    let inner = s.strip_prefix(q)?.strip_suffix(q)?;
    (!inner.contains('\n')).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        let value = match name {
            "FOO" => "foo",
            "BAR" => "bar",
            "FOO2" => "foo",
            "EMPTY" => "",
            "SPACED" => " x y ",
            "HOSTNAME" => "node-1",
            "1" => "one",
            "*" => "star",
            "FLY_REGION" => "ord",
            "PRIMARY_REGION" => "ord",
            _ => return None,
        };
        Some(value.to_string())
    }

    #[test]
    fn expands_table() {
        let table: &[(&str, &str)] = &[
            // Plain forms.
            ("$FOO", "foo"),
            ("${FOO}", "foo"),
            ("${ FOO }", "foo"),
            ("${\tFOO\n}", "foo"),
            ("a${FOO}b", "afoob"),
            ("$FOO-$BAR", "foo-bar"),
            ("$FOO.$BAR", "foo.bar"),
            ("$FOOBAR", ""),
            ("${FOO}BAR", "fooBAR"),
            ("$SPACED", " x y "),
            ("dir: \"${HOSTNAME}/db\"", "dir: \"node-1/db\""),
            // Undefined and empty.
            ("$NOPE", ""),
            ("${NOPE}", ""),
            ("[$EMPTY]", "[]"),
            // Comparisons with quoted literals, both quote kinds, with and without spaces.
            ("${FOO == 'foo'}", "true"),
            ("${FOO=='foo'}", "true"),
            ("${FOO == 'bar'}", "false"),
            ("${FOO != 'bar'}", "true"),
            ("${FOO != 'foo'}", "false"),
            ("${FOO == \"foo\"}", "true"),
            ("${FOO != \"foo\"}", "false"),
            ("${ FOO  ==  \"foo\" }", "true"),
            ("${NOPE == ''}", "true"),
            ("${NOPE != \"\"}", "false"),
            ("${FOO == 'it's'}", "false"),
            ("${SPACED == ' x y '}", "true"),
            // Mismatched quotes are not an expression: the whole text is a (missing) name.
            ("${FOO == 'foo\"}", ""),
            // Two variables.
            ("${FOO == FOO2}", "true"),
            ("${FOO == BAR}", "false"),
            ("${FOO != BAR}", "true"),
            ("${FLY_REGION == PRIMARY_REGION}", "true"),
            ("${NOPE == EMPTY}", "true"),
            ("${FOO == NOPE}", "false"),
            // `$` followed by a character that cannot start a name is kept.
            ("$", "$"),
            ("a$", "a$"),
            ("$ FOO", "$ FOO"),
            ("$.x", "$.x"),
            ("cost: 5$/h", "cost: 5$/h"),
            ("$/", "$/"),
            ("$é", "$é"),
            // Special one-character names, as Go's scanner reads them.
            ("$1", "one"),
            ("$12", "one2"),
            ("${1}", "one"),
            ("$*", "star"),
            ("$$", ""),
            ("$-x", "x"),
            // Bad syntax is dropped, as Go does.
            ("a${}b", "ab"),
            ("a${FOO", "aFOO"),
            ("${", ""),
            // Nothing to expand.
            ("plain: text", "plain: text"),
            ("µ ${FOO} µ", "µ foo µ"),
        ];
        for &(input, want) in table {
            assert_eq!(expand_env(input, env), want, "input {input:?}");
        }
    }

    #[test]
    fn braces_span_lines() {
        // The scanner looks for the closing brace anywhere, newlines included.
        assert_eq!(expand_env("${FOO\n}", env), "foo");
        // A literal may not span lines, so this is a lookup of a strange name.
        assert_eq!(expand_env("${FOO == 'a\nb'}", env), "");
    }

    #[test]
    fn never_panics_on_random_text() {
        let alphabet: Vec<char> = "${}'\"=! \n\tFOOBAR_1*µé-".chars().collect();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 14) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((seed >> (i * 4)) as usize) % alphabet.len()])
                .collect();
            let _ = expand_env(&text, env);
        }
    }
}
