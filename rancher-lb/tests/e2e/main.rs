//! End-to-end tests: the HAProxy driver with real HAProxy processes on
//! loopback host addresses, echo backends started by the tests, and real
//! HTTP, TLS and TCP clients.

mod haproxy;
mod rancher;
mod rancher_faults;
mod support;
