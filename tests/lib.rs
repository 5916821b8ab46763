//! Integration tests: the real `mab` binary on real manifests.

mod support;

mod cli;
mod e2e;
mod errors;
mod fault_proxy;
mod formats;
mod pipelines;
mod plan_is_the_run;
mod schema;
mod selectors;
