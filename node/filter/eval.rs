use super::{Cond, Filter, Segment, ValueSet};
use crate::model::Metadata;
use serde_json::Value;
use std::cmp::Ordering;

pub(super) fn matches(filter: &Filter, id: &str, metadata: Option<&Metadata>) -> bool {
    match filter {
        Filter::And(fs) => fs.iter().all(|f| matches(f, id, metadata)),
        Filter::Or(fs) => fs.iter().any(|f| matches(f, id, metadata)),
        Filter::Not(f) => !matches(f, id, metadata),
        Filter::AtLeast { min, filters } => {
            filters.iter().filter(|f| matches(f, id, metadata)).count() >= *min
        }
        Filter::HasId(ids) => ids.contains(id),
        Filter::Field { path, cond } => match lookup(metadata, path) {
            Found::Missing => holds(cond, None),
            Found::One(value) => holds(cond, Some(value)),
            Found::Many(values) => holds_for_all_of(cond, &values),
        },
        Filter::Nested { path, filter } => {
            let arrays = match lookup(metadata, path) {
                Found::Missing => Vec::new(),
                Found::One(value) => vec![value],
                Found::Many(values) => values,
            };
            // Only arrays of objects are looked into, as in Qdrant.
            arrays
                .into_iter()
                .filter_map(|v| match v {
                    Value::Array(items) => Some(items),
                    _ => None,
                })
                .flatten()
                .any(|element| match element {
                    Value::Object(object) => matches(filter, id, Some(object)),
                    _ => false,
                })
        }
    }
}

/// What a path reaches: one value (or none) on a path without `[]`, any number on
/// a path through `[]`.
enum Found<'a> {
    Missing,
    One(&'a Value),
    Many(Vec<&'a Value>),
}

/// The values at a path. `Name`s index into arrays when decimal (`"tags.0"`), `Key`s
/// never do; `Each` steps into every element of an array.
fn lookup<'a>(metadata: Option<&'a Metadata>, path: &[Segment]) -> Found<'a> {
    let Some(metadata) = metadata else {
        return Found::Missing;
    };
    let Some((Segment::Name(first) | Segment::Key(first), rest)) = path.split_first() else {
        return Found::Missing;
    };
    let Some(mut current) = metadata.get(first) else {
        return Found::Missing;
    };
    for (i, segment) in rest.iter().enumerate() {
        if *segment == Segment::Each {
            let mut values = Vec::new();
            collect_each(current, &rest[i..], &mut values);
            return Found::Many(values);
        }
        match step(current, segment) {
            Some(next) => current = next,
            None => return Found::Missing,
        }
    }
    Found::One(current)
}

fn step<'a>(value: &'a Value, segment: &Segment) -> Option<&'a Value> {
    match (segment, value) {
        (Segment::Name(name) | Segment::Key(name), Value::Object(map)) => map.get(name),
        (Segment::Name(name), Value::Array(items)) => items.get(name.parse::<usize>().ok()?),
        (Segment::Index(i), Value::Array(items)) => items.get(*i),
        _ => None,
    }
}

/// Follows `path` (which starts at an `Each`) from `value` into every branch; an
/// `Each` on anything but an array reaches nothing.
fn collect_each<'a>(value: &'a Value, path: &[Segment], out: &mut Vec<&'a Value>) {
    let Some((segment, rest)) = path.split_first() else {
        out.push(value);
        return;
    };
    if *segment == Segment::Each {
        if let Value::Array(items) = value {
            items.iter().for_each(|v| collect_each(v, rest, out));
        }
    } else if let Some(next) = step(value, segment) {
        collect_each(next, rest, out);
    }
}

/// A condition over the values an `[]` path reached: a positive condition holds if
/// it holds for any of them (`values_count` included: each value is counted on its
/// own, as Qdrant does), a negated one (`$ne`, `$nin`, `$not`) if for none.
fn holds_for_all_of(cond: &Cond, values: &[&Value]) -> bool {
    match cond {
        Cond::Exists(want) => values.is_empty() != *want,
        Cond::Ne(target) => !values.iter().any(|v| eq(target, Some(v))),
        Cond::Nin(targets) => !values.iter().any(|v| is_in(targets, Some(v))),
        Cond::Not(conds) => !values
            .iter()
            .any(|v| conds.iter().all(|c| holds(c, Some(v)))),
        Cond::All(conds) => conds.iter().all(|c| holds_for_all_of(c, values)),
        Cond::Empty => values.iter().all(|v| values_in(Some(v)) == 0),
        positive => values.iter().any(|v| holds(positive, Some(v))),
    }
}

fn values_in(value: Option<&Value>) -> u64 {
    match value {
        None | Some(Value::Null) => 0,
        Some(Value::Array(items)) => items.len() as u64,
        Some(_) => 1,
    }
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
        Cond::Contains(text) => value.is_some_and(|v| {
            any_element(
                v,
                |x| matches!(x, Value::String(s) if s.contains(text.as_str())),
            )
        }),
        Cond::ValuesCount(range) => range.holds(values_in(value)),
        Cond::Keyword(set) => value.is_some_and(|v| any_element(v, |x| set.contains(x))),
        Cond::ExceptKeyword(set) => value.is_some_and(|v| match v {
            Value::Array(items) => items.iter().any(|x| !x.is_null() && !set.contains(x)),
            Value::Null => false,
            x => !set.contains(x),
        }),
        Cond::Empty => values_in(value) == 0,
        Cond::Null => value.is_some_and(Value::is_null),
        Cond::OneValue(conds) => value.is_some_and(|v| {
            let one = |x: &Value| conds.iter().all(|c| holds(c, Some(x)));
            match v {
                Value::Array(items) => items.iter().any(one),
                x => one(x),
            }
        }),
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
