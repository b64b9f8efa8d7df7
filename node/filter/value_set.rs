//! The operand of `$in` / `$nin`: a hash set, so that a row's membership test costs
//! one lookup per element instead of a scan of the whole list (a 50,000-value `$in`
//! would otherwise be 50,000 comparisons per row, under the collection's read lock).

use serde_json::Value;
use std::collections::HashSet;

/// A hashable stand-in for the JSON scalars: equal exactly when `eval::equal` says
/// the values are equal (numbers compare as f64, so `1` and `1.0` are one key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Null,
    Bool(bool),
    /// The bits of the f64, with -0.0 folded into 0.0.
    Number(u64),
    String(String),
}

fn key(value: &Value) -> Option<Key> {
    Some(match value {
        Value::Null => Key::Null,
        Value::Bool(b) => Key::Bool(*b),
        Value::Number(n) => {
            let f = n.as_f64()?;
            // NaN cannot come from JSON; -0.0 == 0.0 as f64 comparison says.
            let f = if f == 0.0 { 0.0 } else { f };
            Key::Number(f.to_bits())
        }
        Value::String(s) => Key::String(s.clone()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// The values of an `$in` list.
#[derive(Debug, Clone)]
pub struct ValueSet {
    scalars: HashSet<Key>,
    /// Arrays and objects, compared one by one (rare in practice).
    composites: Vec<Value>,
    /// The list as given, for equality between parsed filters (the mask cache).
    original: Vec<Value>,
}

impl ValueSet {
    pub fn new(values: Vec<Value>) -> ValueSet {
        let mut scalars = HashSet::with_capacity(values.len());
        let mut composites = Vec::new();
        for v in &values {
            match key(v) {
                Some(k) => {
                    scalars.insert(k);
                }
                None => composites.push(v.clone()),
            }
        }
        ValueSet {
            scalars,
            composites,
            original: values,
        }
    }

    /// Whether `value` equals one of the set's values (`equal` decides composites).
    pub fn contains(&self, value: &Value, equal: impl Fn(&Value, &Value) -> bool) -> bool {
        match key(value) {
            Some(k) => self.scalars.contains(&k),
            None => self.composites.iter().any(|c| equal(value, c)),
        }
    }

    pub fn len(&self) -> usize {
        self.original.len()
    }

    pub fn is_empty(&self) -> bool {
        self.original.is_empty()
    }
}

impl PartialEq for ValueSet {
    fn eq(&self, other: &Self) -> bool {
        self.original == other.original
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_strings_and_composites_match_as_equality_does() {
        let set = ValueSet::new(vec![
            json!(1),
            json!("a"),
            json!(null),
            json!(-0.0),
            json!([1, 2]),
        ]);
        let eq = |a: &Value, b: &Value| a == b;
        assert!(set.contains(&json!(1.0), eq));
        assert!(set.contains(&json!(0), eq), "-0.0 equals 0");
        assert!(set.contains(&json!("a"), eq));
        assert!(set.contains(&json!(null), eq));
        assert!(set.contains(&json!([1, 2]), eq));
        assert!(!set.contains(&json!("b"), eq));
        assert!(!set.contains(&json!(2), eq));
        assert!(!set.contains(&json!(true), eq));
        assert_eq!(set.len(), 5);
    }
}
