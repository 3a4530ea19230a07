//! Ingress annotations, parsed into typed values.
//!
//! Every key has a prefixed form (`ingress.rancher.io/...`) and the bare form the
//! original Rancher controller read (`scale`, `http.port`, ...). When both are set
//! they must agree. Every value is parsed strictly; a bad value is a
//! [`FieldError`] naming the annotation, and the Ingress is not programmed.

use std::collections::BTreeMap;

use crate::{
    host,
    model::{FieldError, Placement, Stickiness},
};

/// The prefix of this controller's annotations.
pub const PREFIX: &str = "ingress.rancher.io/";
/// Number of load balancer instances, each on its own host (default 1; `0` runs none).
pub const SCALE: &str = "ingress.rancher.io/scale";
/// The original bare key for [`SCALE`].
pub const LEGACY_SCALE: &str = "scale";
/// The HTTP listener's port (default 80).
pub const HTTP_PORT: &str = "ingress.rancher.io/http-port";
/// The original bare key for [`HTTP_PORT`].
pub const LEGACY_HTTP_PORT: &str = "http.port";
/// The HTTPS listener's port, used when the Ingress has `tls` (default 443).
pub const HTTPS_PORT: &str = "ingress.rancher.io/https-port";
/// The original bare key for [`HTTPS_PORT`].
pub const LEGACY_HTTPS_PORT: &str = "https.port";
/// `"false"` drops the HTTP listener (default `"true"`).
pub const ALLOW_HTTP: &str = "ingress.rancher.io/allow-http";
/// The original bare key for [`ALLOW_HTTP`].
pub const LEGACY_ALLOW_HTTP: &str = "allow.http";
/// Cookie stickiness: newline-separated `key: value` lines with keys `name`,
/// `cookie`, `domain`, `mode`, `indirect`, `nocache`, `postonly`.
pub const STICKINESS: &str = "ingress.rancher.io/stickiness-policy";
/// The original key for [`STICKINESS`].
pub const LEGACY_STICKINESS: &str = "io.rancher.stickiness.policy";
/// Raw load balancer configuration; rejected unless the controller runs with
/// `--allow-snippets`.
pub const CONFIG_SNIPPET: &str = "ingress.rancher.io/config-snippet";
/// The original bare key for [`CONFIG_SNIPPET`].
pub const LEGACY_CONFIG_SNIPPET: &str = "config";
/// The prefix of Rancher's scheduler annotations.
pub const SCHEDULER_PREFIX: &str = "io.rancher.scheduler.";
/// Hosts must carry these labels (`k=v[,k=v]`).
pub const HOST_LABEL: &str = "io.rancher.scheduler.affinity.host_label";
/// Hosts must not carry these labels.
pub const HOST_LABEL_NE: &str = "io.rancher.scheduler.affinity.host_label_ne";
/// Hosts with these labels are preferred.
pub const HOST_LABEL_SOFT: &str = "io.rancher.scheduler.affinity.host_label_soft";
/// Hosts with these labels are avoided.
pub const HOST_LABEL_SOFT_NE: &str = "io.rancher.scheduler.affinity.host_label_soft_ne";
/// `"true"` runs one instance on every eligible host.
pub const GLOBAL: &str = "io.rancher.scheduler.global";
/// The legacy class annotation.
pub const INGRESS_CLASS: &str = "kubernetes.io/ingress.class";
/// Marks an IngressClass as the default for class-less Ingresses.
pub const IS_DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

/// The largest accepted scale.
pub const MAX_SCALE: u32 = 256;

/// Parsing options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Accept [`CONFIG_SNIPPET`].
    pub allow_snippets: bool,
}

/// The typed annotations of one Ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotations {
    /// Instances.
    pub scale: u32,
    /// HTTP port; `None` when HTTP is not allowed.
    pub http_port: Option<u16>,
    /// HTTPS port (used when the Ingress has TLS).
    pub https_port: u16,
    /// Stickiness.
    pub stickiness: Option<Stickiness>,
    /// Raw configuration (only with snippets allowed).
    pub snippet: Option<String>,
    /// Placement.
    pub placement: Placement,
}

