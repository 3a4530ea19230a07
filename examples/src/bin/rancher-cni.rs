//! `rancher-cni`: the CNI plugin (spec 1.1.0) of Rancher's managed network. A
//! container runtime runs it with `CNI_COMMAND` and friends in the environment and
//! the network configuration on stdin; see `rancher-cni/README.md`.
//!
//! It runs no async runtime: it enters the container's network namespace on its
//! only thread.

fn main() {
    std::process::exit(rancher_cni::plugin::main());
}
