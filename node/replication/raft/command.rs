//! How a write travels in a Raft log entry and how its result comes back: the
//! operation log's own encoding of [`Op`], with the write's precondition, and an
//! outcome that keeps the error's code, so a client of a follower gets the same
//! answer as one of the leader.

use needle_consensus::{Command, CommandOutcome, RequestId};
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::error::Result;
use crate::op::{Applied, Op, Precondition};
use crate::replication::error::ReplicationError;
use crate::replication::sharding::ShardedCollection;
use crate::Error;

const IF_ABSENT: u8 = 1;
const UNCONDITIONAL: u8 = 0;
/// Not a write: a sharded collection's creation (its settings and shard map), for
/// the cluster-wide group. An older member cannot decode it, and stops at it
/// rather than skip it.
const SHARDED_COLLECTION: u8 = 2;

/// A write as a Raft command: the precondition byte, then the op's log encoding.
pub(crate) fn encode(
    op: &Op,
    precondition: Precondition,
    request_id: Option<RequestId>,
) -> Result<Command> {
    let mut payload = vec![match precondition {
        Precondition::IdsAbsent => IF_ABSENT,
        Precondition::None => UNCONDITIONAL,
    }];
    payload.extend(op.encode()?);
    Ok(Command {
        request_id,
        payload,
    })
}

/// A sharded collection's creation as a Raft command.
pub(crate) fn encode_sharded_collection(
    record: &ShardedCollection,
    request_id: Option<RequestId>,
) -> Result<Command> {
    let mut payload = vec![SHARDED_COLLECTION];
    payload.extend(
        serde_json::to_vec(record)
            .map_err(|e| Error::Corrupt(format!("encoding a shard map: {e}")))?,
    );
    Ok(Command {
        request_id,
        payload,
    })
}

/// Whether `command` creates a sharded collection (its tag alone: nothing decoded).
pub(crate) fn is_sharded_collection(command: &Command) -> bool {
    command.payload.first() == Some(&SHARDED_COLLECTION)
}

/// The sharded collection `command` creates, if it is such a command (`None`
/// for a write).
pub(crate) fn decode_sharded_collection(command: &Command) -> Option<Result<ShardedCollection>> {
    match command.payload.split_first() {
        Some((&SHARDED_COLLECTION, body)) => Some(
            serde_json::from_slice(body)
                .map_err(|e| Error::Corrupt(format!("decoding a shard map: {e}"))),
        ),
        _ => None,
    }
}

pub(crate) fn decode(command: &Command) -> Result<(Op, Precondition)> {
    match command.payload.split_first() {
        Some((&IF_ABSENT, op)) => Ok((Op::decode(op)?, Precondition::IdsAbsent)),
        Some((&UNCONDITIONAL, op)) => Ok((Op::decode(op)?, Precondition::None)),
        _ => Err(Error::Corrupt(
            "raft command without a precondition byte".into(),
        )),
    }
}

#[derive(Serialize, Deserialize)]
struct AppliedWire {
    seq: u64,
    affected: u64,
    deleted: Vec<bool>,
}

/// An error as it crosses between members and clients: code, message and class.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RejectedWire {
    code: String,
    message: String,
    kind: ErrorKind,
}

impl RejectedWire {
    pub fn from_error(e: &Error) -> RejectedWire {
        RejectedWire {
            code: e.code().to_string(),
            message: e.to_string(),
            kind: e.kind(),
        }
    }

    pub fn from_replication_error(e: &ReplicationError) -> RejectedWire {
        RejectedWire {
            code: e.code().to_string(),
            message: e.to_string(),
            kind: e.kind(),
        }
    }

    pub fn into_error(self) -> ReplicationError {
        ReplicationError::Remote {
            code: self.code,
            message: self.message,
            kind: self.kind,
        }
    }
}

