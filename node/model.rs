//! The data model users see — collections and vectors — and the validation rules
//! that every entry point (library, HTTP, import) shares.

use crate::error::{Error, Result};
use needle_kernels::Metric;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

pub const MAX_NAME_LEN: usize = 128;
pub const MAX_DIMENSIONS: usize = 65_536;
pub const MAX_ID_BYTES: usize = 1024;
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The largest magnitude a vector component may have. Distances are computed in f32:
/// with every component within ±1e16, a squared L2 distance over the most dimensions
/// a collection may have stays below 2.7e37, under f32's 3.4e38, so no distance can
/// overflow to infinity or become NaN (which would make rows silently unreachable).
pub const MAX_COMPONENT_MAGNITUDE: f32 = 1e16;

/// JSON object attached to a vector.
pub type Metadata = Map<String, Value>;

/// How a collection measures closeness. Results always report a distance where
/// smaller is closer: cosine = 1 − cos, euclidean = L2, dot = −(q·x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    Cosine,
    Euclidean,
    Dot,
}

impl Distance {
    pub fn metric(self) -> Metric {
        match self {
            Distance::Cosine => Metric::Cosine,
            Distance::Euclidean => Metric::Euclidean,
            Distance::Dot => Metric::Dot,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::Euclidean => "euclidean",
            Distance::Dot => "dot",
        }
    }
}

impl fmt::Display for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Distance {
    type Err = Error;
    /// Exact lowercase names only: an unknown distance is an error, never a default.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cosine" => Ok(Distance::Cosine),
            "euclidean" => Ok(Distance::Euclidean),
            "dot" => Ok(Distance::Dot),
            other => Err(Error::InvalidDistance(other.to_string())),
        }
    }
}

/// How a GPU backend keeps a collection's vectors in device memory. `f16` halves
/// device memory and doubles tensor-core throughput; results stay exact because
/// candidates are re-ranked in f32 from the host copy. The CPU backend keeps f32
/// either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorStorage {
    #[default]
    F32,
    F16,
}

impl VectorStorage {
    pub fn kernel(self) -> needle_kernels::Storage {
        match self {
            VectorStorage::F32 => needle_kernels::Storage::F32,
            VectorStorage::F16 => needle_kernels::Storage::F16,
        }
    }
}

impl FromStr for VectorStorage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(VectorStorage::F32),
            "f16" => Ok(VectorStorage::F16),
            other => Err(Error::InvalidStorage(other.to_string())),
        }
    }
}

/// A collection's immutable settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionConfig {
    pub name: String,
    pub dimensions: usize,
    pub distance: Distance,
    /// Collections stored before this setting existed are f32.
    #[serde(default)]
    pub storage: VectorStorage,
}

impl CollectionConfig {
    pub fn new(name: impl Into<String>, dimensions: usize, distance: Distance) -> Self {
        CollectionConfig {
            name: name.into(),
            dimensions,
            distance,
            storage: VectorStorage::default(),
        }
    }

    /// The same settings with device storage `storage`.
    pub fn with_storage(self, storage: VectorStorage) -> Self {
        CollectionConfig { storage, ..self }
    }

    pub fn validate(&self) -> Result<()> {
        validate_collection_name(&self.name)?;
        if self.dimensions == 0 || self.dimensions > MAX_DIMENSIONS {
            return Err(Error::InvalidDimensions(self.dimensions as u64));
        }
        Ok(())
    }
}

/// One vector with its id and optional metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    pub id: String,
    pub vector: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

impl VectorRecord {
    pub fn new(id: impl Into<String>, vector: Vec<f32>) -> Self {
        VectorRecord {
            id: id.into(),
            vector,
            metadata: None,
        }
    }

    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Checks id, vector and metadata against a collection of `dimensions`: what
    /// every version of needle checked, so also what entries ordered elsewhere (a
    /// primary's log, a Raft log) are held to.
    pub fn validate(&self, dimensions: usize) -> Result<()> {
        validate_id(&self.id)?;
        validate_finite(&self.vector, dimensions)?;
        if let Some(m) = &self.metadata {
            validate_metadata(m)?;
        }
        Ok(())
    }

    /// [`VectorRecord::validate`], plus the component bound that keeps distances
    /// finite: for writes this node is about to order. Entries already ordered are
    /// not held to it, since an older member may have accepted them.
    pub fn validate_new(&self, dimensions: usize) -> Result<()> {
        self.validate(dimensions)?;
        validate_magnitudes(&self.vector)
    }
}

pub fn validate_collection_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidCollectionName(
            name.chars().take(200).collect(),
        ))
    }
}

pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidId("id must not be empty".into()));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::InvalidId(format!(
            "id is {} bytes, at most {MAX_ID_BYTES} are allowed",
            id.len()
        )));
    }
    Ok(())
}

/// The checks of a new vector or a query: its dimensions, and components finite and
/// within [`MAX_COMPONENT_MAGNITUDE`].
pub fn validate_vector(vector: &[f32], dimensions: usize) -> Result<()> {
    validate_finite(vector, dimensions)?;
    validate_magnitudes(vector)
}

/// Dimensions and finiteness only (see [`VectorRecord::validate`]).
fn validate_finite(vector: &[f32], dimensions: usize) -> Result<()> {
    if vector.len() != dimensions {
        return Err(Error::DimensionMismatch {
            expected: dimensions,
            got: vector.len(),
        });
    }
    if let Some((index, value)) = vector.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFiniteVector {
            index,
            value: *value,
        });
    }
    Ok(())
}

