//! Test support (feature `testing`): a fake provider that records every call, and a
//! conformance battery any [`LoadBalancer`](crate::LoadBalancer) can run.

pub mod conformance;
pub mod fake;

pub use fake::{Call, Failure as FakeFailure, FakeCloud, FakeInstances, FakeLoadBalancer};
