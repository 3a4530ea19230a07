//! Integration tests of rancher-federation against real components: BIND
//! (`named` from Debian's `bind9`) on loopback, `dig`.

mod bind;
mod failover;
mod federation;
mod forbid;
mod manifests;
mod namespaces;
mod rancher;
mod rfc2136;
