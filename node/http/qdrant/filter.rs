//! Qdrant filters, translated into needle's filter engine (`crate::filter`): one
//! engine evaluates both APIs' filters, so they cannot drift apart.
//!
//! `must` is AND, `should` is OR (an empty list matches nothing, as in Qdrant),
//! `must_not` is NOT OR, `min_should` is "at least n of". Conditions: `match` (`value`, `any`,
//! `except`, `text` as substring match, which is what Qdrant does on a field
//! without a full-text index), `range` on numbers, `values_count`, `is_empty`,
//! `is_null`, `has_id`, `nested`, and nested filters. Keys are dotted paths where
//! `key[]` steps into every element of an array. Anything else (geo conditions,
//! datetime ranges, `has_vector`, ...) is refused with a message naming it.

use super::point_id::PointId;
use crate::filter::budget::Budget;
use crate::filter::{Cond, CountRange, Filter, Keywords, Segment};
use serde_json::{Map, Value};

/// Translates a Qdrant filter document; the error says what is wrong or which
/// feature needle does not have.
pub fn translate(value: &Value) -> Result<Filter, String> {
    filter(value, &mut Translation::default())
}

/// What a translation carries down the filter: its cost so far, and how many
/// `nested` conditions it is inside (where `has_id` means nothing: an array
/// element has no id).
#[derive(Default)]
struct Translation {
    budget: Budget,
    nesting: usize,
}

fn filter(value: &Value, cx: &mut Translation) -> Result<Filter, String> {
    let Value::Object(doc) = value else {
        return Err("a filter must be a JSON object".into());
    };
    let mut parts = Vec::new();
    for (key, clause) in doc {
        if clause.is_null() {
            continue;
        }
        match key.as_str() {
            "must" => parts.push(Filter::And(conditions(clause, cx)?)),
            "should" => parts.push(Filter::Or(conditions(clause, cx)?)),
            "must_not" => parts.push(Filter::Not(Box::new(Filter::Or(conditions(clause, cx)?)))),
            "min_should" => parts.push(min_should(clause, cx)?),
            other => return Err(format!("unknown filter clause {other:?}")),
        }
    }
    Ok(Filter::And(parts))
}

/// A clause holds one condition or a list of them.
fn conditions(value: &Value, cx: &mut Translation) -> Result<Vec<Filter>, String> {
    match value {
        Value::Array(items) => items.iter().map(|c| condition(c, cx)).collect(),
        one => Ok(vec![condition(one, cx)?]),
    }
}

fn min_should(value: &Value, cx: &mut Translation) -> Result<Filter, String> {
    let Value::Object(fields) = value else {
        return Err("min_should must be an object {\"conditions\", \"min_count\"}".into());
    };
    let min = fields
        .get("min_count")
        .and_then(Value::as_u64)
        .ok_or("min_should needs min_count, an unsigned integer")?;
    let filters = conditions(
        fields
            .get("conditions")
            .ok_or("min_should needs conditions")?,
        cx,
    )?;
    Ok(Filter::AtLeast {
        min: usize::try_from(min).unwrap_or(usize::MAX),
        filters,
    })
}

fn condition(value: &Value, cx: &mut Translation) -> Result<Filter, String> {
    cx.budget.condition()?;
    let Value::Object(fields) = value else {
        return Err("a condition must be a JSON object".into());
    };
    if fields.contains_key("key") {
        return field_condition(fields, cx);
    }
    if let Some(ids) = fields.get("has_id") {
        return has_id(ids, cx);
    }
    if let Some(target) = fields.get("is_empty") {
        return Ok(is_empty(path(payload_field_key(target, "is_empty")?)?));
    }
    if let Some(target) = fields.get("is_null") {
        return Ok(is_null(path(payload_field_key(target, "is_null")?)?));
    }
    if let Some(nested) = fields.get("nested") {
        return nested_condition(nested, cx);
    }
    if fields.contains_key("has_vector") {
        return Err("has_vector is not supported: needle collections have one unnamed vector, which every point has".into());
    }
    // Anything else is a nested filter (`{"must": [...]}`, or `{}`, which matches all).
    filter(value, cx)
}

fn payload_field_key<'a>(target: &'a Value, what: &str) -> Result<&'a str, String> {
    target
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} takes {{\"key\": \"...\"}}"))
}

