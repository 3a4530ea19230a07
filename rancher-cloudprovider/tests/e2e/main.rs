//! End-to-end tests: the controller against the in-memory API server
//! (`rancher-sandbox`), driving the fake provider.

mod fake;
mod haproxy;
mod rancher;
mod support;
