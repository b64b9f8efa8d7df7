//! MongoDB-style metadata filters.
//!
//! A filter is parsed once per request into a [`Filter`] tree and evaluated against
//! each row's metadata to build the allow-mask the search kernels take. Parsing
//! rejects anything it does not understand, so a typo in an operator is an error, not
//! a filter that silently matches nothing.

mod eval;
mod parse;
mod value_set;

use serde_json::Value;
pub use value_set::ValueSet;

/// The most operators and field conditions one filter may have.
pub const MAX_FILTER_CONDITIONS: usize = 1024;
/// The most values all of a filter's `$in` and `$nin` lists may hold together.
pub const MAX_FILTER_VALUES: usize = 65_536;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// A condition on the value at a dotted path (`"a.b.c"` → `["a","b","c"]`).
    Field {
        path: Vec<String>,
        cond: Cond,
    },
}

/// A condition on one field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(ValueSet),
    Nin(ValueSet),
    Exists(bool),
    /// `{"field": {"$not": {...}}}`: negation of the conditions inside.
    Not(Vec<Cond>),
    /// Several operators on one field, all of which must hold.
    All(Vec<Cond>),
}

impl Filter {
    /// Parses a filter document; the error message says where it is wrong. A filter
    /// past [`MAX_FILTER_CONDITIONS`] or [`MAX_FILTER_VALUES`] is refused: its cost is
    /// paid for every row of the collection.
    pub fn parse(value: &Value) -> Result<Filter, String> {
        parse::parse(value)
    }

    /// Whether a vector with this metadata passes the filter. Vectors without
    /// metadata are evaluated as an empty object.
    pub fn matches(&self, metadata: Option<&crate::model::Metadata>) -> bool {
        eval::matches(self, metadata)
    }
}

#[cfg(test)]
mod tests;
