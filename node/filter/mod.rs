//! MongoDB-style metadata filters.
//!
//! A filter is parsed once per request into a [`Filter`] tree and evaluated against
//! each row's metadata to build the allow-mask the search kernels take. Parsing
//! rejects anything it does not understand, so a typo in an operator is an error, not
//! a filter that silently matches nothing.

mod eval;
mod parse;

use serde_json::Value;

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
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    /// `{"field": {"$not": {...}}}`: negation of the conditions inside.
    Not(Vec<Cond>),
    /// Several operators on one field, all of which must hold.
    All(Vec<Cond>),
}

impl Filter {
    /// Parses a filter document; the error message says where it is wrong.
    pub fn parse(value: &Value) -> Result<Filter, String> {
        parse::filter(value)
    }

    /// Whether a vector with this metadata passes the filter. Vectors without
    /// metadata are evaluated as an empty object.
    pub fn matches(&self, metadata: Option<&crate::model::Metadata>) -> bool {
        eval::matches(self, metadata)
    }
}

#[cfg(test)]
mod tests;
