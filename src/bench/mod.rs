//! `lora-lego bench`: synthetic adapters at real model shapes, and the figures measured on them.

pub mod e2e;
pub mod run;
pub mod synth;
