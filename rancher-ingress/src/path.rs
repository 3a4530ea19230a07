//! Ingress paths: validation and the matching semantics of each path type.
//!
//! - `Exact` matches the whole request path, case-sensitively.
//! - `Prefix` matches element by element on `/`: `/foo` matches `/foo`, `/foo/`
//!   and `/foo/bar`, never `/foobar`. A trailing slash is ignored on either side.
//! - `ImplementationSpecific` behaves as `Prefix` here.
//!
//! Paths reach load-balancer configuration files, so only a conservative character
//! set is accepted: letters, digits and `-._~/%:@!&=,`, with `%` followed by two hex
//! digits. Whitespace, control characters, `#`, quotes, `;`, and dot segments are
//! rejected; an `ImplementationSpecific` path that looks like a regular expression
//! is rejected with its own message, since regex paths are not supported.

use std::fmt;

/// The longest path accepted.
pub const MAX_LEN: usize = 1024;

/// Why a path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path does not start with `/`.
    #[error("path {0:?} must start with '/'")]
    NotAbsolute(String),
    /// The path is longer than [`MAX_LEN`].
    #[error("path is longer than {MAX_LEN} characters")]
    TooLong,
    /// The path has a character outside the accepted set.
    #[error(
        "path {path:?} contains {found:?}, which is not allowed (allowed: letters, digits and -._~/%:@!&=,)"
    )]
    Character {
        /// The path.
        path: String,
        /// The first offending character.
        found: char,
    },
    /// A `%` is not followed by two hex digits.
    #[error("path {0:?} has a '%' not followed by two hex digits")]
    Percent(String),
    /// The path has a `.` or `..` segment.
    #[error("path {0:?} contains a '.' or '..' segment")]
    DotSegment(String),
    /// An `ImplementationSpecific` path that looks like a regular expression.
    #[error(
        "path {0:?} looks like a regular expression; ImplementationSpecific paths are prefixes here and regular expressions are not supported"
    )]
    Regex(String),
    /// An unknown `pathType`.
    #[error("unknown path type {0:?} (expected Exact, Prefix or ImplementationSpecific)")]
    PathType(String),
}

/// Result of parsing a path.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a path matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathKind {
    /// The whole request path equals the rule's path.
    Exact,
    /// The request path starts with the rule's path, element by element.
    Prefix,
}

impl PathKind {
    /// The kind for an Ingress `pathType`; `ImplementationSpecific` is `Prefix`.
    pub fn from_path_type(path_type: &str) -> Result<Self> {
        match path_type {
            "Exact" => Ok(Self::Exact),
            "Prefix" | "ImplementationSpecific" => Ok(Self::Prefix),
            other => Err(Error::PathType(other.to_owned())),
        }
    }
}

/// A validated path with its match kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathRule {
    kind: PathKind,
    path: String,
}

