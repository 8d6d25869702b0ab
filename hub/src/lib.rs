//! logfunnel's hub.
pub mod formatter;
