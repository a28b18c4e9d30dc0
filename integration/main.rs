//! End-to-end tests: predictor (the library's server, or the binary) on
//! loopback with real sockets, in-process hyper webservers, real files.

mod support;

mod cli;
mod config;
mod deploy;
mod differential;
mod failures;
mod h2front;
mod http1;
mod isolation;
mod legacy;
mod migration_safety;
mod operations;
mod placement;
mod reload;
mod routing;
mod scale_out;
mod semantics;
mod streaming;
mod structure;
mod tls;
mod upstream;