impl PathRule {
    /// Validates `path` for `path_type` (`Exact`, `Prefix` or
    /// `ImplementationSpecific`). An empty path means `/`.
    pub fn parse(path: &str, path_type: &str) -> Result<Self> {
        let kind = PathKind::from_path_type(path_type)?;
        let path = if path.is_empty() { "/" } else { path };
        if path_type == "ImplementationSpecific" && looks_like_regex(path) {
            return Err(Error::Regex(path.to_owned()));
        }
        validate(path)?;
        let path = match kind {
            // A trailing slash is ignored for prefixes: store the canonical form.
            PathKind::Prefix if path.len() > 1 => path.trim_end_matches('/'),
            _ => path,
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(Self {
            kind,
            path: path.to_owned(),
        })
    }

    /// A prefix rule for `/`, which matches every path.
    pub fn root() -> Self {
        Self {
            kind: PathKind::Prefix,
            path: "/".to_owned(),
        }
    }

    /// How this path matches.
    pub fn kind(&self) -> PathKind {
        self.kind
    }

    /// The path; for a prefix, without a trailing slash (except `/` itself).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether a request path (without query string) matches.
    pub fn matches(&self, request_path: &str) -> bool {
        match self.kind {
            PathKind::Exact => request_path == self.path,
            PathKind::Prefix => {
                self.path == "/"
                    || request_path
                        .strip_prefix(self.path.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }

    /// Precedence among matching rules: longer paths first, then `Exact` before
    /// `Prefix`. Greater is preferred.
    pub fn precedence(&self) -> (usize, u8) {
        (
            self.path.len(),
            match self.kind {
                PathKind::Exact => 1,
                PathKind::Prefix => 0,
            },
        )
    }
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
        };
        write!(f, "{kind} {}", self.path)
    }
}

fn looks_like_regex(path: &str) -> bool {
    path.chars().any(|c| {
        matches!(
            c,
            '^' | '$' | '*' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '?' | '+' | '\\'
        )
    })
}

fn validate(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(Error::NotAbsolute(path.to_owned()));
    }
    if path.len() > MAX_LEN {
        return Err(Error::TooLong);
    }
    let bytes = path.as_bytes();
    for (i, c) in path.char_indices() {
        let allowed = c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '.' | '_' | '~' | '/' | '%' | ':' | '@' | '!' | '&' | '=' | ','
            );
        if !allowed {
            return Err(Error::Character {
                path: path.to_owned(),
                found: c,
            });
        }
        if c == '%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(Error::Percent(path.to_owned()));
        }
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(Error::DotSegment(path.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(path: &str) -> PathRule {
        PathRule::parse(path, "Prefix").unwrap()
    }
    fn exact(path: &str) -> PathRule {
        PathRule::parse(path, "Exact").unwrap()
    }

    #[test]
    fn the_documented_path_table() {
        // (rule, request, matches) from the Ingress documentation's examples.
        let cases = [
            (prefix("/"), "/anything/at/all", true),
            (exact("/foo"), "/foo", true),
            (exact("/foo"), "/bar", false),
            (exact("/foo"), "/foo/", false),
            (exact("/foo/"), "/foo", false),
            (prefix("/foo"), "/foo", true),
            (prefix("/foo"), "/foo/", true),
            (prefix("/foo/"), "/foo", true),
            (prefix("/foo/"), "/foo/", true),
            (prefix("/aaa/bb"), "/aaa/bbb", false),
            (prefix("/aaa/bbb"), "/aaa/bbb", true),
            (prefix("/aaa/bbb/"), "/aaa/bbb", true),
            (prefix("/aaa/bbb"), "/aaa/bbb/", true),
            (prefix("/aaa/bbb"), "/aaa/bbb/ccc", true),
            (prefix("/aaa/bbb"), "/aaa/bbbxyz", false),
            (prefix("/foo"), "/foobar", false),
            (prefix("/foo"), "/Foo", false),
        ];
        for (rule, request, expected) in cases {
            assert_eq!(rule.matches(request), expected, "{rule} vs {request}");
        }
    }

    #[test]
    fn implementation_specific_is_a_prefix() {
        let rule = PathRule::parse("/foo", "ImplementationSpecific").unwrap();
        assert_eq!(rule, prefix("/foo"));
        assert!(rule.matches("/foo/bar"));
        assert!(!rule.matches("/foobar"));
    }

    #[test]
    fn longer_paths_win_then_exact_beats_prefix() {
        assert!(prefix("/aaa/bbb").precedence() > prefix("/aaa").precedence());
        assert!(exact("/foo").precedence() > prefix("/foo").precedence());
        assert!(prefix("/foo/").precedence() == prefix("/foo").precedence());
    }

    #[test]
    fn rejects_injection_and_regex() {
        for (path, path_type) in [
            ("/foo bar", "Prefix"),
            ("/foo\nbar", "Prefix"),
            ("/foo\r", "Exact"),
            ("/foo#bar", "Prefix"),
            ("/foo\"", "Prefix"),
            ("/foo'", "Prefix"),
            ("/foo;bar", "Exact"),
            ("/foo%zz", "Prefix"),
            ("/foo/../etc", "Prefix"),
            ("foo", "Prefix"),
            ("/foo\t", "Prefix"),
            ("/é", "Prefix"),
        ] {
            assert!(
                PathRule::parse(path, path_type).is_err(),
                "{path:?} accepted"
            );
        }
        assert!(matches!(
            PathRule::parse("/api/.*", "ImplementationSpecific"),
            Err(Error::Regex(_))
        ));
        assert!(matches!(
            PathRule::parse("^/api$", "ImplementationSpecific"),
            Err(Error::Regex(_))
        ));
        assert!(matches!(
            PathRule::parse("/x", "Regex"),
            Err(Error::PathType(_))
        ));
        assert!(PathRule::parse("/v1.2/a-b_c~d/%2F:@!&=,", "Exact").is_ok());
    }
}
