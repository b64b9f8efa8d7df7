//! What Qdrant requests share: payload and vector selectors, read consistency, write
//! ordering and `wait`, and the point shape answers are made of.

use super::point_id::PointId;
use crate::http::ApiError;
use crate::replication::WriteConcern;
use crate::Metadata;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("INVALID_REQUEST", message)
}

/// `with_payload`: `true`/`false`, a list of keys to include, or `{"include": [...]}`
/// / `{"exclude": [...]}`. Keys may be dotted paths.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadSelector {
    None,
    All,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

impl PayloadSelector {
    pub fn parse(value: Option<&Value>, default: bool) -> Result<PayloadSelector, ApiError> {
        let keys = |v: &Value| -> Result<Vec<String>, ApiError> {
            let keys: Vec<String> = serde_json::from_value(v.clone())
                .map_err(|_| bad("with_payload: expected a list of payload keys"))?;
            // Each key is looked up in every point answered.
            crate::model::validate_metadata_paths(&keys)?;
            match keys.iter().find(|k| k.contains('[')) {
                Some(k) => Err(bad(format!(
                    "with_payload key {k:?}: selecting inside arrays is not supported by needle; name a key or a dotted path"
                ))),
                None => Ok(keys),
            }
        };
        Ok(match value {
            None | Some(Value::Null) => {
                if default {
                    PayloadSelector::All
                } else {
                    PayloadSelector::None
                }
            }
            Some(Value::Bool(true)) => PayloadSelector::All,
            Some(Value::Bool(false)) => PayloadSelector::None,
            Some(list @ Value::Array(_)) => PayloadSelector::Include(keys(list)?),
            Some(Value::Object(o)) if o.len() == 1 && o.contains_key("include") => {
                PayloadSelector::Include(keys(&o["include"])?)
            }
            Some(Value::Object(o)) if o.len() == 1 && o.contains_key("exclude") => {
                PayloadSelector::Exclude(keys(&o["exclude"])?)
            }
            Some(_) => {
                return Err(bad(
                    "with_payload takes true, false, a list of keys, {\"include\": [...]} or {\"exclude\": [...]}",
                ))
            }
        })
    }

    pub fn wants_payload(&self) -> bool {
        *self != PayloadSelector::None
    }

    /// The payload to answer with: `None` when none was asked for, `{}` for a
    /// point without metadata.
    pub fn select(&self, metadata: Option<&Metadata>) -> Option<Map<String, Value>> {
        let all = || metadata.cloned().unwrap_or_default();
        match self {
            PayloadSelector::None => None,
            PayloadSelector::All => Some(all()),
            PayloadSelector::Include(keys) => {
                let mut out = Map::new();
                if let Some(m) = metadata {
                    for key in keys {
                        copy_path(m, &mut out, key);
                    }
                }
                Some(out)
            }
            PayloadSelector::Exclude(keys) => {
                let mut out = all();
                for key in keys {
                    remove_path(&mut out, key);
                }
                Some(out)
            }
        }
    }
}

/// Copies the value at dotted `path` of `from` into `to`, at the same place.
fn copy_path(from: &Map<String, Value>, to: &mut Map<String, Value>, path: &str) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let Some(value) = from.get(head) else { return };
    match (rest, value) {
        (None, v) => {
            to.insert(head.to_string(), v.clone());
        }
        (Some(rest), Value::Object(inner)) => {
            let slot = to
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(slot) = slot {
                copy_path(inner, slot, rest);
            }
        }
        (Some(_), _) => {}
    }
}

fn remove_path(map: &mut Map<String, Value>, path: &str) {
    crate::model::remove_metadata_path(map, path)
}

/// `with_vector`: `true`/`false`. A list names vectors, which needle collections do
/// not have (one unnamed vector each).
pub fn with_vector(value: Option<&Value>) -> Result<bool, ApiError> {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(false),
        Some(Value::Bool(true)) => Ok(true),
        Some(_) => Err(bad(
            "with_vector takes true or false: named vectors are not supported by needle",
        )),
    }
}

/// One point as answers show it (Qdrant's `Record`, and `ScoredPoint` with a score).
#[derive(Serialize)]
pub struct PointOut {
    pub id: PointId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub payload: Option<Map<String, Value>>,
    pub vector: Option<Vec<f32>>,
}

/// `?consistency=` on reads: Qdrant's `majority`, `quorum` and `all` (and any number
/// of replicas above one) ask for an up-to-date answer, which needle gives as a
/// linearizable read; `1` or nothing is a local read (`eventual`).
#[derive(Debug, Default, Deserialize)]
pub struct ReadQuery {
    pub consistency: Option<String>,
    /// Accepted; needle's searches are bounded by the request limits instead.
    #[allow(dead_code)]
    pub timeout: Option<u64>,
}

