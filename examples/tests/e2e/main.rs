//! End-to-end tests of the shipped binaries, each run as an operator would
//! run it: against the in-memory API server (`rancher-sandbox`) from a
//! kubeconfig, with the real `kubectl`, `dig`, `curl` and HAProxy.

mod support;

/// BIND on loopback, shared with rancher-federation's own end-to-end tests.
#[allow(dead_code)]
#[path = "../../../rancher-federation/tests/e2e/bind.rs"]
mod bind;

mod auth;
mod churn;
mod churn_federation;
mod cloud_controller;
mod cni_containerd;
mod cni_overlay;
mod cni_plugin;
mod cni_reference;
mod containerd;
mod credential_provider;
mod dns;
mod engines;
mod failover;
mod federation_controller;
mod images;
mod ingress_controller;
mod outage;
mod ports;
mod restart;
mod sandbox;
mod sandbox_root;
