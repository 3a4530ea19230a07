//! Integration tests of rancher-federation against real components: BIND
//! (`named` from Debian's `bind9`) on loopback, `dig`.

mod bind;
mod federation;
mod manifests;
mod rfc2136;
