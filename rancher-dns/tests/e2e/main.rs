//! End-to-end tests of the built-in server with real clients (`dig`).

mod common;
mod dig;
mod forward;
mod fuzz;
mod sandbox;