fn has_id(ids: &Value, cx: &mut Translation) -> Result<Filter, String> {
    if cx.nesting > 0 {
        return Err("has_id is not allowed inside a nested filter".into());
    }
    let Value::Array(ids) = ids else {
        return Err("has_id takes a list of point ids".into());
    };
    cx.budget.values(ids.len())?;
    let mut set = std::collections::HashSet::with_capacity(ids.len());
    for id in ids {
        let id: PointId = serde_json::from_value(id.clone()).map_err(|e| format!("has_id: {e}"))?;
        set.insert(id.to_native());
    }
    Ok(Filter::HasId(set))
}

fn nested_condition(nested: &Value, cx: &mut Translation) -> Result<Filter, String> {
    let key = nested
        .get("key")
        .and_then(Value::as_str)
        .ok_or("nested needs a key (the array of objects to look into)")?;
    let inner = nested.get("filter").ok_or("nested needs a filter")?;
    let mut path = path(key)?;
    // `nested: {key: "diet"}` and `key: "diet[]"` name the same array.
    if path.last() == Some(&Segment::Each) {
        path.pop();
    }
    Ok(Filter::Nested {
        path,
        filter: Box::new({
            cx.nesting += 1;
            let inner = filter(inner, cx);
            cx.nesting -= 1;
            inner?
        }),
    })
}

fn field_condition(fields: &Map<String, Value>, cx: &mut Translation) -> Result<Filter, String> {
    let key = fields
        .get("key")
        .and_then(Value::as_str)
        .ok_or("a field condition's key must be a string")?;
    let path = path(key)?;
    let mut conds = Vec::new();
    for (name, arg) in fields {
        if arg.is_null() || name == "key" {
            continue;
        }
        let filter = match name.as_str() {
            "match" => Filter::Field {
                path: path.clone(),
                cond: match_condition(key, arg, cx)?,
            },
            "range" => Filter::Field {
                path: path.clone(),
                cond: range(key, arg)?,
            },
            "values_count" => Filter::Field {
                path: path.clone(),
                cond: Cond::ValuesCount(count_range(key, arg)?),
            },
            "is_empty" => match arg {
                Value::Bool(true) => is_empty(path.clone()),
                Value::Bool(false) => Filter::Not(Box::new(is_empty(path.clone()))),
                _ => return Err(format!("{key}: is_empty takes true or false")),
            },
            "is_null" => match arg {
                Value::Bool(true) => is_null(path.clone()),
                Value::Bool(false) => Filter::Not(Box::new(is_null(path.clone()))),
                _ => return Err(format!("{key}: is_null takes true or false")),
            },
            geo @ ("geo_bounding_box" | "geo_radius" | "geo_polygon") => {
                return Err(format!(
                    "{key}: {geo} conditions are not supported by needle"
                ))
            }
            other => return Err(format!("{key}: unknown condition {other:?}")),
        };
        conds.push(filter);
    }
    match conds.len() {
        0 => Err(format!(
            "the condition on {key:?} has no match, range, values_count, is_empty or is_null"
        )),
        1 => Ok(conds.remove(0)),
        // Qdrant gives such a condition an order of precedence of its own; needle
        // refuses it rather than guess.
        _ => Err(format!(
            "the condition on {key:?} has more than one of match, range, values_count, is_empty, is_null: give each its own condition"
        )),
    }
}

fn match_condition(key: &str, arg: &Value, cx: &mut Translation) -> Result<Cond, String> {
    let Value::Object(m) = arg else {
        return Err(format!("{key}: match must be an object"));
    };
    let mut given = m.iter().filter(|(_, v)| !v.is_null());
    let (Some((kind, operand)), None) = (given.next(), given.next()) else {
        return Err(format!(
            "{key}: match takes exactly one of value, any, except, text"
        ));
    };
    match kind.as_str() {
        "value" => Ok(Cond::Keyword(keywords(
            key,
            "value",
            std::slice::from_ref(operand),
        )?)),
        "any" | "except" => {
            let Value::Array(items) = operand else {
                return Err(format!("{key}: match.{kind} takes a list"));
            };
            cx.budget.values(items.len())?;
            let set = keywords(key, kind, items)?;
            Ok(if kind == "any" {
                Cond::Keyword(set)
            } else {
                Cond::ExceptKeyword(set)
            })
        }
        "text" => match operand {
            Value::String(text) => Ok(Cond::Contains(text.clone())),
            _ => Err(format!("{key}: match.text takes a string")),
        },
        other @ ("text_any" | "phrase" | "prefix" | "substring") => Err(format!(
            "{key}: match.{other} is not supported by needle (match.text is: substring match)"
        )),
        other => Err(format!("{key}: unknown match kind {other:?}")),
    }
}

