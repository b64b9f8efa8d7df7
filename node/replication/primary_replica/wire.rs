//! The replication protocol's messages: what a replica asks its primary, what the
//! primary answers, and the wire form of log entries (vectors travel as raw f32
//! beside the op's other fields, never through the serializer).

use needle_transport::DeltaEntry;

use crate::error::Result;
use crate::replication::primary_replica::epoch::{EpochHistory, Fence};
use crate::Error;
use crate::Op;

/// One pull: `[from u64][max u32][wait_ms u32]`, big-endian.
const PULL_REQUEST_BYTES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullRequest {
    pub from: u64,
    pub max: u32,
    pub wait_ms: u32,
}

impl PullRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.from.to_be_bytes().to_vec();
        out.extend(self.max.to_be_bytes());
        out.extend(self.wait_ms.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<PullRequest> {
        if bytes.len() != PULL_REQUEST_BYTES {
            return Err(Error::InvalidRequest(format!(
                "pull request of {} bytes",
                bytes.len()
            )));
        }
        let mut from = [0u8; 8];
        from.copy_from_slice(&bytes[..8]);
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Ok(PullRequest {
            from: u64::from_be_bytes(from),
            max: u32_at(8),
            wait_ms: u32_at(12),
        })
    }
}

/// The wire form of one log entry: the op with its vectors taken out (meta:
/// vector count, each length, then the op's log encoding) and the vectors back to back.
pub fn entry_to_wire(seq: u64, op: &Op) -> Result<DeltaEntry> {
    let mut stripped = op.clone();
    let mut vectors = Vec::new();
    let mut lengths: Vec<u32> = Vec::new();
    if let Op::Upsert { records, .. } = &mut stripped {
        for record in records.iter_mut() {
            lengths.push(record.vector.len() as u32);
            vectors.append(&mut record.vector);
        }
    }
    let mut meta = (lengths.len() as u32).to_be_bytes().to_vec();
    for l in &lengths {
        meta.extend(l.to_be_bytes());
    }
    meta.extend(stripped.encode()?);
    Ok(DeltaEntry { seq, meta, vectors })
}

pub fn entry_from_wire(entry: DeltaEntry) -> Result<(u64, Op)> {
    let corrupt = |what: &str| Error::Corrupt(format!("replicated entry {}: {what}", entry.seq));
    let count_bytes = entry
        .meta
        .get(..4)
        .ok_or_else(|| corrupt("no vector count"))?;
    let count = u32::from_be_bytes([
        count_bytes[0],
        count_bytes[1],
        count_bytes[2],
        count_bytes[3],
    ]) as usize;
    let lengths_end = count
        .checked_mul(4)
        .and_then(|n| n.checked_add(4))
        .filter(|&end| end <= entry.meta.len())
        .ok_or_else(|| corrupt("vector lengths run past the entry"))?;
    let lengths: Vec<usize> = entry.meta[4..lengths_end]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let mut op = Op::decode(&entry.meta[lengths_end..])?;
    if lengths.iter().sum::<usize>() != entry.vectors.len() {
        return Err(corrupt("vector lengths do not add up"));
    }
    if let Op::Upsert { records, .. } = &mut op {
        if records.len() != lengths.len() {
            return Err(corrupt("record and vector counts differ"));
        }
        let mut at = 0;
        for (record, len) in records.iter_mut().zip(&lengths) {
            record.vector = entry.vectors[at..at + len].to_vec();
            at += len;
        }
    } else if !lengths.is_empty() {
        return Err(corrupt("vectors on an op that has none"));
    }
    Ok((entry.seq, op))
}

/// What a replica asks its primary; the first byte tells which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The next batch of log entries.
    Pull(PullRequest),
    /// A snapshot of the primary's whole state, for a replica behind its retained log.
    Snapshot,
    /// The replica has read the snapshot region `key`: the primary frees it.
    SnapshotDone { key: u64 },
    /// The node's epoch history (a demoted node compares it with its own).
    Epochs,
    /// A newer primary announces itself: a primary in an older epoch stops taking
    /// writes.
    Fence(Fence),
    /// Entries from any node's log, not only a primary's: a replica being promoted
    /// (to the epoch in the fence) first takes what its peers received and it did not.
    /// The peer first promises that promotion to take nothing more from an older
    /// primary, so what it answers holds everything it ever acknowledged.
    CatchUp(PullRequest, Fence),
    /// A promotion that caught up from this node failed: its promise is released.
    Release(Fence),
    /// The cluster addresses of the replicas the primary hears from, so that a
    /// replica knows its peers when it is promoted (the first versions' form).
    Members,
    /// The same replicas with their names (`[{"name","addr"}]`); a replica asks this
    /// first and falls back to [`Request::Members`] with a primary that lacks it.
    NamedMembers,
}

