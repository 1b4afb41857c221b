//! What overrides the config file: a value given as a flag or an `EXPLO_SHIM_*` variable, with
//! where it came from. [`Overrides`](super::Overrides), one field per flag, is made from the
//! settings table ([`super::table`]).

/// A value given on the command line or in the environment, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    /// `--flag` or `EXPLO_SHIM_VAR`, for error messages and `--check-config`.
    pub origin: &'static str,
}
