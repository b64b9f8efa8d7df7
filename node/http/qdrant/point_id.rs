//! Qdrant's point ids (unsigned 64-bit integers or UUIDs) and needle's string ids.
//!
//! An integer `n` is stored as the decimal text of `n`, a UUID as its lowercase
//! hyphenated text, so a collection written through either API reads the same
//! through the other. Reading back, a native id that is the canonical text of a
//! `u64` comes out as that integer and one that is a canonical UUID as that UUID:
//! so an id keeps its type through a round trip. Any other native id (`"doc-7"`)
//! comes out as the string it is; the Qdrant API cannot address it for writes.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use uuid::Uuid;

/// A point id as Qdrant's API spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PointId {
    Num(u64),
    Uuid(Uuid),
    /// A native id outside Qdrant's id space (answers only, never parsed).
    Native(String),
}

impl PointId {
    /// The id as needle stores it.
    pub fn to_native(&self) -> String {
        match self {
            PointId::Num(n) => n.to_string(),
            PointId::Uuid(u) => u.hyphenated().to_string(),
            PointId::Native(s) => s.clone(),
        }
    }

    /// A stored id as the Qdrant API shows it.
    pub fn from_native(id: &str) -> PointId {
        if let Ok(n) = id.parse::<u64>() {
            if n.to_string() == id {
                return PointId::Num(n);
            }
        }
        if let Ok(u) = Uuid::try_parse(id) {
            if u.hyphenated().to_string() == id {
                return PointId::Uuid(u);
            }
        }
        PointId::Native(id.to_string())
    }

    /// Qdrant's id order, which scroll pages follow: integers first, then UUIDs
    /// (by their 128-bit value), then native ids by their bytes.
    fn rank(&self) -> u8 {
        match self {
            PointId::Num(_) => 0,
            PointId::Uuid(_) => 1,
            PointId::Native(_) => 2,
        }
    }
}

impl Ord for PointId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PointId::Num(a), PointId::Num(b)) => a.cmp(b),
            (PointId::Uuid(a), PointId::Uuid(b)) => a.as_u128().cmp(&b.as_u128()),
            (PointId::Native(a), PointId::Native(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PointId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for PointId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PointId::Num(n) => s.serialize_u64(*n),
            PointId::Uuid(u) => s.serialize_str(&u.hyphenated().to_string()),
            PointId::Native(id) => s.serialize_str(id),
        }
    }
}

/// A request's id: an unsigned integer, or a string that must be a UUID (in any of
/// the forms the `uuid` crate reads, as Qdrant accepts them). A scroll offset may
/// also name a native id, which is why `Native` can be parsed where the caller
/// allows it (see [`PointId::parse_offset`]).
impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = PointId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a point id: an unsigned integer or a UUID")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PointId, E> {
                Ok(PointId::Num(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PointId, E> {
                u64::try_from(n).map(PointId::Num).map_err(|_| {
                    E::custom(format!(
                        "point id {n} is negative: ids are unsigned integers or UUIDs"
                    ))
                })
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PointId, E> {
                Uuid::try_parse(s)
                    .map(PointId::Uuid)
                    .map_err(|_| E::custom(format!("Unable to parse UUID: {s}")))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

impl PointId {
    /// A scroll offset: a next_page_offset this API gave out, which may be a native
    /// id outside Qdrant's id space.
    pub fn parse_offset(value: &serde_json::Value) -> Result<PointId, String> {
        match value {
            // The text this API gave out: a UUID only in its canonical spelling,
            // as `from_native` reads stored ids (`9F2C…` is a native id there).
            serde_json::Value::String(s) => Ok(PointId::from_native(s)),
            other => serde_json::from_value(other.clone()).map_err(|e| e.to_string()),
        }
    }

    /// A path segment (`GET /collections/c/points/{id}`): digits are an integer id.
    pub fn parse_path(text: &str) -> Result<PointId, String> {
        if let Ok(n) = text.parse::<u64>() {
            return Ok(PointId::Num(n));
        }
        Uuid::try_parse(text)
            .map(PointId::Uuid)
            .map_err(|_| format!("Unable to parse UUID: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_keep_their_type_through_needle() {
        for id in [
            json!(0),
            json!(18446744073709551615u64),
            json!("9f2c6a57-5d2e-4c8e-8a9b-0123456789ab"),
        ] {
            let parsed: PointId = serde_json::from_value(id.clone()).unwrap();
            let back = PointId::from_native(&parsed.to_native());
            assert_eq!(serde_json::to_value(&back).unwrap(), id);
        }
        // A UUID in another spelling is stored, and comes back, canonical.
        let upper: PointId =
            serde_json::from_value(json!("9F2C6A575D2E4C8E8A9B0123456789AB")).unwrap();
        assert_eq!(upper.to_native(), "9f2c6a57-5d2e-4c8e-8a9b-0123456789ab");
        // Native ids outside the id space are shown as they are.
        assert_eq!(PointId::from_native("007"), PointId::Native("007".into()));
        assert_eq!(
            PointId::from_native("doc-7"),
            PointId::Native("doc-7".into())
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        assert!(serde_json::from_value::<PointId>(json!(-1)).is_err());
        assert!(serde_json::from_value::<PointId>(json!(1.5)).is_err());
        let err = serde_json::from_value::<PointId>(json!("doc-7")).unwrap_err();
        assert!(err.to_string().contains("Unable to parse UUID"), "{err}");
    }

    #[test]
    fn ids_order_as_qdrant_scrolls_them() {
        let mut ids = [
            PointId::Native("a".into()),
            PointId::from_native("ffffffff-ffff-ffff-ffff-ffffffffffff"),
            PointId::Num(10),
            PointId::from_native("00000000-0000-0000-0000-000000000001"),
            PointId::Num(9),
        ];
        ids.sort();
        let shown: Vec<String> = ids.iter().map(PointId::to_native).collect();
        assert_eq!(
            shown,
            [
                "9",
                "10",
                "00000000-0000-0000-0000-000000000001",
                "ffffffff-ffff-ffff-ffff-ffffffffffff",
                "a"
            ]
        );
    }
}
