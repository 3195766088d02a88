//! The one way loadgen reads a TOML file it is given (run scenarios, capacity files):
//! read, parse, fill in the name from the file stem, validate — with one error format
//! that names the file, and the field and the reason when a value is wrong.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A file type read through [`load`].
pub trait TomlFile: DeserializeOwned {
    /// The file's optional `name`, filled in from the file stem when absent.
    fn name_slot(&mut self) -> &mut Option<String>;

    /// Makes the paths the file names relative to its own folder (`dir`) absolute, before
    /// it is validated; nothing by default.
    fn resolve_paths(&mut self, _dir: &Path) {}

    /// Checks every value; on failure names the field and says why. `path` is the file's,
    /// for checks that read another file or name it.
    fn validate(&self, path: &Path) -> Result<(), Invalid>;
}

/// A field with a wrong value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field, as written in the file (e.g. `phase[2].rate`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<(String, String)> for Invalid {
    fn from((field, reason): (String, String)) -> Invalid {
        Invalid { field, reason }
    }
}

/// Why a file could not be used. Every message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum TomlFileError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

/// Reads, parses and validates the file at `path`.
pub fn load<T: TomlFile>(path: &Path) -> Result<T, TomlFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TomlFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates `text`; `path` names the file in messages and gives the default
/// name.
pub fn parse<T: TomlFile>(path: &Path, text: &str) -> Result<T, TomlFileError> {
    let mut file: T = toml::from_str(text).map_err(|error| TomlFileError::Parse {
        path: path.to_path_buf(),
        message: error.to_string().trim_end().replace('\n', "\n  "),
    })?;
    let name = file.name_slot();
    if name.is_none() {
        *name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned());
    }
    file.resolve_paths(path.parent().unwrap_or(Path::new(".")));
    file.validate(path)
        .map_err(|Invalid { field, reason }| TomlFileError::Invalid {
            path: path.to_path_buf(),
            field,
            reason,
        })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: Option<String>,
        count: u32,
    }

    impl TomlFile for Sample {
        fn name_slot(&mut self) -> &mut Option<String> {
            &mut self.name
        }
        fn validate(&self, _: &Path) -> Result<(), Invalid> {
            if self.count == 0 {
                return Err(Invalid::new("count", "must be at least 1"));
            }
            Ok(())
        }
    }

    #[test]
    fn the_name_comes_from_the_file_stem_unless_set() {
        let sample: Sample = parse(Path::new("dir/storm.toml"), "count = 1").expect("valid");
        assert_eq!(sample.name.as_deref(), Some("storm"));
        let named: Sample = parse(Path::new("x.toml"), "name = \"n\"\ncount = 1").expect("valid");
        assert_eq!(named.name.as_deref(), Some("n"));
    }

    #[test]
    fn every_error_names_the_file() {
        let bad_syntax = parse::<Sample>(Path::new("a.toml"), "count = ").unwrap_err();
        assert!(
            bad_syntax.to_string().starts_with("a.toml: "),
            "{bad_syntax}"
        );
        let unknown = parse::<Sample>(Path::new("a.toml"), "count = 1\nother = 2").unwrap_err();
        assert!(unknown.to_string().contains("other"), "{unknown}");
        let invalid = parse::<Sample>(Path::new("a.toml"), "count = 0").unwrap_err();
        assert_eq!(
            invalid.to_string(),
            "a.toml: field `count`: must be at least 1"
        );
        let missing = load::<Sample>(Path::new("/nonexistent/a.toml")).unwrap_err();
        assert!(missing
            .to_string()
            .starts_with("/nonexistent/a.toml: cannot read"));
    }
}
