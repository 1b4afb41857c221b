//! The team's hierarchy levels (`--hierarchy-levels`): which customers may be parents of
//! which, as the Customer API's own levels do.

use super::store::{Reply, error};

/// The hierarchy levels of a team that has not asked for others, highest first. Explo's
/// Customer Hierarchy page (docs.explo.co/customers/customer-hierarchy) names `Customer` over
/// `User` as the two-tier hierarchy it expects most teams to use.
pub const DEFAULT_HIERARCHY_LEVELS: [&str; 2] = ["Customer", "User"];
/// The most hierarchy levels a team can have: "Explo can accommodate up to three layers of any
/// desired hierarchy" (the same page).
pub const MAX_HIERARCHY_LEVELS: usize = 3;

/// A team's hierarchy levels, highest first: 1 to [`MAX_HIERARCHY_LEVELS`] distinct,
/// non-empty names. Explo support sets these up per team (explo-api.md §3.1); a customer
/// created without `hierarchy_level_name` goes at the first (the root, "highest" level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HierarchyLevels(Vec<String>);

impl HierarchyLevels {
    /// The levels `names`, highest first, or why they cannot be a team's hierarchy.
    pub fn new<I, S>(names: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.is_empty() || names.len() > MAX_HIERARCHY_LEVELS {
            return Err(format!(
                "expected 1 to {MAX_HIERARCHY_LEVELS} level names, highest first; got {}",
                names.len()
            ));
        }
        for (at, name) in names.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(format!("level {} has an empty name", at + 1));
            }
            if names[..at].contains(name) {
                return Err(format!("level `{name}` is named twice"));
            }
        }
        Ok(Self(names))
    }

    /// Comma-separated names, highest first, e.g. `Region,Customer,User`; spaces around each
    /// name are dropped.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::new(text.split(',').map(str::trim))
    }

    /// The names, highest first.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    pub(super) fn name(&self, index: usize) -> &str {
        &self.0[index]
    }

    pub(super) fn lowest(&self) -> usize {
        self.0.len() - 1
    }

    pub(super) fn index(&self, name: &str) -> Result<usize, Reply> {
        self.0
            .iter()
            .position(|level| level == name)
            .ok_or_else(|| {
                error(
                    400,
                    format!(
                        "hierarchy level `{name}` does not exist; levels, highest first: {:?}",
                        self.0
                    ),
                )
            })
    }
}

impl Default for HierarchyLevels {
    fn default() -> Self {
        Self(DEFAULT_HIERARCHY_LEVELS.map(str::to_owned).to_vec())
    }
}
