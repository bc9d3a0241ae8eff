//! schedctl: a cron-style job scheduler. The binary is a thin shell around this library;
//! see ARCHITECTURE.md for the map.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod control;
pub mod error;
pub mod leadership;
pub mod lease;
pub mod logging;
pub mod memory;
pub mod procinfo;
pub mod run;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod service;
pub mod signals;
pub mod store;
pub mod watcher;
