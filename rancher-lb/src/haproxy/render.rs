//! Rendering one host's HAProxy configuration, map files and crt-lists.
//!
//! Pure functions: the same input gives the same bytes. Routing uses map files
//! (see the crate docs): exact host, then wildcard host (first label
//! stripped), then any host, giving the host key; then the exact-path map, the
//! exact-prefix map and the prefix map (`map_beg`, case-sensitive, so the
//! longest prefix wins); then the default map, which gives the host key's
//! default backend: the default backend of the load balancer that routes
//! that host (for the any-host key, of the first load balancer on the port
//! that has one). No match gives 404.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::model::{
    Backend, Balance, Certificate, HostMatch, HttpRoute, LbId, LoadBalancer, Name, PathMatch,
    Protocol, Stickiness,
};
use crate::placement::can_share;

/// The name of the backend answering 404 to unmatched requests.
pub const NOT_FOUND_BACKEND: &str = "lb-not-found";

/// The host key of routes without a host.
const ANY_HOST_KEY: &str = "*";

/// Server slots of one backend: `None` is a free slot (in maintenance).
pub type Slots = Vec<Option<crate::model::Endpoint>>;

/// Where the files go, as absolute paths.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The generation directory holding maps, certificates and crt-lists.
    pub generation: String,
    /// The runtime API socket.
    pub admin_socket: String,
}

/// Process-wide settings that end up in the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `maxconn` in `global`.
    pub maxconn: u32,
    /// `hard-stop-after`, in seconds.
    pub hard_stop_after_secs: u64,
    /// Whether snippets are rendered.
    pub snippets: bool,
}

/// A rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Path relative to the generation directory.
    pub path: String,
    /// Contents.
    pub contents: String,
    /// Whether it holds a private key (mode 0600, in the private directory).
    pub private: bool,
}

/// One server line: which HAProxy backend, which slot, which endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// HAProxy backend name.
    pub backend: String,
    /// Server name (`s1`, `s2`, ...).
    pub name: String,
    /// The endpoint, or `None` for a free slot.
    pub endpoint: Option<crate::model::Endpoint>,
}

/// A route shadowed by another load balancer on a shared port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The load balancer whose route lost.
    pub lb: LbId,
    /// What happened.
    pub message: String,
}

/// The rendered host.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// `haproxy.cfg`.
    pub config: String,
    /// Map files, crt-lists and certificates.
    pub files: Vec<File>,
    /// Every server slot.
    pub servers: Vec<Server>,
    /// Shadowed routes.
    pub conflicts: Vec<Conflict>,
}

/// The HAProxy backend name for a backend used in `mode`.
pub fn backend_name(lb: &LbId, backend: &Name, http: bool) -> String {
    let mode = if http { "h" } else { "t" };
    format!("be:{mode}:{lb}:{backend}")
}

fn host_key(h: &HostMatch) -> String {
    match h {
        HostMatch::Any => ANY_HOST_KEY.to_owned(),
        HostMatch::Exact(h) => h.as_str().to_owned(),
        HostMatch::Wildcard(h) => format!("*.{h}"),
    }
}

fn bind_address(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

#[derive(Default)]
struct Frontend<'a> {
    protocol: Option<Protocol>,
    lbs: Vec<&'a LoadBalancer>,
}

#[derive(Default)]
struct Maps {
    host: BTreeMap<String, String>,
    wildcard: BTreeMap<String, String>,
    exact: BTreeMap<String, String>,
    prefix_exact: BTreeMap<String, String>,
    prefix: BTreeMap<String, String>,
    /// Host key → the default backend of that host's load balancer.
    default: BTreeMap<String, String>,
}

/// Inserts `key` unless another load balancer (an earlier id) has it; the
/// loser gets a conflict saying `what` is shadowed.
fn insert_unique(
    map: &mut BTreeMap<String, String>,
    key: String,
    value: String,
    lb: &LoadBalancer,
    what: impl FnOnce() -> String,
    conflicts: &mut Vec<Conflict>,
) {
    match map.get(&key) {
        None => {
            map.insert(key, value);
        }
        Some(existing) if *existing == value => {}
        Some(existing) => conflicts.push(Conflict {
            lb: lb.id().clone(),
            message: format!("{} is shadowed by {existing}", what()),
        }),
    }
}

fn route_text(r: &HttpRoute) -> String {
    format!("route {}{} on port {}", r.host, r.path, r.port)
}

fn map_file(map: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in map {
        let _ = writeln!(out, "{k} {v}");
    }
    out
}

/// The placeholder for a server address in a configuration rendered without
/// addresses. A control character: no validated string can contain it.
pub const SLOT: char = '\u{1}';

