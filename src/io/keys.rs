//! Classifying safetensors keys: which are LoRA factors, which belong to adapter kinds we do
//! not merge, and which are ordinary tensors to carry aside.

/// What a PEFT key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeftKey<'a> {
    /// `<stem>.lora_A.weight` / `<stem>.lora_embedding_A`.
    A {
        /// The module path before `.lora_A`.
        stem: &'a str,
        /// An embedding's factor (`lora_embedding_A`).
        embedding: bool,
    },
    /// `<stem>.lora_B.weight` / `<stem>.lora_embedding_B`.
    B {
        /// The module path before `.lora_B`.
        stem: &'a str,
        /// An embedding's factor (`lora_embedding_B`).
        embedding: bool,
    },
    /// A tensor that is not part of LoRA (heads under `modules_to_save`, …).
    Extra,
}

/// What a kohya key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KohyaKey<'a> {
    /// `<stem>.lora_down.weight`.
    Down(&'a str),
    /// `<stem>.lora_up.weight`.
    Up(&'a str),
    /// `<stem>.alpha`.
    Alpha(&'a str),
    /// Anything else (textual-inversion embeddings, …).
    Extra,
}

/// Key fragments of adapter kinds that look like LoRA but are not plain LoRA, with what they are.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("lora_magnitude_vector", "DoRA (weight-decomposed LoRA) is not supported: its magnitude vector cannot be merged unit by unit"),
    ("dora_scale", "DoRA (weight-decomposed LoRA) is not supported: its magnitude vector cannot be merged unit by unit"),
    ("lora_B.bias", "LoRA with a bias on lora_B (`lora_bias=True`) is not supported"),
    ("hada_w", "LoHa (Hadamard-product LoRA) is not supported; only plain LoRA can be split into rank-1 units"),
    ("lokr_w", "LoKr (Kronecker-product LoRA) is not supported; only plain LoRA can be split into rank-1 units"),
    ("lora_mid", "LoCon/LyCORIS tucker decomposition (`lora_mid`) is not supported"),
    ("oft_", "OFT adapters are not supported"),
    ("boft_", "BOFT adapters are not supported"),
    ("ia3_l", "IA³ adapters are not supported"),
    ("vera_lambda", "VeRA adapters are not supported"),
];

/// Returns why `key` belongs to an unsupported adapter kind, if it does.
pub fn unsupported_reason(key: &str) -> Option<&'static str> {
    UNSUPPORTED
        .iter()
        .find(|(frag, _)| key.contains(frag))
        .map(|(_, why)| *why)
}

/// Classifies a PEFT key. `Err` carries the reason for keys that mention LoRA in a layout we
/// do not know, so they are never mistaken for a head and carried aside.
pub fn classify_peft(key: &str) -> Result<PeftKey<'_>, String> {
    if let Some(why) = unsupported_reason(key) {
        return Err(why.to_string());
    }
    let forms: [(&str, bool, bool); 4] = [
        (".lora_A.weight", false, false),
        (".lora_B.weight", true, false),
        (".lora_embedding_A", false, true),
        (".lora_embedding_B", true, true),
    ];
    for (suffix, is_b, embedding) in forms {
        if let Some(stem) = key.strip_suffix(suffix) {
            return Ok(if is_b {
                PeftKey::B { stem, embedding }
            } else {
                PeftKey::A { stem, embedding }
            });
        }
    }
    if key.contains("lora_") {
        return Err("unknown LoRA key layout (expected `<module>.lora_A.weight`, `<module>.lora_B.weight`, `<module>.lora_embedding_A` or `<module>.lora_embedding_B`)".into());
    }
    Ok(PeftKey::Extra)
}

/// Classifies a kohya key, with the same rule for unknown LoRA-looking layouts.
pub fn classify_kohya(key: &str) -> Result<KohyaKey<'_>, String> {
    if let Some(why) = unsupported_reason(key) {
        return Err(why.to_string());
    }
    if let Some(stem) = key.strip_suffix(".lora_down.weight") {
        return Ok(KohyaKey::Down(stem));
    }
    if let Some(stem) = key.strip_suffix(".lora_up.weight") {
        return Ok(KohyaKey::Up(stem));
    }
    if let Some(stem) = key.strip_suffix(".alpha") {
        if stem.starts_with("lora_") {
            return Ok(KohyaKey::Alpha(stem));
        }
    }
    if key.starts_with("lora_") || key.contains(".lora_") {
        return Err("unknown kohya key layout (expected `<module>.lora_down.weight`, `<module>.lora_up.weight` and `<module>.alpha`)".into());
    }
    Ok(KohyaKey::Extra)
}

/// True when the keys look like a kohya / sd-scripts file rather than PEFT.
pub fn looks_like_kohya<'a>(mut keys: impl Iterator<Item = &'a str>) -> bool {
    keys.any(|k| k.ends_with(".lora_down.weight") || k.ends_with(".lora_up.weight"))
}

/// kohya's module-name prefixes, longest first so `lora_te1_` wins over `lora_te_`.
pub const KOHYA_PREFIXES: &[&str] = &[
    "lora_transformer_",
    "lora_unet_",
    "lora_te1_",
    "lora_te2_",
    "lora_te3_",
    "lora_te_",
    "lora_",
];

/// Splits a kohya stem into its prefix and the flattened module path behind it.
pub fn split_kohya_stem(stem: &str) -> (&str, &str) {
    for p in KOHYA_PREFIXES {
        if let Some(rest) = stem.strip_prefix(p) {
            return (&stem[..p.len()], rest);
        }
    }
    ("", stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_keys_are_classified() {
        assert_eq!(
            classify_peft("base_model.model.x.q.lora_A.weight"),
            Ok(PeftKey::A {
                stem: "base_model.model.x.q",
                embedding: false
            })
        );
        assert_eq!(
            classify_peft("base_model.model.emb.lora_embedding_B"),
            Ok(PeftKey::B {
                stem: "base_model.model.emb",
                embedding: true
            })
        );
        assert_eq!(
            classify_peft("base_model.model.classifier.weight"),
            Ok(PeftKey::Extra)
        );
        assert!(classify_peft("base_model.model.x.lora_magnitude_vector")
            .unwrap_err()
            .contains("DoRA"));
        assert!(classify_peft("base_model.model.x.lora_A.default.weight")
            .unwrap_err()
            .contains("unknown LoRA key layout"));
    }

    #[test]
    fn kohya_stems_split_on_the_longest_prefix() {
        assert_eq!(
            split_kohya_stem("lora_te1_text_model_q_proj"),
            ("lora_te1_", "text_model_q_proj")
        );
        assert_eq!(
            split_kohya_stem("lora_unet_down_0"),
            ("lora_unet_", "down_0")
        );
        assert!(classify_kohya("lora_unet_x.hada_w1_a")
            .unwrap_err()
            .contains("LoHa"));
    }
}
