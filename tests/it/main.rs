//! The one integration-test binary: the real `schedctl` binary driven as a user would,
//! and the scheduling loop in-process on a fake clock.

mod support;

mod cli;
mod daemon;
mod lease;
mod operator;
mod output;
mod processes;
mod recovery;
mod reload;
mod scheduling;
mod service;