const TAG_PULL: u8 = 0;
const TAG_SNAPSHOT: u8 = 1;
const TAG_SNAPSHOT_DONE: u8 = 2;
const TAG_EPOCHS: u8 = 3;
const TAG_FENCE: u8 = 4;
const TAG_CATCH_UP: u8 = 5;
const TAG_MEMBERS: u8 = 6;
const TAG_RELEASE: u8 = 7;
const TAG_NAMED_MEMBERS: u8 = 8;

fn encode_fence(out: &mut Vec<u8>, fence: &Fence) {
    out.extend(fence.epoch.to_be_bytes());
    out.extend(fence.primary.to_string().into_bytes());
}

fn decode_fence(bytes: &[u8]) -> Result<Fence> {
    if bytes.len() <= 8 {
        return Err(Error::InvalidRequest(
            "fence without a primary address".into(),
        ));
    }
    let primary = std::str::from_utf8(&bytes[8..])
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::InvalidRequest("fence without a primary address".into()))?;
    Ok(Fence {
        epoch: u64_at(bytes, 0),
        primary,
    })
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Pull(pull) => {
                let mut out = vec![TAG_PULL];
                out.extend(pull.encode());
                out
            }
            Request::Snapshot => vec![TAG_SNAPSHOT],
            Request::SnapshotDone { key } => {
                let mut out = vec![TAG_SNAPSHOT_DONE];
                out.extend(key.to_be_bytes());
                out
            }
            Request::Epochs => vec![TAG_EPOCHS],
            Request::Members => vec![TAG_MEMBERS],
            Request::NamedMembers => vec![TAG_NAMED_MEMBERS],
            Request::CatchUp(pull, fence) => {
                let mut out = vec![TAG_CATCH_UP];
                out.extend(pull.encode());
                encode_fence(&mut out, fence);
                out
            }
            Request::Fence(fence) => {
                let mut out = vec![TAG_FENCE];
                encode_fence(&mut out, fence);
                out
            }
            Request::Release(fence) => {
                let mut out = vec![TAG_RELEASE];
                encode_fence(&mut out, fence);
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Request> {
        match bytes.split_first() {
            Some((&TAG_PULL, rest)) => Ok(Request::Pull(PullRequest::decode(rest)?)),
            Some((&TAG_SNAPSHOT, [])) => Ok(Request::Snapshot),
            Some((&TAG_SNAPSHOT_DONE, rest)) if rest.len() == 8 => Ok(Request::SnapshotDone {
                key: u64_at(rest, 0),
            }),
            Some((&TAG_EPOCHS, [])) => Ok(Request::Epochs),
            Some((&TAG_MEMBERS, [])) => Ok(Request::Members),
            Some((&TAG_NAMED_MEMBERS, [])) => Ok(Request::NamedMembers),
            Some((&TAG_CATCH_UP, rest)) if rest.len() > PULL_REQUEST_BYTES => {
                let (pull, fence) = rest.split_at(PULL_REQUEST_BYTES);
                Ok(Request::CatchUp(
                    PullRequest::decode(pull)?,
                    decode_fence(fence)?,
                ))
            }
            Some((&TAG_FENCE, rest)) => Ok(Request::Fence(decode_fence(rest)?)),
            Some((&TAG_RELEASE, rest)) => Ok(Request::Release(decode_fence(rest)?)),
            _ => Err(Error::InvalidRequest(format!(
                "replication request of {} bytes with tag {:?}",
                bytes.len(),
                bytes.first()
            ))),
        }
    }
}

/// The primary's offer of a snapshot: the region holding the file and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOffer {
    pub key: u64,
    pub len: u64,
    pub checksum: u64,
    pub applied_seq: u64,
}

