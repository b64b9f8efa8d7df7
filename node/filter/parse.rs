use super::budget::Budget;
use super::{Cond, Filter, Segment, ValueSet, MAX_FILTER_CONDITIONS};
use serde_json::{Map, Value};

pub(super) fn parse(value: &Value) -> Result<Filter, String> {
    filter(value, &mut Budget::default())
}

fn filter(value: &Value, budget: &mut Budget) -> Result<Filter, String> {
    let Value::Object(doc) = value else {
        return Err(format!(
            "a filter must be a JSON object, got {}",
            kind(value)
        ));
    };
    let mut clauses = Vec::with_capacity(doc.len().min(MAX_FILTER_CONDITIONS));
    for (key, value) in doc {
        budget.condition()?;
        clauses.push(clause(key, value, budget)?);
    }
    Ok(if clauses.len() == 1 {
        clauses.remove(0)
    } else {
        Filter::And(clauses)
    })
}

fn clause(key: &str, value: &Value, budget: &mut Budget) -> Result<Filter, String> {
    match key {
        "$and" => Ok(Filter::And(filter_list(key, value, budget)?)),
        "$or" => Ok(Filter::Or(filter_list(key, value, budget)?)),
        "$not" => Ok(Filter::Not(Box::new(
            filter(value, budget).map_err(|e| format!("$not: {e}"))?,
        ))),
        op if op.starts_with('$') => Err(format!("unknown top-level operator {op:?}")),
        field => {
            let path = field_path(field)?;
            let cond = field_condition(field, value, budget)?;
            Ok(Filter::Field { path, cond })
        }
    }
}

fn filter_list(op: &str, value: &Value, budget: &mut Budget) -> Result<Vec<Filter>, String> {
    match value {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| filter(v, budget).map_err(|e| format!("{op}[{i}]: {e}")))
            .collect(),
        Value::Array(_) => Err(format!("{op} needs at least one filter")),
        other => Err(format!(
            "{op} takes an array of filters, got {}",
            kind(other)
        )),
    }
}

fn field_path(field: &str) -> Result<Vec<Segment>, String> {
    if field.split('.').any(str::is_empty) {
        return Err(format!("field path {field:?} has an empty segment"));
    }
    Ok(field
        .split('.')
        .map(|name| Segment::Name(name.to_string()))
        .collect())
}

/// `value` is either a literal (equality) or an object of operators. An object with no
/// `$` keys is a literal object to compare for equality, as in MongoDB.
fn field_condition(field: &str, value: &Value, budget: &mut Budget) -> Result<Cond, String> {
    match value {
        Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
            operators(field, ops, budget)
        }
        literal => Ok(Cond::Eq(literal.clone())),
    }
}

fn operators(field: &str, ops: &Map<String, Value>, budget: &mut Budget) -> Result<Cond, String> {
    let mut conds = Vec::with_capacity(ops.len().min(MAX_FILTER_CONDITIONS));
    for (op, arg) in ops {
        budget.condition()?;
        let cond = match op.as_str() {
            "$eq" => Cond::Eq(arg.clone()),
            "$ne" => Cond::Ne(arg.clone()),
            "$gt" => Cond::Gt(comparable(field, op, arg)?),
            "$gte" => Cond::Gte(comparable(field, op, arg)?),
            "$lt" => Cond::Lt(comparable(field, op, arg)?),
            "$lte" => Cond::Lte(comparable(field, op, arg)?),
            "$in" => Cond::In(value_set(field, op, arg, budget)?),
            "$nin" => Cond::Nin(value_set(field, op, arg, budget)?),
            "$exists" => match arg {
                Value::Bool(b) => Cond::Exists(*b),
                other => {
                    return Err(format!(
                        "{field}: $exists takes true or false, got {}",
                        kind(other)
                    ))
                }
            },
            "$not" => match arg {
                Value::Object(inner)
                    if inner.keys().all(|k| k.starts_with('$')) && !inner.is_empty() =>
                {
                    match operators(field, inner, budget)? {
                        Cond::All(cs) => Cond::Not(cs),
                        c => Cond::Not(vec![c]),
                    }
                }
                _ => {
                    return Err(format!(
                        "{field}: $not takes an object of operators, e.g. {{\"$gt\": 5}}"
                    ))
                }
            },
            other => return Err(format!("{field}: unknown operator {other:?}")),
        };
        conds.push(cond);
    }
    Ok(if conds.len() == 1 {
        conds.remove(0)
    } else {
        Cond::All(conds)
    })
}

fn comparable(field: &str, op: &str, arg: &Value) -> Result<Value, String> {
    match arg {
        Value::Number(_) | Value::String(_) => Ok(arg.clone()),
        other => Err(format!(
            "{field}: {op} compares numbers or strings, got {}",
            kind(other)
        )),
    }
}

fn value_set(field: &str, op: &str, arg: &Value, budget: &mut Budget) -> Result<ValueSet, String> {
    match arg {
        Value::Array(items) => {
            budget.values(items.len())?;
            Ok(ValueSet::new(items.clone()))
        }
        other => Err(format!("{field}: {op} takes an array, got {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
