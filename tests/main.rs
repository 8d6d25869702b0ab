//! End-to-end tests: the real `logfunnel` binary, real worker processes,
//! real sockets and files. One test binary, one module per area.

mod daemons;
mod util;

mod bad_clients;
mod cli;
mod config_files;
mod delivery;
mod docs;
mod examples;
mod faults;
mod first_run;
mod http;
mod install;
mod journal;
mod metrics;
mod python_clients;
mod python_exact;
mod robustness;
mod security;
mod smtp;
mod syslog;
mod tracing_layer;
