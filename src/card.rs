//! The model card written beside a scored export: what it was merged from, how, and how it
//! scored, so the score travels with the adapter.

use std::path::Path;

use crate::adapter::AdapterFormat;
use crate::error::Result;
use crate::eval::EvalRecord;
use crate::io::write::side_file_path;
use crate::owned_file::replace_text;
use crate::recipe::Recipe;

/// The model card's file name (inside a PEFT directory; `NAME.README.md` beside a kohya file).
pub const CARD_FILE: &str = "README.md";

/// The card's Markdown for `recipe` and its evaluation.
pub fn model_card(recipe: &Recipe, eval: &EvalRecord) -> String {
    let mut s = String::from("---\nlibrary_name: peft\ntags:\n- lora\n- lora-lego\n---\n\n");
    s.push_str("# Merged LoRA adapter\n\n");
    s.push_str(&format!(
        "Merged by lora-lego with method `{}` from:\n\n",
        recipe.merge.method
    ));
    for a in &recipe.adapters {
        s.push_str(&format!("- `{}` ({})\n", a.path, a.hash_label()));
    }
    s.push_str("\nThe full recipe is in `lora_lego_recipe.toml`.\n\n## Evaluation\n\n");
    s.push_str(&format!("- {}\n", eval.summary()));
    s
}

/// Writes the card beside `target` (replacing an earlier card of the same export).
pub fn write_card(target: &Path, format: AdapterFormat, text: &str) -> Result<()> {
    replace_text(&side_file_path(target, format, CARD_FILE), text)
}