/// Every component within ±[`MAX_COMPONENT_MAGNITUDE`].
fn validate_magnitudes(vector: &[f32]) -> Result<()> {
    if let Some((index, value)) = vector
        .iter()
        .enumerate()
        .find(|(_, v)| v.abs() > MAX_COMPONENT_MAGNITUDE)
    {
        return Err(Error::NonFiniteVector {
            index,
            value: *value,
        });
    }
    Ok(())
}

/// `metadata` with `set`'s keys written over it and then each dotted path of
/// `remove` removed (what [`crate::Op::PatchMetadata`] does to one record); `None`
/// when nothing is left.
pub fn patch_metadata(
    metadata: Option<Metadata>,
    set: Option<&Metadata>,
    remove: &[String],
) -> Option<Metadata> {
    let mut metadata = metadata.unwrap_or_default();
    if let Some(set) = set {
        metadata.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for path in remove {
        remove_metadata_path(&mut metadata, path);
    }
    (!metadata.is_empty()).then_some(metadata)
}

/// The most metadata paths one patch may remove: each is applied to every point the
/// patch changes, on the writer.
pub const MAX_METADATA_PATHS: usize = 256;

/// Paths a patch removes: at most [`MAX_METADATA_PATHS`], each at most
/// [`MAX_ID_BYTES`] long.
pub fn validate_metadata_paths(paths: &[String]) -> Result<()> {
    if paths.len() > MAX_METADATA_PATHS {
        return Err(Error::InvalidRequest(format!(
            "{} metadata keys to remove; at most {MAX_METADATA_PATHS} are allowed",
            paths.len()
        )));
    }
    if let Some(p) = paths
        .iter()
        .find(|p| p.is_empty() || p.len() > MAX_ID_BYTES)
    {
        return Err(Error::InvalidRequest(format!(
            "metadata key {:?} must be 1 to {MAX_ID_BYTES} bytes",
            p.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Removes the value at dotted `path` (`"a.b"`: key `b` of object `a`), if any.
pub fn remove_metadata_path(map: &mut Metadata, path: &str) {
    match path.split_once('.') {
        None => {
            map.remove(path);
        }
        Some((head, rest)) => {
            if let Some(Value::Object(inner)) = map.get_mut(head) {
                remove_metadata_path(inner, rest);
            }
        }
    }
}

/// The length of `value`'s JSON text, counted without building it.
pub(crate) fn json_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

pub fn validate_metadata(metadata: &Metadata) -> Result<()> {
    let size = json_len(metadata);
    if size > MAX_METADATA_BYTES {
        return Err(Error::InvalidMetadata(format!(
            "metadata is {size} bytes serialized, at most {MAX_METADATA_BYTES} are allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_follow_the_documented_alphabet_and_length() {
        assert!(validate_collection_name("docs_v2-a").is_ok());
        assert!(validate_collection_name(&"a".repeat(128)).is_ok());
        for bad in ["", "has space", "slash/", "dot.", "ü", &"a".repeat(129)] {
            assert!(validate_collection_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn distances_parse_exactly() {
        assert_eq!("dot".parse::<Distance>().unwrap(), Distance::Dot);
        let err = "Cosine".parse::<Distance>().unwrap_err();
        assert_eq!(err.code(), "INVALID_DISTANCE");
    }

    #[test]
    fn records_are_validated() {
        let mut r = VectorRecord::new("a", vec![1.0, 2.0]);
        assert!(r.validate(2).is_ok());
        assert_eq!(r.validate(3).unwrap_err().code(), "DIMENSION_MISMATCH");
        r.vector[1] = f32::NAN;
        assert_eq!(r.validate(2).unwrap_err().code(), "INVALID_VECTOR");
        r.vector[1] = f32::INFINITY;
        assert_eq!(r.validate(2).unwrap_err().code(), "INVALID_VECTOR");
        // Finite but so large that distances would overflow f32: refused as a new
        // write, accepted as one already ordered elsewhere.
        r.vector[1] = 3e38;
        assert_eq!(r.validate_new(2).unwrap_err().code(), "INVALID_VECTOR");
        assert!(r.validate(2).is_ok());
        r.vector[1] = -MAX_COMPONENT_MAGNITUDE;
        assert!(r.validate_new(2).is_ok());
        let r = VectorRecord::new("", vec![1.0]);
        assert_eq!(r.validate(1).unwrap_err().code(), "INVALID_ID");
        let r = VectorRecord::new("x".repeat(1025), vec![1.0]);
        assert_eq!(r.validate(1).unwrap_err().code(), "INVALID_ID");
        let mut big = Metadata::new();
        big.insert("blob".into(), Value::String("x".repeat(70_000)));
        let r = VectorRecord::new("a", vec![1.0]).with_metadata(big);
        assert_eq!(r.validate(1).unwrap_err().code(), "INVALID_METADATA");
        assert!(CollectionConfig::new("c", 0, Distance::Dot)
            .validate()
            .is_err());
        assert!(CollectionConfig::new("c", 65_537, Distance::Dot)
            .validate()
            .is_err());
        assert!(CollectionConfig::new("c", 65_536, Distance::Dot)
            .validate()
            .is_ok());
    }
}

/// A summary of one collection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CollectionInfo {
    #[serde(flatten)]
    pub config: CollectionConfig,
    /// Live vectors.
    pub count: usize,
    /// Deleted rows awaiting compaction (exported as a metric, not in the API).
    #[serde(skip)]
    pub tombstones: usize,
}
