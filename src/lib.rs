//! lora-lego: merge LoRA adapters the LoRA-LEGO way.
//!
//! Data flow: files → [`io`] → [`adapter::Adapter`] → [`align::ModuleSet`] → [`engine`]
//! (units, Gram matrices, k-means, reweighting) → [`export`] → [`io::write`].

pub mod adapter;
pub mod align;
pub mod bench;
pub mod card;
pub mod compare;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod folded_gram;
pub mod gram;
pub mod inspect;
pub mod io;
pub mod kmeans;
pub mod kmeans_gram;
pub mod linalg;
pub mod merge;
pub mod metrics;
pub mod msu;
pub mod output_guard;
pub mod owned_file;
pub mod pca2d;
pub mod recipe;
pub mod scatter;

pub mod session;
pub mod settings;
pub mod signals;
pub mod simd;
pub mod sweep;
pub mod sweep_spec;
pub mod tensor;
pub mod top_eigen;
pub mod tui;
pub mod unit_stats;
pub mod value_enums;
pub use error::{LegoError, Result};
