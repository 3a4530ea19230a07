//! Integration tests of rancher-credentials: the providers against the
//! conformance battery, the composite, and the exec protocol end to end in process.

mod composite;
mod docker_config;
mod exec;
#[cfg(feature = "rancher")]
mod rancher;
#[cfg(feature = "runtime")]
mod secret;
