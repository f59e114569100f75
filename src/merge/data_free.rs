//! The registry of data-free merge methods (2023–2025), each one type behind
//! [`CoreMethod`] in its own file, all computed in the core space of a module ([`super::core_space::CoreSpace`]).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use super::core_space::CoreBasis;
pub use super::method::{CoreMethod, Merged, MethodParams, MethodSpec};

/// Every data-free method, in the order shown; a new method is one line here.
pub static REGISTRY: [&MethodSpec; 8] = [
    &super::task_arithmetic::SPEC,
    &super::tsv::SPEC,
    &super::iso::ISO_C,
    &super::iso::ISO_CTS,
    &super::cart::SPEC,
    &super::core_ties::SPEC,
    &super::knots::KNOTS_TIES,
    &super::knots::KNOTS_DARE_TIES,
];

/// A registered data-free method.
#[derive(Clone, Copy)]
pub struct DataFreeMethod(&'static MethodSpec);

impl DataFreeMethod {
    /// Every registered method, in the order shown.
    pub fn all() -> impl Iterator<Item = DataFreeMethod> {
        REGISTRY.iter().map(|spec| DataFreeMethod(spec))
    }

    /// The command-line and recipe name.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The default of the method's global coefficient (λ or α).
    pub fn default_scale(self) -> f64 {
        self.0.default_scale
    }

    /// The default density (fraction kept), for the methods that prune.
    pub fn default_density(self) -> Option<f64> {
        self.0.default_density
    }

    /// The bases the method's core space is built in.
    pub fn basis(self) -> CoreBasis {
        self.0.basis
    }

    /// The method with its parameters: `scale` its λ/α, `density` the fraction kept (TIES
    /// trim, or DARE's keep probability for `knots_dare_ties`), `rank_fraction` CART's,
    /// `common_fraction` Iso-CTS's; what is absent takes the published default.
    pub fn build(self, p: &DataFreeParams) -> Box<dyn CoreMethod> {
        (self.0.build)(&MethodParams {
            scale: p.scale.unwrap_or(self.default_scale()),
            density: p.density.or(self.default_density()).unwrap_or(1.0),
            rank_fraction: p.rank_fraction,
            common_fraction: p.common_fraction,
        })
    }
}

// Identity is the name: specs are unique statics, but comparing names does not depend on
// where the linker put them.
impl PartialEq for DataFreeMethod {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for DataFreeMethod {}

impl Hash for DataFreeMethod {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for DataFreeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataFreeMethod({})", self.name())
    }
}

/// The settings a data-free method reads; `None` takes the method's published default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DataFreeParams {
    /// λ / α.
    pub scale: Option<f64>,
    /// Fraction of entries kept.
    pub density: Option<f64>,
    /// CART: rank of each deviation as a fraction of the core size.
    pub rank_fraction: Option<f64>,
    /// Iso-CTS: the common subspace's fraction of the core size.
    pub common_fraction: Option<f64>,
}

impl fmt::Display for DataFreeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataFreeMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DataFreeMethod::all()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown data-free method `{s}`"))
    }
}
