//! The `[sweep]` table of a recipe: what a sweep tries. Plain data, apart from the runner in
//! `sweep`, so a recipe can hold one without depending on how sweeps run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A sweep plan: the `[sweep]` table of a recipe, or the flags of `lora-lego sweep`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSpec {
    /// Methods to try (names as `--method` takes them); empty: the base settings' method.
    pub methods: Vec<String>,
    /// Per settings field (its recipe name), the values to try.
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Score only this many candidates, drawn from the grid with `seed` (none: the whole grid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random: Option<usize>,
    /// The seed of the random draw.
    pub seed: u64,
    /// The evaluator command (`{dir}`, optional `{split}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<String>,
    /// The split the evaluator is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}
