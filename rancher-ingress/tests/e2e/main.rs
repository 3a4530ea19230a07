//! End-to-end tests: the controller against the in-memory API server
//! (`rancher-sandbox`), with `kubectl` as a real client.

mod support;

mod flows;
