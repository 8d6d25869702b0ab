//! TEMPORARY stub until the real formatter lands.
use logfunnel_protocol::Record;
pub struct RecordContext<'a> {
    pub record: &'a Record,
    pub process_name: &'a str,
    pub host_name: &'a str,
    pub start_ns: i64,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Percent,
    Brace,
    Dollar,
}
impl Style {
    pub fn parse(s: &str) -> Option<Style> {
        match s {
            "%" => Some(Style::Percent),
            "{" => Some(Style::Brace),
            "$" => Some(Style::Dollar),
            _ => None,
        }
    }
}
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("Invalid format {0}")]
    Invalid(String),
    #[error("Formatting field not found in record: {0:?}")]
    MissingField(String),
}
#[derive(Debug, Clone)]
pub struct Formatter {
    fmt: String,
}
impl Formatter {
    pub fn new(fmt: Option<&str>, _datefmt: Option<&str>, _style: Style) -> Result<Formatter, FormatError> {
        Ok(Formatter { fmt: fmt.unwrap_or("%(message)s").to_owned() })
    }
    pub fn with_utc(self, _utc: bool) -> Formatter {
        self
    }
    pub fn uses_time(&self) -> bool {
        self.fmt.contains("%(asctime)")
    }
    pub fn format(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), FormatError> {
        if self.fmt.contains("%(process)d") {
            out.extend_from_slice(format!("{} ", ctx.record.process).as_bytes());
        }
        out.extend_from_slice(ctx.record.message.as_bytes());
        Ok(())
    }
}
