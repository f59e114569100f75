//! lora-lego: merge LoRA adapters the LoRA-LEGO way.
//!
//! Data flow: files → [`io`] → [`adapter::Adapter`] → [`align::ModuleSet`] → merge → [`io::write`].

pub mod adapter;
pub mod align;
pub mod error;
pub mod inspect;
pub mod io;

pub use error::{LegoError, Result};