/// What applying the entry did, for whoever waits on it.
pub(crate) fn outcome(result: &Result<Applied>) -> CommandOutcome {
    let wire: std::result::Result<AppliedWire, RejectedWire> = match result {
        Ok(a) => Ok(AppliedWire {
            seq: a.seq,
            affected: a.affected as u64,
            deleted: a.deleted.clone(),
        }),
        Err(e) => Err(RejectedWire::from_error(e)),
    };
    // Encoding plain structs into a Vec cannot fail; an empty outcome reads as an error.
    CommandOutcome(postcard::to_stdvec(&wire).unwrap_or_default())
}

/// [`outcome`], for an answer the cluster gave rather than the state machine (a
/// leader answering a forwarded write).
pub(crate) fn replicated_outcome(
    result: &crate::replication::error::Result<Applied>,
) -> CommandOutcome {
    match result {
        Err(ReplicationError::Core(e)) => outcome(&Err(e.clone())),
        Err(e) => {
            let wire: std::result::Result<AppliedWire, RejectedWire> =
                Err(RejectedWire::from_replication_error(e));
            CommandOutcome(postcard::to_stdvec(&wire).unwrap_or_default())
        }
        Ok(a) => outcome(&Ok(a.clone())),
    }
}

pub(crate) fn read_outcome(outcome: &CommandOutcome) -> crate::replication::error::Result<Applied> {
    let wire: std::result::Result<AppliedWire, RejectedWire> = postcard::from_bytes(&outcome.0)
        .map_err(|e| Error::Corrupt(format!("decoding a write outcome: {e}")))?;
    match wire {
        Ok(a) => Ok(Applied {
            seq: a.seq,
            affected: a.affected as usize,
            deleted: a.deleted,
        }),
        Err(r) => Err(r.into_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VectorRecord;

    #[test]
    fn a_write_survives_the_log_encoding() {
        let op = Op::Upsert {
            collection: "docs".into(),
            records: vec![VectorRecord {
                id: "a".into(),
                vector: vec![1.0, 2.0],
                metadata: None,
            }],
        };
        let id = RequestId {
            client: 7,
            serial: 3,
        };
        let command = encode(&op, Precondition::IdsAbsent, Some(id)).unwrap();
        assert_eq!(command.request_id, Some(id));
        assert_eq!(decode(&command).unwrap(), (op, Precondition::IdsAbsent));
        let garbage = Command {
            request_id: None,
            payload: vec![9, 9],
        };
        assert!(decode(&garbage).is_err());
    }

    #[test]
    fn a_sharded_collection_survives_the_log_encoding_and_is_never_read_as_a_write() {
        use crate::model::{CollectionConfig, Distance};
        use crate::replication::sharding::placement::plan;
        let record = ShardedCollection {
            config: CollectionConfig::new("docs", 4, Distance::Dot),
            map: plan(3, None, &[1, 2, 3], needle_consensus::GroupId(1)).unwrap(),
            created_by: None,
        };
        let command = encode_sharded_collection(&record, None).unwrap();
        assert_eq!(
            decode_sharded_collection(&command).unwrap().unwrap(),
            record
        );
        assert!(decode(&command).is_err(), "a shard map decoded as a write");
        let write = encode(
            &Op::DropCollection {
                name: "docs".into(),
            },
            Precondition::None,
            None,
        )
        .unwrap();
        assert!(decode_sharded_collection(&write).is_none());
        let damaged = Command {
            request_id: None,
            payload: vec![2, b'{'],
        };
        assert!(decode_sharded_collection(&damaged).unwrap().is_err());
    }

    #[test]
    fn a_rejection_keeps_its_code_and_class() {
        let rejected = outcome(&Err(Error::VectorExists("a".into())));
        let err = read_outcome(&rejected).unwrap_err();
        assert_eq!(err.code(), "VECTOR_EXISTS");
        assert_eq!(err.kind(), ErrorKind::Conflict);
        let applied = Applied {
            seq: 4,
            affected: 1,
            deleted: vec![true],
        };
        assert_eq!(
            read_outcome(&outcome(&Ok(applied.clone()))).unwrap(),
            applied
        );
    }
}
