use super::{Cond, Filter, ValueSet};
use crate::model::Metadata;
use serde_json::Value;
use std::cmp::Ordering;

pub(super) fn matches(filter: &Filter, metadata: Option<&Metadata>) -> bool {
    match filter {
        Filter::And(fs) => fs.iter().all(|f| matches(f, metadata)),
        Filter::Or(fs) => fs.iter().any(|f| matches(f, metadata)),
        Filter::Not(f) => !matches(f, metadata),
        Filter::Field { path, cond } => holds(cond, lookup(metadata, path)),
    }
}

/// The value at a dotted path, or `None` if any segment is missing. Numeric segments
/// index into arrays (`"tags.0"`).
fn lookup<'a>(metadata: Option<&'a Metadata>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut current = metadata?.get(first)?;
    for segment in rest {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// MongoDB semantics: a condition on an array field holds if it holds for the array
/// itself or for any element; `$ne` and `$nin` are the negations of `$eq` and `$in`,
/// so they also match documents without the field.
fn holds(cond: &Cond, value: Option<&Value>) -> bool {
    match cond {
        Cond::Exists(want) => value.is_some() == *want,
        Cond::Eq(target) => eq(target, value),
        Cond::Ne(target) => !eq(target, value),
        Cond::In(targets) => is_in(targets, value),
        Cond::Nin(targets) => !is_in(targets, value),
        Cond::Gt(t) => compare_any(value, t, |o| o == Ordering::Greater),
        Cond::Gte(t) => compare_any(value, t, |o| o != Ordering::Less),
        Cond::Lt(t) => compare_any(value, t, |o| o == Ordering::Less),
        Cond::Lte(t) => compare_any(value, t, |o| o != Ordering::Greater),
        Cond::Not(conds) => !conds.iter().all(|c| holds(c, value)),
        Cond::All(conds) => conds.iter().all(|c| holds(c, value)),
    }
}

fn eq(target: &Value, value: Option<&Value>) -> bool {
    value.is_some_and(|v| any_element(v, |x| equal(x, target)))
}

fn is_in(targets: &ValueSet, value: Option<&Value>) -> bool {
    value.is_some_and(|v| any_element(v, |x| targets.contains(x, equal)))
}

fn any_element(v: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    pred(v) || matches!(v, Value::Array(items) if items.iter().any(&pred))
}

fn compare_any(value: Option<&Value>, target: &Value, accept: impl Fn(Ordering) -> bool) -> bool {
    value.is_some_and(|v| any_element(v, |x| compare(x, target).is_some_and(&accept)))
}

/// Numbers compare numerically (1 == 1.0) and strings lexicographically; other pairs
/// are incomparable, so range operators never match across types.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}
