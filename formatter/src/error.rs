//! Why a formatter could not be built or a record could not be formatted.

use crate::unicode::py_repr;

/// Why a formatter could not be built or a record could not be formatted.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The format string is invalid for its style, or can never format a
    /// record (see the module docs). `reason` follows Python's wording.
    #[error("Invalid format '{fmt}' for '{style}' style: {reason}")]
    Invalid {
        /// The format string.
        fmt: String,
        /// The style's character.
        style: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The date format cannot be used.
    #[error("Invalid datefmt '{datefmt}': {reason}")]
    BadDateFormat {
        /// The date format.
        datefmt: String,
        /// What is wrong.
        reason: String,
    },
    /// The format references a field the record does not have (Python's
    /// `ValueError` raised from the `KeyError`).
    #[error("Formatting field not found in record: {}", py_repr(.0))]
    MissingField(String),
    /// A value the conversion cannot take, with Python's message (Python
    /// raises TypeError, ValueError or OverflowError).
    #[error("{0}")]
    Conversion(String),
    /// The record's time cannot be converted to a calendar time.
    #[error("timestamp out of range for platform time_t: {0}")]
    TimeOutOfRange(f64),
    /// A JSON formatter's arguments are wrong (python-json-logger's message).
    #[error("{0}")]
    Json(String),
}
