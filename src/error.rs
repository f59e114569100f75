//! The library's error type: every variant names the file, tensor or module at fault.

use std::path::PathBuf;

/// Everything that can go wrong while reading, aligning, merging or writing adapters.
#[derive(Debug, thiserror::Error)]
// Variant fields are the values the `#[error]` message names; documenting each would repeat it.
#[allow(missing_docs)]
pub enum LegoError {
    /// An I/O failure on a named path. The cause is part of the message and deliberately not
    /// a `source()`: `anyhow`'s `{:#}` would print it a second time.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
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
    #[error("{path}: tensor `{tensor}` holds {count} non-finite value(s) (NaN or Inf)")]
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
    /// Settings that cannot be merged with (the error names the field).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The run was cancelled before it finished; nothing was written.
    #[error("cancelled; nothing was written")]
    Cancelled,
    /// An output that already exists (the caller says how to replace it).
    #[error("{path}: already exists")]
    OutputExists { path: PathBuf },
    /// An output path that is, lies inside, or contains a file the merge reads.
    #[error("{output}: this output {relation} the input {input}; an output never replaces an input, choose another path")]
    OutputOverlapsInput {
        output: PathBuf,
        input: PathBuf,
        relation: &'static str,
    },
    /// An existing output that lora-lego did not write, which it refuses to replace.
    #[error("{path}: refusing to replace it: {found} (only a previous lora-lego export or a single adapter file is replaced)")]
    NotReplaceable { path: PathBuf, found: String },
    /// A value that would be NaN or Inf once written in the output dtype.
    #[error("tensor `{tensor}`: {count} value(s) are not finite in {dtype} (largest magnitude {max_abs:e}); nothing was written")]
    NonFiniteOutput {
        tensor: String,
        dtype: String,
        count: usize,
        max_abs: f64,
    },
    /// An input file that changed size while it was mapped.
    #[error("{path}: the file changed size while it was being read ({was} bytes, now {now}); nothing was written")]
    InputChanged { path: PathBuf, was: u64, now: u64 },
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
            cause: source,
        }
    }
}

/// A setting out of range: which field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SettingsError {
    /// The field's name as in recipes.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}
