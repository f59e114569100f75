//! The settings' enums as `clap` value lists, so `--help` lists the values, shell completions
//! offer them and a wrong value is a usage error. Spelled by each type's `Display`, the same
//! names recipes hold.

use std::sync::LazyLock;

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::merge::baselines::MajoritySign;
use crate::settings::{FeatureSpace, MergeMethod, ParamReweight, PostStep, UnitBasis};

/// Implements `ValueEnum` for a type with `Display` from its list of values, with aliases.
macro_rules! value_enum {
    ($ty:ty, [$($v:expr),* $(,)?] $(, aliases { $($variant:expr => $alias:literal),* })?) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($v),*]
            }
            fn to_possible_value(&self) -> Option<PossibleValue> {
                #[allow(unused_mut)]
                let mut pv = PossibleValue::new(self.to_string());
                $($(if *self == $variant { pv = pv.alias($alias); })*)?
                Some(pv)
            }
        }
    };
}

value_enum!(
    FeatureSpace,
    [
        FeatureSpace::Plain,
        FeatureSpace::SignAware,
        FeatureSpace::Balanced
    ]
);
value_enum!(
    ParamReweight,
    [ParamReweight::Linf, ParamReweight::L2, ParamReweight::Off]
);
value_enum!(
    UnitBasis,
    [UnitBasis::Raw, UnitBasis::Svd, UnitBasis::Centred],
    aliases { UnitBasis::Centred => "centered" }
);
value_enum!(PostStep, [PostStep::None, PostStep::Iso, PostStep::Tsv]);
value_enum!(MajoritySign, [MajoritySign::Total, MajoritySign::Frequency]);

static METHODS: LazyLock<Vec<MergeMethod>> = LazyLock::new(MergeMethod::all);

impl ValueEnum for MergeMethod {
    fn value_variants<'a>() -> &'a [Self] {
        METHODS.as_slice()
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        let pv = PossibleValue::new(self.to_string());
        Some(match self {
            MergeMethod::LegoTsv => pv.alias("lego_tsv"),
            _ => pv,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_parses_back_through_clap_and_from_str() {
        for m in MergeMethod::value_variants() {
            let name = m.to_string();
            assert_eq!(MergeMethod::from_str(&name, false).ok(), Some(*m));
            assert_eq!(name.parse::<MergeMethod>().ok(), Some(*m));
        }
        assert_eq!(
            MergeMethod::from_str("lego_tsv", false).ok(),
            Some(MergeMethod::LegoTsv)
        );
        assert_eq!(
            UnitBasis::from_str("centered", false).ok(),
            Some(UnitBasis::Centred)
        );
        assert_eq!(
            FeatureSpace::from_str("sign-aware", false).ok(),
            Some(FeatureSpace::SignAware)
        );
    }
}
