//! End-to-end tests: the real `logfunnel` binary, real worker processes,
//! real sockets and files. One test binary, one module per area.

mod util;

mod bad_clients;
mod cli;
mod delivery;
mod faults;
mod security;
