//! `.dockerignore` as BuildKit reads it (moby's `patternmatcher` and its `ignorefile`), so the
//! input hash covers exactly the files a build is sent — no more (a stale image rebuilt for a
//! file the build never sees), no less (a changed file the build sees, and an image reused).
//!
//! Not a glob library's dialect: `{a,b}` is literal text here, not an alternation; `*` and
//! `?` stay within one path segment, `**` crosses any number; `[a-z]` and `[^a-z]` are
//! classes; `\` escapes; a leading `/` is dropped; `!` re-includes, and the last pattern that
//! matches a path or one of its parent directories decides. A pattern Go's `filepath.Match`
//! would refuse fails the build in BuildKit, and is an error naming its file and line here.
//! buildah and podman read their ignore files with a fork of the same code.

use regex::Regex;

/// One pattern, compiled the way `patternmatcher.Pattern.compile` does.
#[derive(Debug)]
struct Pattern {
    /// `!pattern`: an exception that re-includes what it matches.
    exception: bool,
    cleaned: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// No wildcard: the path is the pattern.
    Exact,
    /// `dir/**`: the path starts with `dir/`.
    Prefix,
    /// `**/name` (no other wildcard): the path ends with `/name`, or is `name`.
    Suffix,
    Regex(Regex),
}

/// A pattern BuildKit refuses: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: `{pattern}` is not a pattern BuildKit accepts: {why}")]
pub struct BadPattern {
    pub line: usize,
    pub pattern: String,
    pub why: String,
}

/// The rules of one ignore file, in order.
#[derive(Debug, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Read ignore-file text as `ignorefile.ReadAll` and `patternmatcher.New` do: a UTF-8 BOM
    /// dropped; a line starting with `#` is a comment (before trimming: ` #x` is a pattern);
    /// blank lines skipped; `!` marks an exception; each pattern cleaned as a path, its
    /// leading `/` dropped.
    pub fn parse(text: &str) -> Result<DockerIgnore, BadPattern> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            let bad = |why: &str| BadPattern {
                line: i + 1,
                pattern: trimmed.to_owned(),
                why: why.to_owned(),
            };
            let (exception, rest) = match trimmed.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, trimmed),
            };
            if exception && rest.is_empty() {
                return Err(bad("an exception needs a pattern after `!`"));
            }
            let mut cleaned = clean(rest);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            validate(&cleaned).map_err(|why| bad(&why))?;
            let kind = compile(&cleaned).map_err(|why| bad(&why))?;
            patterns.push(Pattern {
                exception,
                cleaned,
                kind,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether `rel` (a `/`-separated path inside the context) is left out of the build:
    /// `MatchesOrParentMatches`.
    pub fn excluded(&self, rel: &str) -> bool {
        let parent = dir(rel);
        let parents: Vec<&str> = if parent == "." {
            Vec::new()
        } else {
            parent
                .match_indices('/')
                .map(|(i, _)| &parent[..i])
                .chain(std::iter::once(parent.as_str()))
                .collect()
        };
        let mut matched = false;
        for p in &self.patterns {
            // An exception can only change a match, a pattern only a non-match.
            if p.exception != matched {
                continue;
            }
            let hit = p.matches(rel) || parents.iter().any(|d| p.matches(d));
            if hit {
                matched = !p.exception;
            }
        }
        matched
    }

    /// Whether any pattern is an exception (a directory left out may then hold a file that
    /// is sent, so it must be walked).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            Kind::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }
}

/// `patternmatcher.Pattern.compile`: the pattern as a regular expression, or one of the three
/// cheaper forms when it has no other wildcard.
fn compile(pattern: &str) -> Result<Kind, String> {
    #[derive(PartialEq)]
    enum Ty {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut ty = Ty::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    // A trailing `**` takes everything, as in .gitignore.
                    if ty == Ty::Exact {
                        ty = Ty::Prefix;
                    } else {
                        re.push_str(".*");
                        ty = Ty::Regex;
                    }
                } else {
                    // Any number of segments, none included.
                    re.push_str("(.*/)?");
                    ty = Ty::Regex;
                }
                if first {
                    ty = Ty::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                ty = Ty::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                ty = Ty::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    re.push('\\');
                    re.push(next);
                    ty = Ty::Regex;
                }
                None => re.push_str("\\\\"),
            },
            '[' | ']' => {
                re.push(ch);
                ty = Ty::Regex;
            }
            c => re.push(c),
        }
        first = false;
    }
    Ok(match ty {
        Ty::Exact => Kind::Exact,
        Ty::Prefix => Kind::Prefix,
        Ty::Suffix => Kind::Suffix,
        Ty::Regex => {
            re.push('$');
            Kind::Regex(Regex::new(&re).map_err(|e| {
                e.to_string()
                    .lines()
                    .last()
                    .unwrap_or("not a regular expression")
                    .to_owned()
            })?)
        }
    })
}

