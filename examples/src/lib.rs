//! Composition of the `rancher-*` crates for the binaries of this package.
//!
//! # Overview
//!
//! - [`sandbox`]: the whole stack on one machine (API server, fake nodes, echo
//!   backends, DNS, Ingress and cloud controllers on one shared load balancer
//!   driver), as the `rancher-sandbox` binary and `./scripts/sandbox` run it.
//!
//! The binaries in `src/bin/` stay thin: flags, logging, then a library's
//! `run`. The teaching examples in `examples/` implement each crate's backend
//! trait against a running sandbox.

pub mod sandbox;
