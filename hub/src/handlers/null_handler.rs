//! `logging.NullHandler`: takes records and does nothing with them.

use super::{Handler, HandlerError};
use crate::formatter::RecordContext;

/// Python's NullHandler. Useful to measure the hub without output, and to
/// give a logger a handler so records do not reach the last-resort stderr.
#[derive(Debug, Default)]
pub struct NullHandler;

impl Handler for NullHandler {
    fn emit(&mut self, _ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}
