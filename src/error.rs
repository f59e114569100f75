//! The library's error type: every variant names the file, tensor or module at fault.

use std::path::PathBuf;

/// Everything that can go wrong while reading, aligning, merging or writing adapters.
#[derive(Debug, thiserror::Error)]
pub enum LegoError {
    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file that could not be parsed.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    /// A tensor whose dtype we cannot read.
    #[error("{path}: tensor `{tensor}` has dtype {dtype}; only F32, F16 and BF16 are supported")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// An adapter config that is missing, unreadable or inconsistent.
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// An adapter kind or key layout we do not merge.
    #[error("{path}: tensor `{tensor}`: {reason}")]
    Unsupported {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// A tensor whose shape does not fit its role.
    #[error("{path}: tensor `{tensor}`: {reason}")]
    Shape {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// NaN or Inf inside a tensor.
    #[error("{path}: tensor `{tensor}` holds {count} non-finite value(s) (NaN or Inf); pass --allow-nonfinite to proceed anyway")]
    NonFinite {
        path: PathBuf,
        tensor: String,
        count: usize,
    },
    /// A problem with one module: adapters that disagree about it, or a merge that cannot be
    /// computed for it.
    #[error("module `{module}`: {reason}")]
    Module { module: String, reason: String },
    /// A merge request that cannot be carried out.
    #[error("{0}")]
    Invalid(String),
    /// An output that already exists.
    #[error("{path}: already exists; pass --force to replace it")]
    OutputExists { path: PathBuf },
}

/// Result with [`LegoError`].
pub type Result<T, E = LegoError> = std::result::Result<T, E>;

impl LegoError {
    /// A tensor of an unsupported kind or layout in `path`.
    pub fn unsupported(path: &std::path::Path, tensor: &str, reason: impl Into<String>) -> Self {
        LegoError::Unsupported {
            path: path.into(),
            tensor: tensor.to_string(),
            reason: reason.into(),
        }
    }

    /// A LoRA factor in `path` whose partner (`lacks`) is not in the file.
    pub fn unpaired(path: &std::path::Path, tensor: &str, lacks: &str) -> Self {
        Self::unsupported(path, tensor, format!("has no matching {lacks} tensor"))
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LegoError::Io {
            path: path.into(),
            source,
        }
    }
}
