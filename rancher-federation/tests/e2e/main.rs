//! Integration tests of rancher-federation against real components: BIND
//! (`named` from Debian's `bind9`) on loopback, `dig`.

mod bind;
mod rfc2136;
