//! Integration tests: the real `mab` binary on real manifests.

mod support;

mod cli;
mod e2e;
mod errors;
mod fault_proxy;
mod formats;
mod schema;
mod selectors;
