//! Errors for bad operator input: a fleet INI, command-line flags or a persona file.
//!
//! Each error names where the problem is (file, line, section, key) and, where one
//! exists, the nearest valid value, so the message alone is enough to fix the input.

use std::fmt;

/// A problem in a fleet description (INI file or command-line flags). Boxed, so
/// that the `Result`s that carry it stay small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(Box<ConfigErrorDetails>);

/// Where and what the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrorDetails {
    /// The file, or `command line` for flags.
    pub file: String,
    pub line: Option<usize>,
    pub section: Option<String>,
    pub key: Option<String>,
    pub message: String,
    /// "did you mean …" or another short suggestion.
    pub hint: Option<String>,
}

impl ConfigError {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self(Box::new(ConfigErrorDetails {
            file: file.into(),
            line: None,
            section: None,
            key: None,
            message: message.into(),
            hint: None,
        }))
    }

    pub fn line(mut self, line: usize) -> Self {
        self.0.line = Some(line);
        self
    }

    pub fn section(mut self, section: impl Into<String>) -> Self {
        self.0.section = Some(section.into());
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.0.key = Some(key.into());
        self
    }

    pub fn hint(mut self, hint: Option<String>) -> Self {
        self.0.hint = hint;
        self
    }
}

impl std::ops::Deref for ConfigError {
    type Target = ConfigErrorDetails;

    fn deref(&self) -> &ConfigErrorDetails {
        &self.0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(":")?;
        if let Some(section) = &self.section {
            write!(f, " [{section}]")?;
        }
        if let Some(key) = &self.key {
            write!(f, " {key}:")?;
        }
        write!(f, " {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A problem in the persona catalogue (`personas/**/*.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueError {
    /// Path relative to the catalogue root, e.g. `services/ssh.toml`.
    pub file: String,
    /// Dotted key path inside the file, e.g. `keys.users.type`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl CatalogueError {
    pub fn new(file: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "personas/{}: {}", self.file, self.message)
        } else {
            write!(f, "personas/{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

impl std::error::Error for CatalogueError {}

/// "did you mean `x`?" for the candidate nearest to `input`, if one is close enough.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let input = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&input, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// "expected one of a, b, c" for short lists of valid values.
pub fn one_of<'a>(candidates: impl IntoIterator<Item = &'a str>) -> String {
    let all: Vec<&str> = candidates.into_iter().collect();
    format!("expected one of: {}", all.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_every_location_part() {
        let e = ConfigError::new("fleet.ini", "unknown service `shh`")
            .line(12)
            .section("decky-01")
            .key("services")
            .hint(did_you_mean("shh", ["ssh", "smb", "http"]));
        assert_eq!(
            e.to_string(),
            "fleet.ini:12: [decky-01] services: unknown service `shh`; did you mean `ssh`?"
        );
    }

    #[test]
    fn no_hint_for_distant_input() {
        assert_eq!(did_you_mean("zzzzzz", ["ssh", "http"]), None);
    }
}
