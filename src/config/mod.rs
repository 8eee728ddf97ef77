//! Loading and validating `inferguard.yaml` and `policy.yaml`.
//!
//! Every problem is reported as `FILE:LINE: problem` with a hint how to fix it, for
//! `policy check`, for `serve` at start and for hot reloads.

mod locate;
mod policy_file;
mod server;

use std::fmt;
use std::path::{Path, PathBuf};

pub use policy_file::compile_policy;
pub use server::{
    ApiKeysConfig, AuditConfig, IdentityConfig, ListenConfig, OtlpConfig, OtlpProtocol, PolicyRef,
    ServerConfig, StoreConfig, UpstreamConfig,
};

/// A configuration problem, located in its file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub problem: String,
    /// How to fix it, when there is something useful to say.
    pub fix: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.problem)?;
        if let Some(fix) = &self.fix {
            write!(f, " (fix: {fix})")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn new(file: &Path, line: Option<usize>, problem: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line,
            problem: problem.into(),
            fix: None,
        }
    }

    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Turns a serde_yaml error into a located one, keeping serde's own message (which names
    /// the unknown field and the expected ones).
    fn from_yaml(file: &Path, err: &serde_yaml::Error) -> Self {
        let line = err.location().map(|l| l.line());
        let mut problem = err.to_string();
        // serde_yaml appends " at line L column C"; the line is already in the prefix.
        if let Some(idx) = problem.find(" at line ") {
            problem.truncate(idx);
        }
        let fix = if problem.contains("unknown field") {
            Some("remove the key or correct its spelling to one of the expected keys")
        } else if problem.contains("unknown permission") {
            Some("use one of the listed permission names, or \"*\" for all")
        } else {
            None
        };
        let e = ConfigError::new(file, line, problem);
        match fix {
            Some(f) => e.with_fix(f),
            None => e,
        }
    }
}

/// Which kind of file `policy check` was given, told apart by its top-level keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Server,
    Policy,
}

/// Reads a file, mapping IO errors to a located error.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, None, format!("cannot read the file: {e}")))
}

/// Tells an inferguard.yaml from a policy.yaml by their top-level keys.
pub fn detect_kind(path: &Path, text: &str) -> Result<FileKind, ConfigError> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(path, &e))?;
    let Some(map) = value.as_mapping() else {
        return Err(
            ConfigError::new(path, Some(1), "the file is not a YAML mapping")
                .with_fix("write `key: value` pairs at the top level"),
        );
    };
    let has = |k: &str| map.contains_key(serde_yaml::Value::from(k));
    if has("roles") || has("routes") || has("apis") || has("default_role") || has("rules") {
        Ok(FileKind::Policy)
    } else if has("listen") || has("store") || has("policy") || has("identity") || has("upstream") {
        Ok(FileKind::Server)
    } else {
        Err(ConfigError::new(
            path,
            Some(1),
            "neither an inferguard.yaml nor a policy.yaml",
        )
        .with_fix(
            "an inferguard.yaml has `policy:`/`store:`/`listen:`; a policy.yaml has `roles:`",
        ))
    }
}

/// Validates one file on its own (for `policy check`): syntax, keys and references inside it.
pub fn check_file(path: &Path) -> Result<FileKind, ConfigError> {
    let text = read_file(path)?;
    let kind = detect_kind(path, &text)?;
    match kind {
        FileKind::Server => {
            ServerConfig::parse(path, &text)?;
        }
        FileKind::Policy => {
            compile_policy(path, &text)?;
        }
    }
    Ok(kind)
}

#[cfg(test)]
mod tests;
