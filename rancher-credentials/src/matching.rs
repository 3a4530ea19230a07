//! Image matching exactly as the kubelet does it, for `matchImages` and for the
//! keys of a response's `auth` map.
//!
//! The kubelet uses one function for both (`URLsMatchStr` in
//! `pkg/credentialprovider/keyring.go`). [`matches()`] is a faithful port, so a
//! configuration can be tested here before a node ever runs it:
//!
//! 1. Both strings are prefixed with `https://` and parsed as URLs (Go's
//!    `url.Parse`); a string that does not parse matches nothing. A `?` or `#`
//!    starts the query or the fragment, so it ends the host or the path.
//! 2. The ports must be equal; no port is the empty port, so `registry.example.org`
//!    does **not** match `registry.example.org:5000/app`.
//! 3. The host names must have the same number of dot-separated labels.
//! 4. The pattern's path must be a plain string prefix of the image's path
//!    (`/team` matches `/team-b/app`).
//! 5. Each label is matched with Go's `filepath.Match`: `*` is any run of
//!    characters within the label, `[a-z]` a class, `\` escapes. Matching is
//!    case-sensitive. (`?` would be one character, but step 1 already ended the
//!    host there: `reg?stry.example.org` is the host `reg`.)
//!
//! ```
//! use rancher_credentials::matching::matches;
//!
//! assert!(matches("*.example.org", "registry.example.org/team/app"));
//! assert!(!matches("*.example.org", "example.org/team/app"));
//! assert!(!matches("registry.example.org", "registry.example.org:5000/app"));
//! assert!(matches("registry.example.org:5000", "registry.example.org:5000/app"));
//! ```

/// The host every Docker Hub credential is stored under.
pub const DOCKER_HUB_HOST: &str = "index.docker.io";

/// Whether `pattern` (a `matchImages` entry or an `auth` key) matches `image`, as
/// the kubelet decides it.
pub fn matches(pattern: &str, image: &str) -> bool {
    compare(pattern, image, true)
}

/// Whether `pattern` matches the registry `image` is on, ignoring both paths:
/// the same port, the same number of labels and every label matching.
///
/// A provider answering for a whole registry (`cacheKeyType: Registry`) returns
/// every entry for which this holds, so that the cached answer also serves the
/// registry's other repositories.
pub fn matches_registry(pattern: &str, image: &str) -> bool {
    compare(pattern, image, false)
}

fn compare(pattern: &str, image: &str, with_path: bool) -> bool {
    let (Some(glob), Some(target)) = (Url::parse(pattern), Url::parse(image)) else {
        return false;
    };
    let (glob_labels, glob_port) = glob.split_host();
    let (target_labels, target_port) = target.split_host();
    if glob_port != target_port || glob_labels.len() != target_labels.len() {
        return false;
    }
    if with_path && !target.path.starts_with(&glob.path) {
        return false;
    }
    glob_labels
        .iter()
        .zip(&target_labels)
        .all(|(glob, label)| glob_match(glob, label))
}

/// The registry part of an image: everything before the first `/`, which is the
/// kubelet's `Registry` cache key.
pub fn registry(image: &str) -> &str {
    image
        .split_once('/')
        .map_or(image, |(registry, _)| registry)
}

/// Whether the kubelet treats `image` as a Docker Hub image, for which it also
/// uses a credential stored under [`DOCKER_HUB_HOST`].
pub fn is_docker_hub(image: &str) -> bool {
    let (first, rest) = match image.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (image, None),
    };
    if first.is_empty() {
        return false;
    }
    if rest.is_none() || first == "docker.io" || first == DOCKER_HUB_HOST {
        return true;
    }
    !first.contains(['.', ':']) && first != "localhost"
}

/// Normalises a Docker config key or a registry address the way the kubelet's
/// keyring does before matching: the `https://` or `http://` scheme is dropped,
/// a leading `/v1/` or `/v2/` path is dropped, and a bare `/` path is dropped.
///
/// Returns `None` for a key that does not parse as a URL; the kubelet ignores such
/// keys.
///
/// ```
/// use rancher_credentials::matching::normalize_key;
///
/// assert_eq!(normalize_key("https://index.docker.io/v1/").as_deref(), Some("index.docker.io"));
/// assert_eq!(normalize_key("registry.example.org:5000/").as_deref(), Some("registry.example.org:5000"));
/// assert_eq!(normalize_key("http://registry.example.org/v2/team").as_deref(), Some("registry.example.org/team"));
/// ```
pub fn normalize_key(key: &str) -> Option<String> {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let url = Url::parse(rest)?;
    let mut path: &[u8] = &url.path;
    if path.starts_with(b"/v2/") || path.starts_with(b"/v1/") {
        path = &path[3..];
    }
    if path.is_empty() || path == b"/" {
        Some(url.host)
    } else {
        Some(format!("{}{}", url.host, String::from_utf8_lossy(path)))
    }
}

