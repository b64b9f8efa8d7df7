//! MongoDB-style metadata filters.
//!
//! A filter is parsed once per request into a [`Filter`] tree and evaluated against
//! each row's metadata to build the allow-mask the search kernels take. Parsing
//! rejects anything it does not understand, so a typo in an operator is an error, not
//! a filter that silently matches nothing.

pub(crate) mod budget;
mod eval;
mod parse;
mod value_set;

use serde_json::Value;
use std::collections::HashSet;
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
    /// At least `min` of the filters hold (Qdrant's `min_should`).
    AtLeast {
        min: usize,
        filters: Vec<Filter>,
    },
    /// A condition on the value at a path (`"a.b.c"` → three names).
    Field {
        path: Vec<Segment>,
        cond: Cond,
    },
    /// Some object in the array at `path` passes `filter` on its own (Qdrant's
    /// `nested`): unlike conditions on `a[].x` and `a[].y`, which may each hold for a
    /// different element, every condition of `filter` must hold for the same one.
    Nested {
        path: Vec<Segment>,
        filter: Box<Filter>,
    },
    /// The vector's id is one of these.
    HasId(HashSet<String>),
}

/// One step of a path into the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object's key; on an array, a decimal name indexes it (`"tags.0"`), as
    /// native filters always did.
    Name(String),
    /// An object's key only (Qdrant's paths, where `tags.0` is a key).
    Key(String),
    /// An array's element (Qdrant's `key[2]`).
    Index(usize),
    /// Every element of an array (Qdrant's `key[]`): the condition holds if it holds
    /// for any of them. Reaches nothing on a value that is not an array.
    Each,
}

/// Exact scalars, as Qdrant's `match` compares them: strings, integers (exactly,
/// as 64-bit values: never equal to a float, so two large ids that round to the
/// same f64 stay apart) and booleans.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Keywords {
    pub strings: HashSet<String>,
    pub integers: HashSet<i128>,
    pub booleans: Vec<bool>,
}

impl Keywords {
    /// Whether `value` is one of the keywords; other kinds of value never are.
    pub fn contains(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.strings.contains(s),
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .is_some_and(|i| self.integers.contains(&i)),
            Value::Bool(b) => self.booleans.contains(b),
            _ => false,
        }
    }
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
    /// A string value containing this text (Qdrant's `match.text` on a field without
    /// a full-text index, which is exact substring match).
    Contains(String),
    /// How many values the field holds: an array's length, 1 for another value, 0
    /// when missing or null (Qdrant's `values_count`).
    ValuesCount(CountRange),
    /// The value, or an element of it, is one of these (Qdrant's `match.value` and
    /// `match.any`).
    Keyword(Keywords),
    /// The value, or an element of it, is a non-null value not among these; a
    /// missing field, null and `[]` do not match (Qdrant's `match.except`).
    ExceptKeyword(Keywords),
    /// Every condition holds for one and the same value or element (Qdrant's
    /// `range`, whose bounds apply to one element of an array, not each to any).
    OneValue(Vec<Cond>),
    /// No value: missing, null or `[]`; through `[]`, every value reached is
    /// (Qdrant's `is_empty`).
    Empty,
    /// The value itself is null, not an element of it (Qdrant's `is_null`).
    Null,
}

/// Bounds on a count; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CountRange {
    pub gt: Option<u64>,
    pub gte: Option<u64>,
    pub lt: Option<u64>,
    pub lte: Option<u64>,
}

impl CountRange {
    pub fn holds(&self, n: u64) -> bool {
        self.gt.is_none_or(|b| n > b)
            && self.gte.is_none_or(|b| n >= b)
            && self.lt.is_none_or(|b| n < b)
            && self.lte.is_none_or(|b| n <= b)
    }
}

impl Filter {
    /// Parses a filter document; the error message says where it is wrong. A filter
    /// past [`MAX_FILTER_CONDITIONS`] or [`MAX_FILTER_VALUES`] is refused: its cost is
    /// paid for every row of the collection.
    pub fn parse(value: &Value) -> Result<Filter, String> {
        parse::parse(value)
    }

    /// Whether a vector with this metadata passes the filter. Vectors without
    /// metadata are evaluated as an empty object. A `HasId` condition needs the id:
    /// see [`Filter::matches_point`].
    pub fn matches(&self, metadata: Option<&crate::model::Metadata>) -> bool {
        eval::matches(self, "", metadata)
    }

    /// Whether the vector `id` with this metadata passes the filter.
    pub fn matches_point(&self, id: &str, metadata: Option<&crate::model::Metadata>) -> bool {
        eval::matches(self, id, metadata)
    }
}

#[cfg(test)]
mod tests;