/// The operands of `match`: strings, integers (exact) or booleans, one kind per
/// list, as Qdrant's models allow.
fn keywords(key: &str, kind: &str, items: &[Value]) -> Result<Keywords, String> {
    let mut set = Keywords::default();
    for item in items {
        match item {
            Value::String(s) => {
                set.strings.insert(s.clone());
            }
            Value::Number(n) => match n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)) {
                Some(i) => {
                    set.integers.insert(i);
                }
                None => {
                    return Err(format!(
                        "{key}: match.{kind} takes strings, integers or booleans, not {n}: use range for other numbers"
                    ))
                }
            },
            Value::Bool(b) if kind == "value" => set.booleans.push(*b),
            other => {
                return Err(format!(
                    "{key}: match.{kind} takes strings or integers, not {other}"
                ))
            }
        }
    }
    if !set.strings.is_empty() && !set.integers.is_empty() {
        return Err(format!(
            "{key}: match.{kind} takes strings or integers, not both"
        ));
    }
    Ok(set)
}

fn range(key: &str, arg: &Value) -> Result<Cond, String> {
    let Value::Object(bounds) = arg else {
        return Err(format!("{key}: range must be an object"));
    };
    let mut conds = Vec::new();
    for (op, bound) in bounds {
        if bound.is_null() {
            continue;
        }
        if bound.is_string() {
            return Err(format!(
                "{key}: datetime ranges are not supported by needle; store times as numbers (e.g. Unix seconds)"
            ));
        }
        if !bound.is_number() {
            return Err(format!("{key}: range.{op} takes a number"));
        }
        conds.push(match op.as_str() {
            "gt" => Cond::Gt(bound.clone()),
            "gte" => Cond::Gte(bound.clone()),
            "lt" => Cond::Lt(bound.clone()),
            "lte" => Cond::Lte(bound.clone()),
            other => return Err(format!("{key}: unknown range bound {other:?}")),
        });
    }
    if conds.is_empty() {
        return Err(format!(
            "{key}: range needs at least one of gt, gte, lt, lte"
        ));
    }
    // Every bound holds for one element of an array, not each for any.
    Ok(Cond::OneValue(conds))
}

fn count_range(key: &str, arg: &Value) -> Result<CountRange, String> {
    let Value::Object(bounds) = arg else {
        return Err(format!("{key}: values_count must be an object"));
    };
    let mut range = CountRange::default();
    for (op, bound) in bounds {
        if bound.is_null() {
            continue;
        }
        let n = bound
            .as_u64()
            .ok_or_else(|| format!("{key}: values_count.{op} takes an unsigned integer"))?;
        match op.as_str() {
            "gt" => range.gt = Some(n),
            "gte" => range.gte = Some(n),
            "lt" => range.lt = Some(n),
            "lte" => range.lte = Some(n),
            other => return Err(format!("{key}: unknown values_count bound {other:?}")),
        }
    }
    Ok(range)
}

/// Missing, null or an empty array: no values.
fn is_empty(path: Vec<Segment>) -> Filter {
    Filter::Field {
        path,
        cond: Cond::Empty,
    }
}

fn is_null(path: Vec<Segment>) -> Filter {
    Filter::Field {
        path,
        cond: Cond::Null,
    }
}