/// The parts of `https://<text>` that matching uses, parsed as Go's `url.Parse`
/// does.
struct Url {
    /// The host with its port, percent-decoded.
    host: String,
    /// The percent-decoded path.
    path: Vec<u8>,
}

impl Url {
    fn parse(text: &str) -> Option<Self> {
        // Go rejects ASCII control characters anywhere.
        if text.bytes().any(|b| b < b' ' || b == 0x7f) {
            return None;
        }
        // The fragment, then the query, are cut off first.
        let text = text.split_once('#').map_or(text, |(before, _)| before);
        let text = if text.ends_with('?') && text.matches('?').count() == 1 {
            &text[..text.len() - 1]
        } else {
            text.split_once('?').map_or(text, |(before, _)| before)
        };
        let (authority, path) = match text.find('/') {
            Some(slash) => (&text[..slash], &text[slash..]),
            None => (text, ""),
        };
        // Userinfo ends at the last '@'; it plays no part in matching, but Go
        // validates it.
        let host = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                if !userinfo.bytes().all(valid_userinfo_byte) {
                    return None;
                }
                unescape(userinfo.as_bytes(), Mode::Other)?;
                &authority[at + 1..]
            }
            None => authority,
        };
        let host = parse_host(host)?;
        let path = unescape(path.as_bytes(), Mode::Other)?;
        Some(Self { host, path })
    }

    /// Splits the host into labels and the port, as the kubelet's `splitURL` does
    /// with `net.SplitHostPort` (no port, or an error, leaves the port empty).
    fn split_host(&self) -> (Vec<&str>, &str) {
        let (host, port) = split_host_port(&self.host).unwrap_or((&self.host, ""));
        (host.split('.').collect(), port)
    }
}

/// Go's `parseHost`: an IPv6 literal in brackets, or a name with an optional
/// numeric port.
fn parse_host(host: &str) -> Option<String> {
    if host.starts_with('[') {
        let close = host.rfind(']')?;
        if !valid_optional_port(&host[close + 1..]) {
            return None;
        }
        // Zone identifiers ("%25eth0") are decoded differently; they never name a
        // registry, so they do not parse here.
        let literal = &host[..=close];
        if literal.contains('%') {
            return None;
        }
        let port = &host[close + 1..];
        let decoded = unescape(literal.as_bytes(), Mode::Host)?;
        return Some(format!("{}{port}", String::from_utf8_lossy(&decoded)));
    }
    if let Some(colon) = host.rfind(':')
        && !valid_optional_port(&host[colon..])
    {
        return None;
    }
    let decoded = unescape(host.as_bytes(), Mode::Host)?;
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

/// `""`, or `:` followed by digits only.
fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    }
}

/// Go's `net.SplitHostPort`.
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    let last_colon = hostport.rfind(':')?;
    let (host, from_open, from_close) = if hostport.starts_with('[') {
        let end = hostport.find(']')?;
        if end + 1 != last_colon {
            return None;
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..last_colon];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if hostport[from_open..].contains('[') || hostport[from_close..].contains(']') {
        return None;
    }
    Some((host, &hostport[last_colon + 1..]))
}

fn valid_userinfo_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b':'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
                | b'@'
        )
        || b >= 0x80
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Other,
}

/// Go's `url.unescape`: `%XX` sequences decoded, bad escapes rejected, and in a
/// host only the characters a host may hold.
fn unescape(input: &[u8], mode: Mode) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            let hi = hex(*input.get(i + 1)?)?;
            let lo = hex(*input.get(i + 2)?)?;
            // A host may only escape non-ASCII bytes (and "%25").
            if mode == Mode::Host && hi < 8 && &input[i..i + 3] != b"%25" {
                return None;
            }
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        if mode == Mode::Host && b < 0x80 && !host_byte_allowed(b) {
            return None;
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The ASCII bytes Go's `url.Parse` accepts unescaped in a host.
fn host_byte_allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
                | b'-'
                | b'.'
                | b'_'
                | b'~'
        )
}

/// Go's `filepath.Match` on Unix. A malformed pattern matches nothing.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    go_match(&pattern, &name).unwrap_or(false)
}

/// A malformed pattern.
struct BadPattern;

const SEPARATOR: char = '/';

