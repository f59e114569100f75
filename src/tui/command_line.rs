//! The `lora-lego merge …` command line that reproduces an export made in the explorer.

use std::path::{Path, PathBuf};

use crate::recipe::MergeSettings;

/// The arguments after `lora-lego` (starting with `merge`) that redo `settings` on `adapters`
/// into `out`. Every knob that shapes the merge is spelled out, so the line does not depend
/// on the CLI's defaults staying the same.
pub fn merge_args(settings: &MergeSettings, adapters: &[PathBuf], out: &Path) -> Vec<String> {
    // What the CLI starts from for this method: a knob equal to it need not be spelled out.
    let d = MergeSettings::preset(settings.method);
    let mut v: Vec<String> = vec!["merge".into()];
    v.extend(adapters.iter().map(|p| p.display().to_string()));
    v.push("-o".into());
    v.push(out.display().to_string());
    v.push("-k".into());
    v.push(settings.k.to_string());
    v.push("--method".into());
    v.push(settings.method.to_string());
    if !settings.weights.is_empty() {
        // `=` keeps a leading minus sign from reading as a flag.
        let w: Vec<String> = settings.weights.iter().map(|w| w.to_string()).collect();
        v.push(format!("--weights={}", w.join(",")));
    }
    v.push(format!("--param-reweight={}", settings.param_reweight));
    v.push(format!("--output-reweight={}", settings.output_reweight));
    v.push(format!("--output-scale={}", settings.output_scale));
    v.push(format!("--space={}", settings.space));
    v.push(format!("--seed={}", settings.seed));
    v.push(format!("--n-init={}", settings.n_init));
    if settings.max_iter != d.max_iter {
        v.push(format!("--max-iter={}", settings.max_iter));
    }
    if settings.tol != d.tol {
        v.push(format!("--tol={}", settings.tol));
    }
    for o in &settings.k_overrides {
        v.push("--k-for".into());
        v.push(format!("{}={}", o.pattern, o.k));
    }
    if let Some(r) = settings.svd_rank {
        v.push(format!("--svd-rank={r}"));
    }
    if let Some(density) = settings.density {
        v.push(format!("--density={density}"));
    }
    if let Some(scale) = settings.scale {
        v.push(format!("--scale={scale}"));
    }
    if settings.units != d.units {
        v.push(format!("--units={}", settings.units));
    }
    if settings.kc != d.kc {
        v.push(format!("--kc={}", settings.kc));
    }
    if settings.post != d.post {
        v.push(format!("--post={}", settings.post));
    }
    if settings.ensemble != d.ensemble {
        v.push(format!("--ensemble={}", settings.ensemble));
    }
    if let Some(f) = settings.rank_fraction {
        v.push(format!("--rank-fraction={f}"));
    }
    if let Some(f) = settings.common_fraction {
        v.push(format!("--common-fraction={f}"));
    }
    if settings.majority_sign != d.majority_sign {
        v.push(format!("--majority-sign={}", settings.majority_sign));
    }
    if let Some(q) = settings.svd_clamp {
        v.push(format!("--svd-clamp={q}"));
    }
    v.push(format!("--format={}", settings.format));
    v.push(format!(
        "--dtype={}",
        settings
            .dtype
            .map(|d| d.to_string().to_ascii_lowercase())
            .unwrap_or_else(|| "source".into())
    ));
    for h in &settings.keep_heads {
        v.push("--keep-heads".into());
        v.push(h.clone());
    }
    v
}

/// The full command, quoted for a POSIX shell.
pub fn render(settings: &MergeSettings, adapters: &[PathBuf], out: &Path) -> String {
    std::iter::once("lora-lego".to_string())
        .chain(merge_args(settings, adapters, out).iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes `s` for a POSIX shell only when it needs it.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{KOverride, OutputReweight};

    #[test]
    fn quoting_keeps_plain_words_and_wraps_the_rest() {
        assert_eq!(quote("a/b-c.d"), "a/b-c.d");
        assert_eq!(quote("my dir"), "'my dir'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("*.mlp.*=4"), "'*.mlp.*=4'");
    }

    #[test]
    fn every_changed_knob_is_on_the_line() {
        let s = MergeSettings {
            k: 5,
            weights: vec![-0.5, 1.0],
            output_reweight: OutputReweight::Value(4.0),
            output_scale: 1.2,
            seed: 7,
            k_overrides: vec![KOverride::new("m.q", 3)],
            ..Default::default()
        };
        let line = render(&s, &["a".into(), "b c".into()], Path::new("out"));
        assert_eq!(
            line,
            "lora-lego merge a 'b c' -o out -k 5 --method lego --weights=-0.5,1 \
             --param-reweight=linf --output-reweight=4 --output-scale=1.2 --space=plain \
             --seed=7 --n-init=10 --k-for m.q=3 --format=peft --dtype=source"
        );
    }
}
