//! lora-lego: merge LoRA adapters the LoRA-LEGO way.
//!
//! Data flow: files → [`io`] → [`adapter::Adapter`] → [`align::ModuleSet`] → merge → [`io::write`].

pub mod adapter;
pub mod align;
pub mod compare;
pub mod error;
pub mod inspect;
pub mod io;

pub use error::{LegoError, Result};
pub mod engine;
pub mod export;
pub mod gram;
pub mod kmeans;
pub mod merge;
pub mod metrics;
pub mod msu;
pub mod pca2d;
pub mod recipe;
pub mod scatter;
pub mod tui;