impl ReadQuery {
    pub fn needle_consistency(&self) -> Result<Option<&'static str>, ApiError> {
        match self.consistency.as_deref() {
            None => Ok(None),
            Some("majority" | "quorum" | "all") => Ok(Some("linearizable")),
            Some(n) => match n.parse::<u64>() {
                Ok(0) => Err(bad("consistency must be at least 1")),
                Ok(1) => Ok(Some("eventual")),
                Ok(_) => Ok(Some("linearizable")),
                Err(_) => Err(bad(format!(
                    "unknown consistency {n:?}: expected a number, majority, quorum or all"
                ))),
            },
        }
    }
}

/// `?wait=` and `?ordering=` on writes.
#[derive(Debug, Default, Deserialize)]
pub struct WriteQuery {
    pub wait: Option<bool>,
    pub ordering: Option<String>,
    #[allow(dead_code)]
    pub timeout: Option<u64>,
}

/// How a Qdrant write is acknowledged.
pub struct WriteSettings {
    pub concern: WriteConcern,
    pub wait: bool,
}

impl WriteQuery {
    /// `ordering` picks the write concern: `weak` → `primary` (durable where it is
    /// ordered), `medium` (the default) → `majority`, `strong` → `all`. Every needle
    /// write is ordered by one leader whatever the ordering. `wait=false` answers
    /// `acknowledged` once the write is durable where it is ordered (concern
    /// `primary`), without waiting for replicas.
    pub fn settings(&self) -> Result<WriteSettings, ApiError> {
        self.settings_waiting_by_default(false)
    }

    /// [`WriteQuery::settings`] where a missing `wait` means `default_wait`:
    /// collection changes wait unless told not to, as Qdrant's do.
    pub fn settings_waiting_by_default(
        &self,
        default_wait: bool,
    ) -> Result<WriteSettings, ApiError> {
        let concern = match self.ordering.as_deref() {
            None | Some("medium") => WriteConcern::Majority,
            Some("weak") => WriteConcern::Primary,
            Some("strong") => WriteConcern::All,
            Some(other) => {
                return Err(bad(format!(
                    "unknown ordering {other:?}: expected weak, medium or strong"
                )))
            }
        };
        let wait = self.wait.unwrap_or(default_wait);
        Ok(WriteSettings {
            concern: if wait { concern } else { WriteConcern::Primary },
            wait,
        })
    }
}

/// Qdrant's `UpdateResult`.
#[derive(Serialize)]
pub struct UpdateResult {
    pub operation_id: Option<u64>,
    pub status: &'static str,
}

impl UpdateResult {
    pub fn new(seq: Option<u64>, settings: &WriteSettings) -> UpdateResult {
        UpdateResult {
            operation_id: seq,
            status: if settings.wait {
                "completed"
            } else {
                "acknowledged"
            },
        }
    }
}

/// Refuses a field that names a feature needle does not have, when it is set.
pub fn refuse_if_set(fields: &[(&str, &Option<Value>)], what: &str) -> Result<(), ApiError> {
    for (name, value) in fields {
        if value.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(bad(format!("{name} is not supported by needle ({what})")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_selectors_pick_keys_and_paths() {
        let m: Metadata = serde_json::from_value(json!({"a": 1, "b": {"c": 2, "d": 3}})).unwrap();
        let pick = |v: Value| {
            PayloadSelector::parse(Some(&v), true)
                .unwrap()
                .select(Some(&m))
        };
        assert_eq!(pick(json!(true)), Some(m.clone()));
        assert_eq!(pick(json!(false)), None);
        assert_eq!(
            pick(json!(["a", "b.c", "zzz"])).map(Value::Object),
            Some(json!({"a": 1, "b": {"c": 2}}))
        );
        assert_eq!(
            pick(json!({"exclude": ["b.d"]})).map(Value::Object),
            Some(json!({"a": 1, "b": {"c": 2}}))
        );
        assert!(PayloadSelector::parse(Some(&json!(3)), true).is_err());
        assert_eq!(
            PayloadSelector::parse(None, true).unwrap().select(None),
            Some(Map::new()),
            "a point without metadata has an empty payload"
        );
    }

    #[test]
    fn consistency_and_ordering_map_to_needle() {
        let read = |c: &str| {
            ReadQuery {
                consistency: Some(c.into()),
                timeout: None,
            }
            .needle_consistency()
        };
        assert_eq!(read("majority").unwrap(), Some("linearizable"));
        assert_eq!(read("3").unwrap(), Some("linearizable"));
        assert_eq!(read("1").unwrap(), Some("eventual"));
        assert!(read("most").is_err());
        let write = |ordering: Option<&str>, wait| {
            WriteQuery {
                wait,
                ordering: ordering.map(str::to_string),
                timeout: None,
            }
            .settings()
        };
        assert_eq!(
            write(Some("strong"), Some(true)).unwrap().concern,
            WriteConcern::All
        );
        assert_eq!(
            write(None, Some(true)).unwrap().concern,
            WriteConcern::Majority
        );
        assert_eq!(
            write(Some("strong"), None).unwrap().concern,
            WriteConcern::Primary
        );
        assert!(write(Some("fast"), None).is_err());
    }
}
