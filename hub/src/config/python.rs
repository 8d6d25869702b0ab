//! What in a Python logging config is Python code, and what to say about
//! it: the hub runs no Python, so a `'()'` factory or a `class` outside the
//! standard library is refused with one message that names it, says why,
//! and says what to do instead (keep it in the Python process, or the
//! hub's equivalent where there is one).

use crate::handlers::CLASSES;

/// The kinds of constructs a dictConfig builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Construct {
    Formatter,
    Filter,
    Handler,
}

impl Construct {
    fn noun(self) -> &'static str {
        match self {
            Construct::Formatter => "formatter",
            Construct::Filter => "filter",
            Construct::Handler => "handler",
        }
    }
}

/// Whether a dotted name is code outside Python's `logging` package (a
/// name without a dot is the hub's own spelling of a class).
pub(crate) fn is_python_code(name: &str) -> bool {
    name.contains('.') && !name.starts_with("logging.")
}

/// python-json-logger's JsonFormatter, old and new module names.
pub(crate) fn is_json_formatter(name: &str) -> bool {
    matches!(
        name,
        "pythonjsonlogger.jsonlogger.JsonFormatter"
            | "pythonjsonlogger.json.JsonFormatter"
            | "JsonFormatter"
            | "logfunnel.JsonFormatter"
    )
}

/// The refusal of `name`, a `what` that is Python code.
pub(crate) fn refusal(what: Construct, name: &str) -> String {
    let keep = match what {
        Construct::Handler => "keep this handler in the Python process's own logging configuration",
        Construct::Filter => {
            "keep this filter in the Python process's own logging configuration (there it filters records before they leave)"
        }
        Construct::Formatter => "keep this formatter in the Python process's own logging configuration",
    };
    let mut message = format!("{name:?} is Python code, which the hub cannot run: {keep}");
    if let Some(instead) = equivalent(what, name) {
        message.push_str("; or ");
        message.push_str(&instead);
    }
    message
}

/// The hub's equivalent of a well-known third-party construct, if any.
fn equivalent(what: Construct, name: &str) -> Option<String> {
    let last = name.rsplit('.').next().unwrap_or(name);
    let lower = name.to_ascii_lowercase();
    let has = |class: &str| CLASSES.iter().any(|c| c.name == class);
    match what {
        Construct::Handler if lower.contains("mail") => Some(if has("SMTPHandler") {
            "use the hub's SMTPHandler (class \"logging.handlers.SMTPHandler\" with mailhost, fromaddr, toaddrs, subject)"
                .into()
        } else {
            "mail from the hub once it has an SMTPHandler (it has none yet)".into()
        }),
        Construct::Handler if lower.contains("rich") || lower.contains("color") || lower.contains("colour") => {
            Some("use a logging.StreamHandler (without colours)".into())
        }
        Construct::Handler if lower.contains("syslog") && has("SysLogHandler") => {
            Some("use the hub's logging.handlers.SysLogHandler".into())
        }
        Construct::Handler if lower.starts_with("sentry_sdk") => {
            Some("nothing in the hub replaces it: it reports to Sentry with the process's own context".into())
        }
        Construct::Handler if last == "QueueListenerHandler" || last.contains("QueueHandler") => Some(
            "use logging.handlers.QueueHandler with handlers (Python 3.12's form): the hub is the listener".into(),
        ),
        Construct::Formatter if lower.contains("json") => Some(
            "use the hub's JSON formatter, python-json-logger's ('()': \"pythonjsonlogger.json.JsonFormatter\" \
             with format, rename_fields, static_fields, timestamp)"
                .into(),
        ),
        Construct::Formatter => Some("use a logging.Formatter with the same format (record fields only)".into()),
        Construct::Filter if last.starts_with("RequireDebug") => Some(
            "drop it here: it reads the Python process's settings.DEBUG, which the hub does not have".into(),
        ),
        Construct::Filter => Some("use a logging.Filter by logger name ('()': \"logging.Filter\", name)".into()),
        _ => None,
    }
}

/// A `'.'` key: attributes Python sets on the object once built.
pub(crate) fn dot_refusal(what: Construct) -> String {
    format!(
        "'.' sets attributes on the Python {} object once it is built; the hub builds no Python objects: \
         remove it (the hub's own keys of this {} say what can be set)",
        what.noun(),
        what.noun()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_code_and_its_remedies() {
        assert!(is_python_code("django.utils.log.AdminEmailHandler"));
        assert!(!is_python_code("logging.handlers.RotatingFileHandler"));
        assert!(!is_python_code("FileHandler"));
        let m = refusal(Construct::Handler, "django.utils.log.AdminEmailHandler");
        assert!(m.starts_with("\"django.utils.log.AdminEmailHandler\" is Python code, which the hub cannot run: keep this handler in the Python process"), "{m}");
        assert!(m.contains("SMTPHandler"), "{m}");
        assert!(refusal(Construct::Filter, "django.utils.log.RequireDebugFalse").contains("settings.DEBUG"));
        assert!(
            refusal(Construct::Formatter, "json_log_formatter.JSONFormatter").contains("pythonjsonlogger")
        );
    }
}
