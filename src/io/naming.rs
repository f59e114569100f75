//! How one module is named by each ecosystem: kohya's `lora_unet_` / `lora_te…_` prefixes and
//! diffusers' pipeline components (`unet.`, `text_encoder.`, …).

use serde::{Deserialize, Serialize};

/// A kohya / sd-scripts key prefix: which network of a diffusion pipeline a module belongs to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum KohyaPrefix {
    /// `lora_unet_`: the denoising UNet.
    Unet,
    /// `lora_te_`: the text encoder of a one-encoder model (SD 1.x / 2.x).
    Te,
    /// `lora_te1_`: SDXL's first text encoder.
    Te1,
    /// `lora_te2_`: SDXL's second text encoder.
    Te2,
    /// `lora_transformer_`: a DiT denoiser (SD3, Flux).
    Transformer,
}

impl KohyaPrefix {
    /// The prefix as written in keys.
    pub fn as_str(self) -> &'static str {
        match self {
            KohyaPrefix::Unet => "lora_unet_",
            KohyaPrefix::Te => "lora_te_",
            KohyaPrefix::Te1 => "lora_te1_",
            KohyaPrefix::Te2 => "lora_te2_",
            KohyaPrefix::Transformer => "lora_transformer_",
        }
    }

    /// The diffusers component this prefix's modules live in.
    pub fn component(self) -> Component {
        match self {
            KohyaPrefix::Unet => Component::Unet,
            KohyaPrefix::Te | KohyaPrefix::Te1 => Component::TextEncoder,
            KohyaPrefix::Te2 => Component::TextEncoder2,
            KohyaPrefix::Transformer => Component::Transformer,
        }
    }

    /// The prefix `stem` starts with, if it is one of these.
    pub fn of_stem(stem: &str) -> Option<KohyaPrefix> {
        use KohyaPrefix::*;
        // Longest first: `lora_te1_` must not be read as `lora_te_`.
        [Transformer, Unet, Te1, Te2, Te]
            .into_iter()
            .find(|p| stem.starts_with(p.as_str()))
    }
}

impl std::fmt::Display for KohyaPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A diffusers pipeline component that a LoRA file may adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// `unet.`
    Unet,
    /// `text_encoder.`
    TextEncoder,
    /// `text_encoder_2.`
    TextEncoder2,
    /// `transformer.`
    Transformer,
}

impl Component {
    /// Every component, the longest key prefix first (`text_encoder_2.` before `text_encoder.`).
    pub const ALL: [Component; 4] = [
        Component::TextEncoder2,
        Component::TextEncoder,
        Component::Transformer,
        Component::Unet,
    ];

    /// The component's name, as diffusers writes it in keys and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Component::Unet => "unet",
            Component::TextEncoder => "text_encoder",
            Component::TextEncoder2 => "text_encoder_2",
            Component::Transformer => "transformer",
        }
    }

    /// kohya's prefix for this component; `two_text_encoders` picks `lora_te1_` over `lora_te_`.
    pub fn kohya_prefix(self, two_text_encoders: bool) -> KohyaPrefix {
        match self {
            Component::Unet => KohyaPrefix::Unet,
            Component::TextEncoder if two_text_encoders => KohyaPrefix::Te1,
            Component::TextEncoder => KohyaPrefix::Te,
            Component::TextEncoder2 => KohyaPrefix::Te2,
            Component::Transformer => KohyaPrefix::Transformer,
        }
    }
}

/// Splits `unet.down_blocks.0…` into its component and the path inside it. `transformer.`
/// counts only before a DiT block: GPT-2's own modules are `transformer.h.…`.
pub fn split_component(path: &str) -> Option<(Component, &str)> {
    Component::ALL.into_iter().find_map(|c| {
        let rest = path.strip_prefix(c.name())?.strip_prefix('.')?;
        let root = rest.split('.').next().unwrap_or(rest);
        (c != Component::Transformer || TRANSFORMER_ROOTS.contains(&root)).then_some((c, rest))
    })
}

