//! The integration tests, one module per concern, built as one binary so they link once.

mod common;
mod peft_reference;

mod baselines_engine;
mod baselines_golden;
mod baselines_properties;
mod bench_e2e;
mod bench_smoke;
mod cli_conventions;
mod cluster;
mod ecosystem_formats;
mod engine;
mod eval_contract;
mod exit_codes;
mod fuzz_regressions;
mod interrupt;
mod io_errors;
mod io_fixtures;
mod io_formats;
mod kmeans_gram;
mod merge_cli;
mod method_goldens;
mod output_safety;
mod properties;
mod recipe_hash;
mod recipes;
mod scale_figures;
mod scale_probe;
mod sweep_cli;
mod tensor_stats;
mod truncated_svd;
mod tui_panels;
mod tui_session;
mod tui_sweep;
mod tui_terminal;
mod unit_stats;
