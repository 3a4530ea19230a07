//! End-to-end tests: the controller against the in-memory API server
//! (`rancher-sandbox`), with `kubectl` and `curl` as real clients and real
//! HAProxy behind the in-tree backend.

mod support;

mod flows;
mod haproxy;
mod rancher;
