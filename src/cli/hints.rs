//! The command line's part of an error: the flag that gets the user past it. The library
//! names what is wrong; only the front end knows which of its controls changes that.

use lora_lego::LegoError;

/// The flag hint for the first library error in `e`'s chain, if a flag answers it.
pub fn flag_hint(e: &anyhow::Error) -> Option<&'static str> {
    let lego = e.chain().find_map(|c| c.downcast_ref::<LegoError>())?;
    match lego {
        LegoError::OutputExists { .. } => Some("pass --force to replace it"),
        LegoError::NonFinite { .. } => Some("pass --allow-nonfinite to proceed anyway"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_flag_through_context() {
        let exists =
            anyhow::Error::from(LegoError::OutputExists { path: "o".into() }).context("writing o");
        assert_eq!(flag_hint(&exists), Some("pass --force to replace it"));
        let nonfinite = anyhow::Error::from(LegoError::NonFinite {
            path: "a".into(),
            tensor: "t".into(),
            count: 1,
        });
        assert!(flag_hint(&nonfinite).is_some_and(|h| h.contains("--allow-nonfinite")));
        assert_eq!(flag_hint(&anyhow::anyhow!("other")), None);
    }
}
