//! The model card (`README.md`) written with every export: the base model, what the adapter was
//! merged from (with hashes), how, the recipe, and the score when an evaluator ran — so an
//! adapter published as it is says where it came from.

use std::path::Path;

use crate::adapter::AdapterFormat;
use crate::error::Result;
use crate::eval::EvalRecord;
use crate::io::write::side_file_path;
use crate::owned_file::replace_text;
use crate::recipe::Recipe;

pub use crate::io::write::{CARD_FILE, CARD_TAG};

/// The card's Markdown for `recipe` (whose text is `recipe_text`), its base model and its
/// evaluation, if any.
pub fn model_card(
    recipe: &Recipe,
    base_model: Option<&str>,
    eval: Option<&EvalRecord>,
) -> Result<String> {
    let mut s = String::from("---\n");
    if let Some(b) = base_model {
        s.push_str(&format!("base_model: {}\n", yaml_string(b)));
    }
    s.push_str("library_name: peft\ntags:\n- lora\n");
    s.push_str(CARD_TAG);
    s.push_str("---\n\n# Merged LoRA adapter\n\n");
    s.push_str(&format!(
        "Merged by lora-lego from {} adapter(s){} with method `{}`.\n\n## Sources\n\n",
        recipe.adapters.len(),
        base_model.map(|b| format!(" on `{b}`")).unwrap_or_default(),
        recipe.merge.method
    ));
    for a in &recipe.adapters {
        s.push_str(&format!("- `{}` ({})\n", a.path, a.hash_label()));
    }
    s.push_str("\n## Method and parameters\n\n");
    let merge = toml::to_string(&recipe.merge).unwrap_or_default();
    s.push_str(&format!("```toml\n{}```\n", merge));
    if let Some(e) = eval {
        s.push_str(&format!("\n## Evaluation\n\n- {}\n", e.summary()));
    }
    s.push_str(&format!(
        "\n## Recipe\n\nAlso beside the weights; replay it with `lora-lego merge --recipe FILE`:\n\n```toml\n{}```\n",
        recipe.to_toml()?
    ));
    Ok(s)
}

/// A YAML scalar for `s`, quoted when it is not a plain word.
fn yaml_string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if plain {
        s.to_string()
    } else {
        serde_json::Value::from(s).to_string()
    }
}

/// Writes the card beside `target` (replacing an earlier card of the same export).
pub fn write_card(target: &Path, format: AdapterFormat, text: &str) -> Result<()> {
    replace_text(&side_file_path(target, format, CARD_FILE), text)
}