/// `a.b[].c` → `a`, `b`, every element, `c`; `a[2]` indexes.
fn path(key: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if name.is_empty() || name.contains(['"', ']']) {
            return Err(format!(
                "key {key:?} is not a path needle reads (a.b, a[].b, a[0])"
            ));
        }
        segments.push(Segment::Key(name.to_string()));
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .ok_or_else(|| format!("key {key:?} has an unclosed ["))?;
            let inside = &rest[1..close];
            if inside.is_empty() {
                segments.push(Segment::Each);
            } else if let Ok(index) = inside.parse::<usize>() {
                segments.push(Segment::Index(index));
            } else {
                return Err(format!(
                    "key {key:?}: [{inside}] is neither [] nor an index"
                ));
            }
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("key {key:?} is not a path needle reads"));
            }
        }
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn passes(filter: Value, id: &str, payload: Value) -> bool {
        let f = translate(&filter).unwrap();
        f.matches_point(id, payload.as_object())
    }

    #[test]
    fn clauses_combine_as_qdrant_documents() {
        let london_red = json!({"city": "London", "color": "red"});
        let f = json!({"must": [{"key": "city", "match": {"value": "London"}}],
                       "must_not": [{"key": "color", "match": {"value": "green"}}]});
        assert!(passes(f.clone(), "1", london_red.clone()));
        assert!(!passes(f, "1", json!({"city": "London", "color": "green"})));
        let should = json!({"should": [{"key": "city", "match": {"value": "Berlin"}},
                                       {"key": "color", "match": {"value": "red"}}]});
        assert!(passes(should.clone(), "1", london_red.clone()));
        assert!(!passes(should, "1", json!({"city": "Paris"})));
        assert!(
            !passes(json!({"should": []}), "1", json!({})),
            "an empty should matches nothing, as in Qdrant"
        );
        let two_of = json!({"min_should": {"min_count": 2, "conditions": [
            {"key": "city", "match": {"value": "London"}},
            {"key": "color", "match": {"value": "red"}},
            {"key": "size", "range": {"gt": 3}}]}});
        assert!(passes(two_of.clone(), "1", london_red));
        assert!(!passes(two_of, "1", json!({"city": "London", "size": 1})));
        // A nested filter object as a condition.
        let nested = json!({"must": [{"should": [{"key": "a", "match": {"value": 1}}]}]});
        assert!(passes(nested, "1", json!({"a": 1})));
    }

    #[test]
    fn conditions_mean_what_qdrant_says() {
        let p = json!({"n": 5, "tags": ["x", "y"], "empty": [], "nothing": null, "title": "Deep Space Nine",
            "big": 1234567890123456768u64, "exact": 1234567890123456789u64, "f": 1.0, "prices": [1, 10],
            "nulls": [null], "bs": [{"b": []}, {"b": [1]}]});
        let yes = |f: Value| assert!(passes(f.clone(), "7", p.clone()), "{f}");
        let no = |f: Value| assert!(!passes(f.clone(), "7", p.clone()), "{f}");
        yes(json!({"must": {"key": "tags", "match": {"value": "y"}}}));
        yes(json!({"must": {"key": "n", "match": {"any": [4, 5]}}}));
        no(json!({"must": {"key": "n", "match": {"except": [5]}}}));
        yes(json!({"must": {"key": "n", "match": {"except": [6]}}}));
        // except: an array matches when some element is not listed; a missing
        // field and null do not match.
        yes(json!({"must": {"key": "tags", "match": {"except": ["x"]}}}));
        no(json!({"must": {"key": "tags", "match": {"except": ["x", "y"]}}}));
        no(json!({"must": {"key": "missing", "match": {"except": ["x"]}}}));
        no(json!({"must": {"key": "nothing", "match": {"except": ["x"]}}}));
        // Integers match exactly, never a float or a nearby large integer.
        no(json!({"must": {"key": "big", "match": {"value": 1234567890123456789u64}}}));
        yes(json!({"must": {"key": "exact", "match": {"value": 1234567890123456789u64}}}));
        no(json!({"must": {"key": "f", "match": {"value": 1}}}));
        // A range's bounds hold for one element of an array.
        no(json!({"must": {"key": "prices", "range": {"gte": 4, "lte": 6}}}));
        yes(json!({"must": {"key": "prices", "range": {"gte": 9, "lte": 11}}}));
        // Keys are keys: `tags.0` is not an index, `tags[0]` is.
        no(json!({"must": {"key": "tags.0", "match": {"value": "x"}}}));
        yes(json!({"must": {"key": "tags[0]", "match": {"value": "x"}}}));
        yes(json!({"must": {"key": "title", "match": {"text": "Space"}}}));
        no(json!({"must": {"key": "title", "match": {"text": "space"}}}));
        yes(json!({"must": {"key": "n", "range": {"gte": 5, "lt": 6}}}));
        no(json!({"must": {"key": "n", "range": {"gt": 5}}}));
        yes(json!({"must": {"key": "tags", "values_count": {"gte": 2}}}));
        no(json!({"must": {"key": "tags", "values_count": {"gt": 2}}}));
        yes(json!({"must": {"is_empty": {"key": "empty"}}}));
        yes(json!({"must": {"is_empty": {"key": "missing"}}}));
        yes(json!({"must": {"is_empty": {"key": "nothing"}}}));
        no(json!({"must": {"is_empty": {"key": "tags"}}}));
        yes(json!({"must": {"is_null": {"key": "nothing"}}}));
        no(json!({"must": {"is_null": {"key": "missing"}}}));
        // `[null]` is not null.
        no(json!({"must": {"is_null": {"key": "nulls"}}}));
        // Through `[]`, empty means every value reached is empty.
        no(json!({"must": {"is_empty": {"key": "bs[].b"}}}));
        yes(json!({"must": {"is_empty": {"key": "bs[].c"}}}));
        yes(json!({"must": {"has_id": [1, 7]}}));
        no(json!({"must": {"has_id": [1, "9f2c6a57-5d2e-4c8e-8a9b-0123456789ab"]}}));
    }

    #[test]
    fn array_paths_and_nested_conditions() {
        let p = json!({"country": {"cities": [
            {"name": "Berlin", "population": 3.7, "sights": ["Reichstag"]},
            {"name": "Munich", "population": 1.5, "sights": ["Marienplatz"]}]},
            "diet": [{"food": "meat", "likes": false}, {"food": "leaves", "likes": true}]});
        let yes = |f: Value| assert!(passes(f.clone(), "1", p.clone()), "{f}");
        let no = |f: Value| assert!(!passes(f.clone(), "1", p.clone()), "{f}");
        yes(json!({"must": {"key": "country.cities[].population", "range": {"gte": 3.0}}}));
        no(json!({"must": {"key": "country.cities[].population", "range": {"gte": 4.0}}}));
        yes(json!({"must": {"key": "country.cities[].sights", "match": {"value": "Marienplatz"}}}));
        yes(json!({"must": {"key": "country.cities[1].name", "match": {"value": "Munich"}}}));
        no(json!({"must_not": {"key": "country.cities[].name", "match": {"value": "Berlin"}}}));
        // Each value reached is counted on its own.
        no(json!({"must": {"key": "country.cities[].name", "values_count": {"gte": 2}}}));
        yes(json!({"must": {"key": "country.cities[].sights", "values_count": {"gte": 1}}}));
        // Both bounds of a range hold for one element.
        no(
            json!({"must": {"key": "country.cities[].population", "range": {"gt": 2.0, "lt": 3.0}}}),
        );
        // `[]` and nested reach into arrays only.
        no(json!({"must": {"key": "country[].cities", "values_count": {"gte": 1}}}));
        no(json!({"must": {"nested": {"key": "country", "filter": {}}}}));
        // Without nested, the two conditions may hold for different elements...
        yes(
            json!({"must": [{"key": "diet[].food", "match": {"value": "meat"}},
                            {"key": "diet[].likes", "match": {"value": true}}]}),
        );
        // ...with nested, both must hold for the same one.
        no(
            json!({"must": {"nested": {"key": "diet", "filter": {"must": [
            {"key": "food", "match": {"value": "meat"}}, {"key": "likes", "match": {"value": true}}]}}}}),
        );
        yes(
            json!({"must": {"nested": {"key": "diet[]", "filter": {"must": [
            {"key": "food", "match": {"value": "leaves"}}, {"key": "likes", "match": {"value": true}}]}}}}),
        );
    }

    #[test]
    fn unsupported_and_malformed_filters_are_refused_by_name() {
        for (f, words) in [
            (
                json!({"must": {"key": "loc", "geo_radius": {"center": {"lat": 0, "lon": 0}, "radius": 1}}}),
                "geo_radius",
            ),
            (
                json!({"must": {"key": "t", "range": {"gt": "2024-01-01T00:00:00Z"}}}),
                "datetime",
            ),
            (json!({"must": {"has_vector": "image"}}), "has_vector"),
            (
                json!({"must": {"key": "a", "match": {"phrase": "x y"}}}),
                "phrase",
            ),
            (json!({"must": {"key": "a"}}), "has no match"),
            (
                json!({"must": {"nested": {"key": "d", "filter": {"must": {"has_id": [1]}}}}}),
                "nested",
            ),
            (json!({"must": {"has_id": ["not-a-uuid"]}}), "UUID"),
            (json!({"ought": []}), "unknown filter clause"),
            (
                json!({"must": {"key": "a", "match": {"value": 1}, "range": {"gt": 0}}}),
                "more than one",
            ),
            (
                json!({"must": {"key": "a", "match": {"any": [1, "x"]}}}),
                "not both",
            ),
            (
                json!({"must": {"key": "a", "match": {"value": 1.5}}}),
                "use range",
            ),
            (
                json!({"must": {"key": "a[x]", "match": {"value": 1}}}),
                "index",
            ),
        ] {
            let err = translate(&f).unwrap_err();
            assert!(err.contains(words), "{f}: {err}");
        }
        let many: Vec<Value> = (0..crate::filter::MAX_FILTER_CONDITIONS + 1)
            .map(|i| json!({"key": "a", "match": {"value": i}}))
            .collect();
        assert!(translate(&json!({"should": many})).is_err());
    }
}
