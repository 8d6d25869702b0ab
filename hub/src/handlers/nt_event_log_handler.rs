//! `logging.handlers.NTEventLogHandler`: Python's handler for the Windows
//! event log. Its keys are read (so a Python configuration is understood),
//! and the handler is refused with a message that says what to use instead:
//! on other systems there is no event log, and on Windows logfunnel does not
//! write to it yet.

use crate::config::keys::Section;
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};

/// Python's `appname`, `dllname` and `logtype`; never built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtEventLogOptions;

impl HandlerOptions for NtEventLogOptions {
    fn parse(s: &mut Section<'_>) -> Option<NtEventLogOptions> {
        if s.string(&["appname"]).is_none() {
            s.issue("appname", "missing (NTEventLogHandler's application name)");
        }
        let _ = s.string(&["dllname"]);
        let _ = s.choice(&["logtype"], &[("Application", ()), ("System", ()), ("Security", ())]);
        let why = if cfg!(windows) {
            "logfunnel does not write to the Windows event log yet"
        } else {
            "it writes to the Windows event log, which this system does not have"
        };
        s.issue(
            "",
            format!(
                "NTEventLogHandler is refused: {why}; use SysLogHandler instead (address = \"/dev/log\" \
                 reaches the local syslog daemon, or journald through its /dev/log socket)"
            ),
        );
        None
    }

    fn build(&self, _: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        // `parse` never accepts one; this only keeps the trait whole.
        Err(HandlerError::Delivery("NTEventLogHandler is not supported".into()))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn a_python_config_with_it_is_refused_with_what_to_use_instead() {
        let text = "[handlers.nt]\nclass = \"logging.handlers.NTEventLogHandler\"\nappname = \"app\"\nlogtype = \"Application\"\n";
        let e = Config::from_toml_str(text, "test").unwrap_err();
        let issues: Vec<String> = e.issues.iter().map(ToString::to_string).collect();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].starts_with("handlers.nt: NTEventLogHandler is refused"), "{issues:?}");
        assert!(issues[0].contains("use SysLogHandler") && issues[0].contains("/dev/log"), "{issues:?}");
    }
}