impl SnapshotOffer {
    pub fn encode(&self) -> Vec<u8> {
        [self.key, self.len, self.checksum, self.applied_seq]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    pub fn decode(bytes: &[u8]) -> Result<SnapshotOffer> {
        if bytes.len() != 32 {
            return Err(Error::Corrupt(format!(
                "snapshot offer of {} bytes",
                bytes.len()
            )));
        }
        Ok(SnapshotOffer {
            key: u64_at(bytes, 0),
            len: u64_at(bytes, 8),
            checksum: u64_at(bytes, 16),
            applied_seq: u64_at(bytes, 24),
        })
    }
}

/// Big-endian u64 at `at`; the caller has checked the length.
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Decodes a node's answer to [`Request::Epochs`].
pub fn decode_epochs(bytes: &[u8]) -> Result<EpochHistory> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("epoch history: {e}")))
}

/// Pull response tags.
pub(crate) const PULLED: u8 = 0;
pub(crate) const NEEDS_SNAPSHOT: u8 = 1;
/// Pull response after its tag: `[primary_last u64][first_ms u64][epoch u64]
/// [next_ms u64][compressed u8]`, then the delta batch; or after NEEDS_SNAPSHOT,
/// `[log_start u64]`. `first_ms`: when the batch's first entry was committed on the
/// primary; `next_ms`: when the first entry after the batch was (0: none yet).
pub(crate) const RESPONSE_HEADER: usize = 34;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CollectionConfig, Distance, VectorRecord};

    fn ops() -> Vec<Op> {
        let mut meta = crate::Metadata::new();
        meta.insert("lang".into(), serde_json::json!("en"));
        vec![
            Op::CreateCollection(CollectionConfig::new("c", 2, Distance::Dot)),
            Op::Upsert {
                collection: "c".into(),
                records: vec![
                    VectorRecord::new("a", vec![1.0, f32::MIN_POSITIVE]).with_metadata(meta),
                    VectorRecord::new("b", vec![-0.0, 3.5]),
                ],
            },
            Op::Delete {
                collection: "c".into(),
                ids: vec!["a".into()],
            },
            Op::DropCollection { name: "c".into() },
        ]
    }

    #[test]
    fn entries_round_trip_with_vectors_outside_the_serializer() {
        for (i, op) in ops().into_iter().enumerate() {
            let wire = entry_to_wire(i as u64 + 1, &op).unwrap();
            if let Op::Upsert { .. } = op {
                assert_eq!(wire.vectors, vec![1.0, f32::MIN_POSITIVE, -0.0, 3.5]);
            } else {
                assert!(wire.vectors.is_empty());
            }
            assert_eq!(entry_from_wire(wire).unwrap(), (i as u64 + 1, op));
        }
    }

    #[test]
    fn damaged_entries_are_errors() {
        let good = entry_to_wire(7, &ops()[1]).unwrap();
        let mut short = good.clone();
        short.vectors.pop();
        assert!(entry_from_wire(short).is_err());
        let mut lying = good.clone();
        lying.meta[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(entry_from_wire(lying).is_err());
        let mut truncated = good;
        truncated.meta.truncate(3);
        assert!(entry_from_wire(truncated).is_err());
        assert!(PullRequest::decode(&[1, 2, 3]).is_err());
        let pull = PullRequest {
            from: 9,
            max: 100,
            wait_ms: 250,
        };
        assert_eq!(PullRequest::decode(&pull.encode()).unwrap(), pull);
        let fence = Fence {
            epoch: 3,
            primary: "127.0.0.1:5000".parse().unwrap(),
        };
        for request in [
            Request::Pull(pull),
            Request::Snapshot,
            Request::SnapshotDone { key: 77 },
            Request::Epochs,
            Request::Members,
            Request::NamedMembers,
            Request::CatchUp(pull, fence),
            Request::Fence(fence),
            Request::Release(fence),
        ] {
            assert_eq!(Request::decode(&request.encode()).unwrap(), request);
        }
        assert!(Request::decode(&[9]).is_err());
        // A catch-up must say which promotion it is for.
        let mut bare = vec![TAG_CATCH_UP];
        bare.extend(pull.encode());
        assert!(Request::decode(&bare).is_err());
        assert!(Request::decode(&[TAG_SNAPSHOT_DONE, 1]).is_err());
        assert!(Request::decode(&[]).is_err());
        let offer = SnapshotOffer {
            key: 1,
            len: 2,
            checksum: 3,
            applied_seq: 4,
        };
        assert_eq!(SnapshotOffer::decode(&offer.encode()).unwrap(), offer);
        assert!(SnapshotOffer::decode(&[0; 31]).is_err());
    }
}
