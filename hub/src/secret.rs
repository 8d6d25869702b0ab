//! Secrets for handlers that need them (an SMTP password, an HTTP token):
//! read from the environment or from a private file, never from the
//! configuration itself, and never printed — `Debug` and `Display` show
//! `[REDACTED]`, errors name the variable or path but not the value, and the
//! bytes are overwritten when dropped.
//!
//! For a key `password`, a handler accepts `password_env = "VAR"` or
//! `password_file = "/path"` (mode 0600 or 0400, like ssh's keys: a file
//! others can read is refused).

use std::fmt;
use std::path::Path;

use toml::Value;

use crate::config::keys::Section;

/// A secret value; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        for b in bytes.iter_mut() {
            // SAFETY: a valid, exclusive reference; volatile so the wipe is not optimised away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// Why a secret could not be read. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The value was written into the configuration.
    #[error("{key}: a secret is not read from the configuration; use {key}_env or {key}_file")]
    Inline {
        /// The key.
        key: String,
    },
    /// Both sources were given, or a value had the wrong type.
    #[error("{key}: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The environment variable is unset or empty.
    #[error("{key}_env: environment variable {var} is not set")]
    MissingEnv {
        /// The key.
        key: String,
        /// The variable.
        var: String,
    },
    /// The file cannot be read, or others may read it.
    #[error("{key}_file: {message}")]
    File {
        /// The key.
        key: String,
        /// What is wrong (the path, never the content).
        message: String,
    },
}

/// Reads the secret `key` of a handler's section: `None` when neither
/// `{key}_env` nor `{key}_file` is given, or when the secret cannot be read
/// (the problem is recorded in `s`, without the value).
pub fn read(s: &mut Section<'_>, key: &str) -> Option<Secret> {
    match resolve(s, key) {
        Ok(secret) => secret,
        Err(e) => {
            // The message starts with the key it concerns.
            s.issue("", e.to_string());
            None
        }
    }
}

/// Like [`read`], with the error as a value.
pub fn resolve(s: &mut Section<'_>, key: &str) -> Result<Option<Secret>, SecretError> {
    if s.value_named(key).is_some() {
        return Err(SecretError::Inline { key: key.to_owned() });
    }
    let env = s.value_named(&format!("{key}_env"));
    let file = s.value_named(&format!("{key}_file"));
    let key = key.to_owned();
    let text = |v: &Value, which: &str| {
        v.as_str().map(str::to_owned).ok_or_else(|| SecretError::Invalid {
            key: key.clone(),
            message: format!("{key}_{which} must be a string"),
        })
    };
    match (env, file) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(SecretError::Invalid {
            key: key.clone(),
            message: format!("give {key}_env or {key}_file, not both"),
        }),
        (Some(v), None) => {
            let var = text(v, "env")?;
            match std::env::var(&var) {
                Ok(value) if !value.is_empty() => Ok(Some(Secret(value))),
                _ => Err(SecretError::MissingEnv { key, var }),
            }
        }
        (None, Some(v)) => read_file(&key, Path::new(&text(v, "file")?)).map(Some),
    }
}

fn read_file(key: &str, path: &Path) -> Result<Secret, SecretError> {
    let err = |message: String| SecretError::File { key: key.to_owned(), message };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "{} has mode {mode:04o}; others may read it (chmod 600 it)",
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let s = std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    // One trailing newline is the editor's, not the secret's.
    let s = s.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&s).to_owned();
    if s.is_empty() {
        return Err(err(format!("{} is empty", path.display())));
    }
    Ok(Secret(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENTINEL: &str = "s3cr3t-SENTINEL-4242";

    fn resolve(text: &str, key: &str) -> Result<Option<Secret>, SecretError> {
        let t: toml::Table = text.parse().unwrap();
        super::resolve(&mut Section::new("handlers.h", &t), key)
    }

    #[test]
    fn secrets_come_from_a_private_file_or_the_environment_and_are_never_shown() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, format!("{SENTINEL}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let t = format!("password_file = {:?}", f);
        let e = resolve(&t, "password").unwrap_err();
        assert!(e.to_string().contains("others may read it") && !e.to_string().contains(SENTINEL), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = resolve(&t, "password").unwrap().unwrap();
        assert_eq!(s.expose(), SENTINEL);
        assert_eq!(format!("{s:?} {s}"), "[REDACTED] [REDACTED]");
        assert!(!format!("{:?}", Some(s)).contains(SENTINEL));
        // The environment (a variable no other test uses).
        let var = "LOGFUNNEL_TEST_SECRET_ENV_4242";
        // SAFETY: no other thread reads this variable.
        unsafe { std::env::set_var(var, SENTINEL) };
        let s = resolve(&format!("token_env = {var:?}"), "token").unwrap().unwrap();
        assert_eq!(s.expose(), SENTINEL);
        let e = resolve("token_env = \"LOGFUNNEL_UNSET_4242\"", "token").unwrap_err();
        assert!(e.to_string().contains("LOGFUNNEL_UNSET_4242 is not set"));
        // Never inline in the configuration, whose text check-config may echo.
        let e = resolve(&format!("password = {SENTINEL:?}"), "password").unwrap_err();
        assert!(!e.to_string().contains(SENTINEL) && e.to_string().contains("password_file"), "{e}");
        assert_eq!(resolve("", "password").unwrap(), None);
    }
}