/// The address part of a server line.
fn server_address(slot: Option<crate::model::Endpoint>) -> String {
    match slot {
        Some(ep) => format!("{}:{}", bind_address(ep.address), ep.port),
        None => "127.0.0.1:1 disabled".to_owned(),
    }
}

/// Fills the [`SLOT`] placeholders of a configuration rendered without
/// addresses with `servers`, in order.
pub fn fill(skeleton: &str, servers: &[Server]) -> String {
    let mut out = String::with_capacity(skeleton.len() + servers.len() * 24);
    let mut servers = servers.iter();
    for (i, part) in skeleton.split(SLOT).enumerate() {
        if i > 0 {
            out.push_str(&server_address(servers.next().and_then(|s| s.endpoint)));
        }
        out.push_str(part);
    }
    out
}

/// Renders one host serving `lbs`, with server addresses (`addresses`) or
/// with [`SLOT`] placeholders (to compare the structure of two
/// configurations, then [`fill`] them).
pub fn render(
    host: IpAddr,
    lbs: &[&LoadBalancer],
    slots: &BTreeMap<(LbId, Name), Slots>,
    paths: &Paths,
    settings: &Settings,
    addresses: bool,
) -> Rendered {
    let mut lbs = lbs.to_vec();
    lbs.sort_by(|a, b| a.id().cmp(b.id()));
    let mut out = Rendered::default();
    let gen_dir = &paths.generation;
    let c = &mut out.config;

    let _ = write!(
        c,
        "# Generated by rancher-lb for host {host}. Do not edit.\n\
         global\n\
         \x20 stats socket {admin} mode 600 level admin expose-fd listeners\n\
         \x20 stats timeout 30s\n\
         \x20 maxconn {maxconn}\n\
         \x20 hard-stop-after {hard}s\n\
         \x20 mworker-max-reloads 50\n\
         \n\
         defaults\n\
         \x20 mode http\n\
         \x20 timeout connect 5s\n\
         \x20 timeout client 60s\n\
         \x20 timeout server 60s\n\
         \x20 timeout http-request 10s\n\
         \x20 timeout http-keep-alive 10s\n\
         \x20 timeout tunnel 1h\n\
         \n\
         backend {NOT_FOUND_BACKEND}\n\
         \x20 mode http\n\
         \x20 http-request return status 404 content-type text/plain string \"not found\"\n",
        admin = paths.admin_socket,
        maxconn = settings.maxconn,
        hard = settings.hard_stop_after_secs,
    );

    // Group listeners into frontends, one per port.
    let mut frontends: BTreeMap<u16, Frontend<'_>> = BTreeMap::new();
    for lb in &lbs {
        for l in lb.listeners() {
            let f = frontends.entry(l.port).or_default();
            match f.protocol {
                None => f.protocol = Some(l.protocol),
                Some(p) if can_share(p, l.protocol) => {}
                Some(p) => {
                    out.conflicts.push(Conflict {
                        lb: lb.id().clone(),
                        message: format!(
                            "listener {} ({}) conflicts with a {} listener on the same port",
                            l.port,
                            l.protocol.as_str(),
                            p.as_str()
                        ),
                    });
                    continue;
                }
            }
            f.lbs.push(lb);
        }
    }

    let mut http_backends: BTreeMap<String, (&LoadBalancer, &Backend)> = BTreeMap::new();
    let mut tcp_backends: BTreeMap<String, (&LoadBalancer, &Backend)> = BTreeMap::new();

    for (port, f) in &frontends {
        let Some(protocol) = f.protocol else { continue };
        let mut bind = format!("{}:{port}", bind_address(host));
        if protocol.terminates_tls() {
            let (list, has_default) = crt_list(&f.lbs, gen_dir);
            let list_path = format!("certs/crt-list-{port}.txt");
            out.files.push(File {
                path: list_path.clone(),
                contents: list,
                private: true,
            });
            for lb in &f.lbs {
                for cert in lb.certificates() {
                    out.files.push(File {
                        path: cert_path(lb.id(), cert),
                        contents: cert.to_combined_pem(),
                        private: true,
                    });
                }
            }
            let _ = write!(bind, " ssl crt-list {gen_dir}/{list_path}");
            if !has_default {
                bind.push_str(" strict-sni");
            }
        }
        let c = &mut out.config;
        if protocol.is_http() {
            let proto = if protocol == Protocol::Https {
                "https"
            } else {
                "http"
            };
            let mut maps = Maps::default();
            for lb in &f.lbs {
                for r in lb.http_routes().iter().filter(|r| r.port == *port) {
                    let be = backend_name(lb.id(), &r.backend, true);
                    if let Some(b) = lb.backend(&r.backend) {
                        http_backends.insert(be.clone(), (lb, b));
                    }
                    let hk = host_key(&r.host);
                    match &r.host {
                        HostMatch::Any => {}
                        HostMatch::Exact(h) => {
                            maps.host.insert(h.as_str().to_owned(), hk.clone());
                        }
                        HostMatch::Wildcard(h) => {
                            maps.wildcard.insert(format!(".{h}"), hk.clone());
                        }
                    }
                    let path = r.path.as_str();
                    let conflicts = &mut out.conflicts;
                    match r.path_match {
                        PathMatch::Exact => {
                            insert_unique(
                                &mut maps.exact,
                                format!("{hk}{path}"),
                                be,
                                lb,
                                || route_text(r),
                                conflicts,
                            );
                        }
                        PathMatch::Prefix => {
                            let trimmed = path.trim_end_matches('/');
                            if !trimmed.is_empty() {
                                insert_unique(
                                    &mut maps.prefix_exact,
                                    format!("{hk}{trimmed}"),
                                    be.clone(),
                                    lb,
                                    || route_text(r),
                                    conflicts,
                                );
                            }
                            insert_unique(
                                &mut maps.prefix,
                                format!("{hk}{trimmed}/"),
                                be,
                                lb,
                                || route_text(r),
                                conflicts,
                            );
                        }
                    }
                }
                default_entries(&mut maps, lb, *port, &mut http_backends, &mut out.conflicts);
            }
            let map = |name: &str| format!("{gen_dir}/maps/{name}-{port}.map");
            let _ = write!(
                c,
                "\nfrontend http-{port}\n\
                 \x20 mode http\n\
                 \x20 bind {bind}\n\
                 \x20 option idle-close-on-response\n\
                 \x20 http-request set-header X-Forwarded-Proto {proto}\n\
                 \x20 http-request set-header X-Forwarded-Port {port}\n\
                 \x20 http-request set-var(txn.host) req.hdr(host),field(1,:),lower\n\
                 \x20 http-request set-var(txn.path) path\n\
                 \x20 http-request set-var(txn.hk) var(txn.host),map({host_map})\n\
                 \x20 http-request set-var(txn.hk) var(txn.host),regsub(^[^.]*,),map({wild_map}) if !{{ var(txn.hk) -m found }}\n\
                 \x20 http-request set-var(txn.hk) str({ANY_HOST_KEY}) if !{{ var(txn.hk) -m found }}\n\
                 \x20 http-request set-var(txn.key) var(txn.hk),concat(,txn.path,)\n\
                 \x20 http-request set-var(txn.be) var(txn.key),map({exact_map})\n\
                 \x20 http-request set-var(txn.be) var(txn.key),map({pe_map}) if !{{ var(txn.be) -m found }}\n\
                 \x20 http-request set-var(txn.be) var(txn.key),map_beg({prefix_map}) if !{{ var(txn.be) -m found }}\n\
                 \x20 http-request set-var(txn.be) var(txn.hk),map({default_map}) if !{{ var(txn.be) -m found }}\n\
                 \x20 use_backend %[var(txn.be)] if {{ var(txn.be) -m found }}\n\
                 \x20 default_backend {NOT_FOUND_BACKEND}\n",
                host_map = map("host"),
                wild_map = map("wildcard"),
                exact_map = map("path-exact"),
                pe_map = map("path-prefix-exact"),
                prefix_map = map("path-prefix"),
                default_map = map("default"),
            );
            for (name, m) in [
                ("host", &maps.host),
                ("wildcard", &maps.wildcard),
                ("path-exact", &maps.exact),
                ("path-prefix-exact", &maps.prefix_exact),
                ("path-prefix", &maps.prefix),
                ("default", &maps.default),
            ] {
                out.files.push(File {
                    path: format!("maps/{name}-{port}.map"),
                    contents: map_file(m),
                    private: false,
                });
            }
        } else {
            // Placement keeps TCP ports exclusive: one load balancer per frontend.
            let Some(lb) = f.lbs.first() else { continue };
            for other in f.lbs.iter().skip(1) {
                out.conflicts.push(Conflict {
                    lb: other.id().clone(),
                    message: format!(
                        "{} listener {port} is taken by {}",
                        protocol.as_str(),
                        lb.id()
                    ),
                });
            }
            let Some(route) = lb.tcp_routes().iter().find(|r| r.port == *port) else {
                continue;
            };
            let be = backend_name(lb.id(), &route.backend, false);
            if let Some(b) = lb.backend(&route.backend) {
                tcp_backends.insert(be.clone(), (lb, b));
            }
            let _ = write!(
                c,
                "\nfrontend tcp-{port}\n\
                 \x20 mode tcp\n\
                 \x20 bind {bind}\n\
                 \x20 default_backend {be}\n"
            );
        }
    }

    for (http, backends) in [(true, &http_backends), (false, &tcp_backends)] {
        for (name, (lb, b)) in backends {
            let empty = Slots::new();
            let table = slots
                .get(&(lb.id().clone(), b.name.clone()))
                .unwrap_or(&empty);
            render_backend(&mut out, name, http, lb, b, table, settings, addresses);
        }
    }
    out
}