fn go_match(mut pattern: &[char], mut name: &[char]) -> Result<bool, BadPattern> {
    'outer: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing star matches the rest, unless it holds a separator.
            return Ok(!name.contains(&SEPARATOR));
        }
        match match_chunk(chunk, name) {
            Ok(Some(t)) if t.is_empty() || !pattern.is_empty() => {
                name = t;
                continue;
            }
            Err(bad) => return Err(bad),
            _ => {}
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != SEPARATOR {
                match match_chunk(chunk, &name[i + 1..]) {
                    Ok(Some(t)) => {
                        if pattern.is_empty() && !t.is_empty() {
                            i += 1;
                            continue;
                        }
                        name = t;
                        continue 'outer;
                    }
                    Ok(None) => {}
                    Err(bad) => return Err(bad),
                }
                i += 1;
            }
        }
        // No match; the rest of the pattern must still be well-formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, &[])?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

fn scan_chunk(mut pattern: &[char]) -> (bool, &[char], &[char]) {
    let mut star = false;
    while pattern.first() == Some(&'*') {
        pattern = &pattern[1..];
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '\\' if i + 1 < pattern.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Matches one chunk at the start of `s`; `Ok(Some(rest))` on a match.
fn match_chunk<'a>(
    mut chunk: &[char],
    mut s: &'a [char],
) -> Result<Option<&'a [char]>, BadPattern> {
    let mut failed = false;
    while !chunk.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match chunk[0] {
            '[' => {
                let mut r = '\0';
                if !failed {
                    r = s[0];
                    s = &s[1..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_escaped(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == '-' {
                        let (high, rest) = get_escaped(&chunk[1..])?;
                        hi = high;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if s[0] == SEPARATOR {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
            c => {
                let literal = if c == '\\' {
                    chunk = &chunk[1..];
                    *chunk.first().ok_or(BadPattern)?
                } else {
                    c
                };
                if !failed {
                    if literal != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// One possibly escaped character of a class; the class must go on after it.
fn get_escaped(mut chunk: &[char]) -> Result<(char, &[char]), BadPattern> {
    match chunk.first() {
        None | Some('-') | Some(']') => return Err(BadPattern),
        Some('\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return Err(BadPattern);
            }
        }
        Some(_) => {}
    }
    let c = chunk[0];
    let rest = &chunk[1..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((c, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of `credential-provider.md` A.4: the kubelet's own test cases
    /// (`TestUrlsMatch`, `TestDockerKeyringLookup`) and cases derived from its code.
    const TABLE: &[(u32, &str, &str, bool)] = &[
        (1, "*.kubernetes.io", "prefix.kubernetes.io", true),
        (2, "prefix.*.io", "prefix.kubernetes.io", true),
        (3, "prefix.kubernetes.*", "prefix.kubernetes.io", true),
        (4, "*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
        (5, "*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true),
        (6, "prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true),
        (
            7,
            "*.kubernetes.io:1111/blah",
            "prefix.kubernetes.io:1111/blah",
            true,
        ),
        (
            8,
            "prefix.*.io:1111/foo",
            "prefix.kubernetes.io:1111/foo/bar",
            true,
        ),
        (9, "*.kubernetes.io", "kubernetes.io", false),
        (10, "*.*.kubernetes.io", "prefix.kubernetes.io", false),
        (11, "kubernetes.io", "kubernetes.com", false),
        (12, "k*.io", "quay.io", false),
        (
            13,
            "*.kubernetes.io:1234/blah",
            "prefix.kubernetes.io:1111/blah",
            false,
        ),
        (
            14,
            "prefix.*.io/foo",
            "prefix.kubernetes.io:1111/foo/bar",
            false,
        ),
        (15, "bar.example.com/pong", "bar.example.com/pongz", true),
        (16, "bar.example.com", "foo.example.com", false),
        (17, "*.io", "k8s.gcr.io/pause", false),
        (18, "registry.io", "registry.io:5000/app", false),
        (19, "registry.io:5000", "registry.io/app", false),
        (20, "docker.io", "docker.io/library/nginx", true),
        (21, "*", "localhost/app", true),
        (22, "*", "docker.io/library/nginx", false),
        // Row 23 of the reference says "yes", but the kubelet prefixes the pattern
        // with https:// and parses it as a URL, where `?` starts the query: the
        // pattern's host is "reg", one label against two. See
        // `question_mark_ends_the_host` below.
        (23, "reg?stry.io", "registry.io/app", false),
        (24, "Registry.IO", "registry.io/app", false),
        (25, "registry.io/team", "registry.io/team-b/app", true),
    ];

    #[test]
    fn the_reference_table() {
        for &(row, pattern, image, expected) in TABLE {
            assert_eq!(
                matches(pattern, image),
                expected,
                "row {row}: {pattern:?} against {image:?}"
            );
        }
    }

    #[test]
    fn question_mark_ends_the_host() {
        // What the pattern really is once parsed: host "reg", query "stry.io".
        assert!(matches("reg?stry.io", "reg/app"));
        // `?` is one character where it survives parsing: in a glob label it
        // cannot, so it only works through glob_match directly.
        assert!(glob_match("reg?stry", "registry"));
        assert!(!glob_match("reg?stry", "regstry"));
    }

    #[test]
    fn globs_follow_filepath_match() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[a-c]x", "dx"));
        assert!(glob_match("[^a-c]x", "dx"));
        assert!(glob_match(r"a\*", "a*"));
        assert!(!glob_match(r"a\*", "ab"));
        // Malformed patterns match nothing.
        assert!(!glob_match("[", "["));
        assert!(!glob_match("[a-", "a"));
        assert!(!glob_match("a\\", "a"));
        assert!(!glob_match("[]", "]"));
    }

    #[test]
    fn classes_in_labels() {
        assert!(matches("reg[0-9].example.org", "reg1.example.org/app"));
        assert!(!matches("reg[0-9].example.org", "rega.example.org/app"));
    }

    #[test]
    fn ports_must_be_equal() {
        assert!(matches(
            "registry.example.org:5000",
            "registry.example.org:5000/a"
        ));
        assert!(!matches(
            "registry.example.org:5000",
            "registry.example.org:5001/a"
        ));
        assert!(matches("*.example.org:5000", "registry.example.org:5000/a"));
        // Globs are not supported in ports: the pattern does not even parse.
        assert!(!matches(
            "registry.example.org:*",
            "registry.example.org:5000/a"
        ));
        // An empty port equals no port.
        assert!(matches("registry.example.org:", "registry.example.org/a"));
    }

    #[test]
    fn unparsable_strings_match_nothing() {
        for bad in [
            "registry example.org",
            "registry.example.org:abc",
            "registry\u{7f}.example.org",
            "bad%zz.example.org",
            "registry.example.org/%zz",
            "reg|stry.example.org",
        ] {
            assert!(!matches(bad, bad), "{bad:?}");
            assert!(!matches("*", bad), "{bad:?}");
        }
    }

    #[test]
    fn paths_are_percent_decoded_before_the_prefix_check() {
        assert!(matches(
            "registry.example.org/team",
            "registry.example.org/t%65am/app"
        ));
    }

    #[test]
    fn ipv6_hosts() {
        assert!(matches("[fd00::1]:5000", "[fd00::1]:5000/app"));
        assert!(!matches("[fd00::1]:5000", "[fd00::1]:5001/app"));
    }

    #[test]
    fn registry_matching_ignores_paths() {
        assert!(matches_registry(
            "registry.example.org/team",
            "registry.example.org/other/app"
        ));
        assert!(matches_registry(
            "*.example.org",
            "registry.example.org/app"
        ));
        assert!(!matches_registry(
            "registry.example.org",
            "registry.example.org:5000/app"
        ));
        assert!(!matches_registry(
            "registry.example.net",
            "registry.example.org/app"
        ));
    }

    #[test]
    fn registry_is_everything_before_the_first_slash() {
        assert_eq!(
            registry("registry.example.org:5000/team/app"),
            "registry.example.org:5000"
        );
        assert_eq!(registry("docker.io/library/nginx"), "docker.io");
        assert_eq!(registry("localhost"), "localhost");
    }

    #[test]
    fn docker_hub_images() {
        for image in [
            "nginx",
            "library/nginx",
            "docker.io/library/nginx",
            "index.docker.io/x/y",
            "team/app",
        ] {
            assert!(is_docker_hub(image), "{image}");
        }
        for image in [
            "registry.example.org/app",
            "localhost/app",
            "host:5000/app",
            "",
            "/app",
        ] {
            assert!(!is_docker_hub(image), "{image}");
        }
    }

    #[test]
    fn keys_are_normalised_like_the_keyring() {
        let cases = [
            ("https://index.docker.io/v1/", "index.docker.io"),
            ("http://registry.example.org", "registry.example.org"),
            ("registry.example.org:5000", "registry.example.org:5000"),
            ("registry.example.org/", "registry.example.org"),
            ("registry.example.org/v2/", "registry.example.org"),
            ("registry.example.org/v2/team", "registry.example.org/team"),
            ("registry.example.org/team/", "registry.example.org/team/"),
            ("*.example.org", "*.example.org"),
        ];
        for (key, normalised) in cases {
            assert_eq!(normalize_key(key).as_deref(), Some(normalised), "{key}");
        }
        assert_eq!(normalize_key("registry.example.org:abc"), None);
    }
}