/// What Go's `filepath.Match` refuses (`ErrBadPattern`), which BuildKit checks each pattern
/// against: an unclosed `[`, an empty class, a class starting with `-` or `]`, a range without
/// its end, a `\` with nothing after it.
fn validate(pattern: &str) -> Result<(), String> {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => {
                return Err("a `\\` with nothing after it".to_owned());
            }
            '[' => {
                if chars.peek() == Some(&'^') {
                    chars.next();
                }
                let mut ranges = 0;
                loop {
                    match chars.peek() {
                        None => return Err("a `[` without its `]`".to_owned()),
                        Some(']') if ranges > 0 => {
                            chars.next();
                            break;
                        }
                        _ => {}
                    }
                    class_char(&mut chars)?;
                    if chars.peek() == Some(&'-') {
                        chars.next();
                        class_char(&mut chars)?;
                    }
                    ranges += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One character of a class (`getEsc`): not `-` or `]` unescaped, present after a `\`.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<(), String> {
    match chars.next() {
        None => Err("a `[` without its `]`".to_owned()),
        Some('-') | Some(']') => {
            Err("a class with `-` or `]` where a character belongs".to_owned())
        }
        Some('\\') => chars
            .next()
            .map(|_| ())
            .ok_or_else(|| "a `\\` with nothing after it".to_owned()),
        Some(_) => Ok(()),
    }
}

/// Go's `filepath.Clean` (on `/`): `.` and empty elements dropped, `..` resolved where it can
/// be, a leading `..` kept when the path is relative.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    let mut fixed = 0;
    for el in path.split('/') {
        match el {
            "" | "." => {}
            ".." => {
                if out.len() > fixed {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                    fixed = out.len();
                }
            }
            e => out.push(e),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Dir`: everything before the last `/`, cleaned.
fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean(&path[..=i]),
        None => ".".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(pattern: &str, path: &str) -> bool {
        DockerIgnore::parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .excluded(path)
    }

    /// The cases of moby/patternmatcher's own `TestMatches`: one pattern, one path, whether
    /// BuildKit leaves the path out.
    #[test]
    fn buildkit_patternmatcher_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(pattern, path, want)| one(pattern, path) != *want)
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// `TestMultiplePatterns` and the exception cases: the last match decides.
    #[test]
    fn exceptions_in_order() {
        let cases: &[(&str, &str, bool)] = &[
            ("**\n!util/docker/web", "util/docker/web/foo", false),
            (
                "**\n!util/docker/web\nutil/docker/web/foo",
                "util/docker/web/foo",
                true,
            ),
            (
                "**\n!dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            ("docs\n!docs/README.md", "docs/README.md", false),
            ("docs\n!docs/README.md", "docs/other.md", true),
            (
                "*.md\n!README*.md\nREADME-secret.md",
                "README-secret.md",
                true,
            ),
            ("*.md\n!README*.md\nREADME-secret.md", "README.md", false),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(patterns, path, want)| one(patterns, path) != *want)
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// What a glob library would read otherwise: `{a,b}` is text, not an alternation; a
    /// leading `/` and `./` go; `..` stays at the front; `#` is a comment only first on its
    /// line; `*` stays in its segment.
    #[test]
    fn buildkit_not_glob_dialect() {
        assert!(!one("{a,b}.txt", "a.txt"));
        assert!(one("{a,b}.txt", "{a,b}.txt"));
        assert!(one("/node_modules", "node_modules/x/y.js"));
        assert!(one("./build", "build/out"));
        assert!(one("a/../b", "b"));
        assert!(!one("*.log", "sub/x.log"));
        assert!(one("# not a comment\n #x", "#x"));
        assert!(!one("# a comment", "# a comment"));
        assert!(one("\u{feff}secret", "secret"));
        assert!(
            one("data  \r\n", "data/big.bin"),
            "trailing space and CRLF trimmed"
        );
        assert!(
            !one("[!a]x", "bx"),
            "`!` is no negation in a class: `[!a]` is `!` or `a`"
        );
        assert!(one("[!a]x", "ax"));
    }

    #[test]
    fn a_pattern_buildkit_refuses_is_an_error_naming_its_line() {
        for (text, line) in [
            ("ok\n[abc", 2),
            ("a\nb\n!", 3),
            ("x\\", 1),
            ("[]a]", 1),
            ("[a-]", 1),
            ("[-a]", 1),
        ] {
            let e = DockerIgnore::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
        }
        assert!(DockerIgnore::parse("[a-c]\n[^x]\n\\[literal\\]\n").is_ok());
    }

    #[test]
    fn clean_is_go_filepath_clean() {
        for (path, want) in [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("a/", "a"),
            ("./a//b/.", "a/b"),
            ("../a", "../a"),
            ("a/../../b", "../b"),
            ("/../a", "/a"),
            ("a/b/../c", "a/c"),
        ] {
            assert_eq!(clean(path), want, "{path}");
        }
    }
}