/// The default map entries of `lb` on `port`: its default backend for each
/// host key it routes, and for the any-host key.
fn default_entries<'a>(
    maps: &mut Maps,
    lb: &'a LoadBalancer,
    port: u16,
    http_backends: &mut BTreeMap<String, (&'a LoadBalancer, &'a Backend)>,
    conflicts: &mut Vec<Conflict>,
) {
    let Some(name) = lb.default_backend() else {
        return;
    };
    let Some(b) = lb.backend(name) else { return };
    let be = backend_name(lb.id(), name, true);
    http_backends.insert(be.clone(), (lb, b));
    let mut keys: Vec<String> = lb
        .http_routes()
        .iter()
        .filter(|r| r.port == port)
        .map(|r| host_key(&r.host))
        .collect();
    keys.push(ANY_HOST_KEY.to_owned());
    keys.sort();
    keys.dedup();
    for key in keys {
        let what = || {
            let host = if key == ANY_HOST_KEY {
                "other hosts".to_owned()
            } else {
                format!("host {key}")
            };
            format!("default backend {name} for {host} on port {port}")
        };
        insert_unique(
            &mut maps.default,
            key.clone(),
            be.clone(),
            lb,
            what,
            conflicts,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn render_backend(
    out: &mut Rendered,
    name: &str,
    http: bool,
    lb: &LoadBalancer,
    b: &Backend,
    slots: &Slots,
    settings: &Settings,
    addresses: bool,
) {
    let c = &mut out.config;
    let mode = if http { "http" } else { "tcp" };
    let balance = match b.balance {
        Balance::RoundRobin => "roundrobin",
        Balance::LeastConn => "leastconn",
        Balance::Source => "source",
    };
    let _ = write!(c, "\nbackend {name}\n  mode {mode}\n  balance {balance}\n");
    let mut cookie = false;
    match &b.stickiness {
        Stickiness::None => {}
        Stickiness::Source => {
            c.push_str("  stick-table type ipv6 size 100k expire 30m\n  stick on src\n");
        }
        Stickiness::Cookie(token) if http => {
            let _ = writeln!(c, "  cookie {} insert indirect nocache", token.as_str());
            cookie = true;
        }
        Stickiness::Cookie(_) => {}
    }
    if settings.snippets
        && let Some(snippet) = lb.snippet()
    {
        for line in snippet.lines() {
            let _ = writeln!(c, "  {}", line.trim());
        }
    }
    for (i, slot) in slots.iter().enumerate() {
        let server = format!("s{}", i + 1);
        let _ = write!(c, "  server {server} ");
        match (slot, addresses) {
            (_, false) => c.push(SLOT),
            (slot, true) => c.push_str(&server_address(*slot)),
        }
        if cookie {
            let _ = write!(c, " cookie {server}");
        }
        c.push('\n');
        out.servers.push(Server {
            backend: name.to_owned(),
            name: server,
            endpoint: *slot,
        });
    }
}

fn cert_path(lb: &LbId, cert: &Certificate) -> String {
    format!("certs/{lb}:{}.pem", cert.name)
}

/// The crt-list of a TLS port: the first default certificate first (HAProxy's
/// default), then every certificate with its SNI filters.
fn crt_list(lbs: &[&LoadBalancer], gen_dir: &str) -> (String, bool) {
    let mut lines = Vec::new();
    let mut default = None;
    for lb in lbs {
        for cert in lb.certificates() {
            let filters: Vec<String> = cert.hosts.iter().map(ToString::to_string).collect();
            let line = format!(
                "{gen_dir}/{} {}",
                cert_path(lb.id(), cert),
                filters.join(" ")
            );
            let line = line.trim_end().to_owned();
            if cert.default && default.is_none() {
                default = Some(line);
            } else if !filters.is_empty() {
                lines.push(line);
            }
        }
    }
    let has_default = default.is_some();
    let mut out = String::new();
    if let Some(d) = default {
        // The default line without filters answers every other SNI name.
        let file = d.split(' ').next().unwrap_or_default().to_owned();
        out.push_str(&file);
        out.push('\n');
        if d != file {
            out.push_str(&d);
            out.push('\n');
        }
    }
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    (out, has_default)
}

#[cfg(test)]
mod tests;