impl Default for Annotations {
    fn default() -> Self {
        Self {
            scale: 1,
            http_port: Some(80),
            https_port: 443,
            stickiness: None,
            snippet: None,
            placement: Placement::default(),
        }
    }
}

fn field(key: &str) -> String {
    format!("metadata.annotations[{key:?}]")
}

/// Looks up a value under its prefixed and bare key; both set and different is
/// an error.
fn lookup<'a>(
    annotations: &'a BTreeMap<String, String>,
    key: &'a str,
    legacy: &'a str,
    errors: &mut Vec<FieldError>,
) -> Option<(&'a str, &'a str)> {
    match (annotations.get(key), annotations.get(legacy)) {
        (Some(a), Some(b)) if a != b => {
            errors.push(FieldError::new(
                field(key),
                format!("{a:?} disagrees with {legacy:?} = {b:?}; set one of them"),
            ));
            None
        }
        (Some(value), _) => Some((key, value.as_str())),
        (None, Some(value)) => Some((legacy, value.as_str())),
        (None, None) => None,
    }
}

fn parse_u32(value: &str) -> Option<u32> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn parse_port(key: &str, value: &str, errors: &mut Vec<FieldError>) -> Option<u16> {
    match parse_u32(value).and_then(|n| u16::try_from(n).ok()) {
        Some(port) if port > 0 => Some(port),
        _ => {
            errors.push(FieldError::new(
                field(key),
                format!("{value:?} is not a port number (1-65535)"),
            ));
            None
        }
    }
}

fn parse_bool(key: &str, value: &str, errors: &mut Vec<FieldError>) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        errors.push(FieldError::new(
            field(key),
            format!("{value:?} is not \"true\" or \"false\""),
        ));
        None
    }
}

/// Parses the annotations this controller reads; unknown keys are ignored,
/// except unknown `io.rancher.scheduler.*` keys, which are rejected.
pub fn parse(
    annotations: &BTreeMap<String, String>,
    options: Options,
) -> Result<Annotations, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = Annotations::default();

    if let Some((key, value)) = lookup(annotations, SCALE, LEGACY_SCALE, &mut errors) {
        match parse_u32(value) {
            Some(scale) if scale <= MAX_SCALE => out.scale = scale,
            _ => errors.push(FieldError::new(
                field(key),
                format!("{value:?} is not a whole number from 0 to {MAX_SCALE}"),
            )),
        }
    }
    if let Some((key, value)) = lookup(annotations, HTTP_PORT, LEGACY_HTTP_PORT, &mut errors) {
        out.http_port = parse_port(key, value, &mut errors);
    }
    if let Some((key, value)) = lookup(annotations, HTTPS_PORT, LEGACY_HTTPS_PORT, &mut errors)
        && let Some(port) = parse_port(key, value, &mut errors)
    {
        out.https_port = port;
    }
    if let Some((key, value)) = lookup(annotations, ALLOW_HTTP, LEGACY_ALLOW_HTTP, &mut errors)
        && parse_bool(key, value, &mut errors) == Some(false)
    {
        out.http_port = None;
    }
    if let (Some(http), https) = (out.http_port, out.https_port)
        && http == https
    {
        errors.push(FieldError::new(
            field(HTTPS_PORT),
            format!("the HTTPS port {https} is also the HTTP port"),
        ));
    }
    if let Some((key, value)) = lookup(annotations, STICKINESS, LEGACY_STICKINESS, &mut errors) {
        match parse_stickiness(value) {
            Ok(stickiness) => out.stickiness = Some(stickiness),
            Err(message) => errors.push(FieldError::new(field(key), message)),
        }
    }
    if let Some((key, value)) = lookup(
        annotations,
        CONFIG_SNIPPET,
        LEGACY_CONFIG_SNIPPET,
        &mut errors,
    ) {
        if options.allow_snippets {
            out.snippet = Some(value.to_owned());
        } else {
            errors.push(FieldError::new(
                field(key),
                "configuration snippets are disabled (start the controller with --allow-snippets to allow them)",
            ));
        }
    }
    for (key, value) in annotations.range(SCHEDULER_PREFIX.to_owned()..) {
        if !key.starts_with(SCHEDULER_PREFIX) {
            break;
        }
        // Rancher's own label form uses ':' after `affinity`; accept both.
        let normal = key.replacen("affinity:", "affinity.", 1);
        let target = match normal.as_str() {
            HOST_LABEL => &mut out.placement.required,
            HOST_LABEL_NE => &mut out.placement.forbidden,
            HOST_LABEL_SOFT => &mut out.placement.preferred,
            HOST_LABEL_SOFT_NE => &mut out.placement.avoided,
            GLOBAL => {
                if let Some(global) = parse_bool(key, value, &mut errors) {
                    out.placement.global = global;
                }
                continue;
            }
            _ => {
                errors.push(FieldError::new(
                    field(key),
                    "unsupported scheduler annotation (supported: host_label, host_label_ne, host_label_soft, host_label_soft_ne, global)",
                ));
                continue;
            }
        };
        match parse_labels(value) {
            Ok(labels) => target.extend(labels),
            Err(message) => errors.push(FieldError::new(field(key), message)),
        }
    }

    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn is_label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    (prefix.is_empty() || host::is_subdomain(prefix)) && is_label_value(name) && !name.is_empty()
}

fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn parse_labels(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !is_label_key(key) || !is_label_value(value) {
            return Err(format!("{pair:?} is not a host label constraint key=value"));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    if labels.is_empty() {
        return Err("expected one or more key=value host labels".to_owned());
    }
    Ok(labels)
}

fn parse_stickiness(value: &str) -> Result<Stickiness, String> {
    let mut out = Stickiness::default();
    let token = |v: &str| {
        !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    };
    for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((key, val)) = line.split_once(':') else {
            return Err(format!("line {line:?} is not \"key: value\""));
        };
        let (key, val) = (key.trim(), val.trim());
        let flag = |v: &str| match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{key}: {v:?} is not \"true\" or \"false\"")),
        };
        match key {
            "name" | "cookie" if !token(val) => {
                return Err(format!(
                    "{key}: {val:?} must be letters, digits, '-' or '_'"
                ));
            }
            "name" => out.name = Some(val.to_owned()),
            "cookie" => out.cookie = Some(val.to_owned()),
            "domain" => {
                if !host::is_subdomain(val.trim_start_matches('.')) {
                    return Err(format!("domain: {val:?} is not a DNS name"));
                }
                out.domain = Some(val.to_owned());
            }
            "mode" => match val {
                "insert" | "prefix" | "rewrite" => out.mode = Some(val.to_owned()),
                _ => {
                    return Err(format!("mode: {val:?} is not insert, prefix or rewrite"));
                }
            },
            "indirect" => out.indirect = flag(val)?,
            "nocache" => out.nocache = flag(val)?,
            "postonly" => out.postonly = flag(val)?,
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse_ok(pairs: &[(&str, &str)]) -> Annotations {
        parse(&map(pairs), Options::default()).unwrap()
    }

    fn parse_err(pairs: &[(&str, &str)]) -> Vec<FieldError> {
        parse(&map(pairs), Options::default()).unwrap_err()
    }

    #[test]
    fn defaults_without_annotations() {
        assert_eq!(parse_ok(&[]), Annotations::default());
        assert_eq!(Annotations::default().scale, 1);
    }

    #[test]
    fn bare_and_prefixed_keys() {
        assert_eq!(parse_ok(&[("scale", "2")]).scale, 2);
        assert_eq!(parse_ok(&[(SCALE, "3")]).scale, 3);
        assert_eq!(parse_ok(&[(SCALE, "0")]).scale, 0);
        assert_eq!(parse_ok(&[(SCALE, "2"), ("scale", "2")]).scale, 2);
        let a = parse_ok(&[("http.port", "99"), ("https.port", "444")]);
        assert_eq!((a.http_port, a.https_port), (Some(99), 444));
        assert_eq!(parse_ok(&[("allow.http", "false")]).http_port, None);
        assert_eq!(parse_ok(&[(ALLOW_HTTP, "TRUE")]).http_port, Some(80));
    }

    #[test]
    fn unparseable_values_name_the_field() {
        for (key, value) in [
            ("scale", "two"),
            ("scale", "-1"),
            ("scale", "+1"),
            ("scale", "257"),
            ("scale", ""),
            ("http.port", "0"),
            ("http.port", "65536"),
            ("https.port", "x"),
            ("allow.http", "no"),
        ] {
            let errors = parse_err(&[(key, value)]);
            assert_eq!(errors.len(), 1, "{key}={value}");
            assert_eq!(errors[0].field, format!("metadata.annotations[{key:?}]"));
            assert!(errors[0].to_string().contains(value), "{}", errors[0]);
        }
        let errors = parse_err(&[(SCALE, "2"), ("scale", "3")]);
        assert!(errors[0].message.contains("disagrees"), "{}", errors[0]);
        let errors = parse_err(&[("http.port", "443")]);
        assert!(errors[0].message.contains("also the HTTP port"));
    }

    #[test]
    fn snippets_only_when_allowed() {
        let errors = parse_err(&[("config", "global\nmaxconn 10")]);
        assert_eq!(errors[0].field, r#"metadata.annotations["config"]"#);
        assert!(errors[0].message.contains("--allow-snippets"));
        let allowed = parse(
            &map(&[(CONFIG_SNIPPET, "maxconn 10")]),
            Options {
                allow_snippets: true,
            },
        )
        .unwrap();
        assert_eq!(allowed.snippet.as_deref(), Some("maxconn 10"));
    }

    #[test]
    fn scheduler_annotations_become_placement() {
        let a = parse_ok(&[
            ("io.rancher.scheduler.affinity.host_label", "lb=true,zone=a"),
            ("io.rancher.scheduler.affinity:host_label_ne", "etcd=true"),
            ("io.rancher.scheduler.global", "true"),
        ]);
        assert_eq!(a.placement.required.len(), 2);
        assert_eq!(a.placement.forbidden["etcd"], "true");
        assert!(a.placement.global);
        let errors = parse_err(&[("io.rancher.scheduler.affinity.container_label", "a=b")]);
        assert!(errors[0].message.contains("unsupported"));
        let errors = parse_err(&[("io.rancher.scheduler.affinity.host_label", "a=b c")]);
        assert!(errors[0].field.contains("host_label"));
    }

    #[test]
    fn stickiness_policy() {
        let a = parse_ok(&[(
            LEGACY_STICKINESS,
            "name: testname\n cookie: cookie123\ndomain: test.example.org\nindirect: true",
        )]);
        let s = a.stickiness.unwrap();
        assert_eq!(s.name.as_deref(), Some("testname"));
        assert_eq!(s.cookie.as_deref(), Some("cookie123"));
        assert_eq!(s.domain.as_deref(), Some("test.example.org"));
        assert!(s.indirect);
        for bad in [
            "name testname",
            "cookie: a;b",
            "mode: sideways",
            "colour: red",
            "nocache: maybe",
        ] {
            let errors = parse_err(&[(LEGACY_STICKINESS, bad)]);
            assert_eq!(
                errors[0].field,
                format!("metadata.annotations[{LEGACY_STICKINESS:?}]")
            );
        }
    }
}
