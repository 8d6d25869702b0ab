//! `logging.NullHandler`: takes records and does nothing with them.

use crate::config::keys::Section;
use crate::formatter::RecordContext;
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};

/// NullHandler has no options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NullOptions;

impl HandlerOptions for NullOptions {
    fn parse(_: &mut Section<'_>) -> Option<NullOptions> {
        Some(NullOptions)
    }

    fn build(&self, _: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        Ok(Box::new(NullHandler))
    }
}

/// Python's NullHandler. Useful to measure the hub without output, and to
/// give a logger a handler so records do not reach the last-resort stderr.
#[derive(Debug, Default)]
pub struct NullHandler;

impl Handler for NullHandler {
    fn renders(&self) -> bool {
        false
    }

    fn emit(&mut self, _ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}