/// First path segments of a diffusers UNet (`UNet2DConditionModel`) and of sd-scripts' SDXL UNet.
const UNET_ROOTS: &[&str] = &[
    "down_blocks",
    "up_blocks",
    "mid_block",
    "conv_in",
    "conv_out",
    "conv_norm_out",
    "time_embedding",
    "add_embedding",
    "input_blocks",
    "output_blocks",
    "middle_block",
    "time_embed",
    "label_emb",
];

/// First path segments of a DiT denoiser (SD3's and Flux's transformer).
const TRANSFORMER_ROOTS: &[&str] = &[
    "transformer_blocks",
    "single_transformer_blocks",
    "joint_blocks",
    "x_embedder",
    "context_embedder",
    "proj_out",
];

/// The component a module path belongs to: its own `unet.` / `text_encoder.` prefix, or, for a
/// path inside one model (a PEFT adapter on a UNet), what its first segment says. Anything
/// that is neither a UNet nor a DiT block is taken as a text encoder, kohya's `lora_te_`.
pub fn component_of(path: &str) -> (Component, &str) {
    if let Some(split) = split_component(path) {
        return split;
    }
    let root = path.split('.').next().unwrap_or(path);
    let c = if UNET_ROOTS.contains(&root) {
        Component::Unet
    } else if TRANSFORMER_ROOTS.contains(&root) {
        Component::Transformer
    } else {
        Component::TextEncoder
    };
    (c, path)
}

/// The kohya stem of a dotted module path: the prefix chosen from the path (or `forced`), then
/// the path inside its component with `.` flattened to `_`.
pub fn kohya_stem(path: &str, forced: Option<KohyaPrefix>, two_text_encoders: bool) -> String {
    let (component, inner) = component_of(path);
    let prefix = forced.unwrap_or_else(|| component.kohya_prefix(two_text_encoders));
    format!("{}{}", prefix.as_str(), inner.replace('.', "_"))
}

/// `stem` with its kohya prefix replaced by `prefix` (added when it had none).
pub fn reprefix(stem: &str, prefix: KohyaPrefix) -> String {
    let rest = KohyaPrefix::of_stem(stem)
        .map(|p| &stem[p.as_str().len()..])
        .unwrap_or_else(|| stem.strip_prefix("lora_").unwrap_or(stem));
    format!("{}{rest}", prefix.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_the_module_names() {
        assert_eq!(
            kohya_stem(
                "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
                None,
                false
            ),
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
        );
        assert_eq!(
            kohya_stem("unet.mid_block.attentions.0.proj_in", None, false),
            "lora_unet_mid_block_attentions_0_proj_in"
        );
        assert_eq!(
            kohya_stem(
                "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
                None,
                true
            ),
            "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
        );
        assert_eq!(
            kohya_stem("text_encoder_2.text_model.x", None, true),
            "lora_te2_text_model_x"
        );
        assert_eq!(
            kohya_stem("model.layers.0.self_attn.q_proj", None, false),
            "lora_te_model_layers_0_self_attn_q_proj"
        );
        assert_eq!(
            kohya_stem("model.layers.0.q", Some(KohyaPrefix::Unet), false),
            "lora_unet_model_layers_0_q"
        );
        assert_eq!(
            kohya_stem("transformer.h.0.attn.c_attn", None, false),
            "lora_te_transformer_h_0_attn_c_attn"
        );
        assert_eq!(reprefix("lora_te1_x_y", KohyaPrefix::Te2), "lora_te2_x_y");
        assert_eq!(
            kohya_stem("transformer.h.0.attn.c_attn", None, false),
            "lora_te_transformer_h_0_attn_c_attn"
        );
        assert_eq!(reprefix("lora_x_y", KohyaPrefix::Unet), "lora_unet_x_y");
    }
}
