//! What a leader sends in one AppendEntries, and which answers to it a follower
//! could really have given.

use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, StreamAppendError, StreamAppendResult};

use crate::types::{LogId, TypeConfig, Vote};

/// Payload bytes one AppendEntries request carries at most (always at least one
/// entry): openraft batches by entry count, and a few large batched writes would
/// otherwise exceed the transport's frame limit and never replicate.
pub const MAX_APPEND_BYTES: usize = 8 << 20;

/// Cuts `rpc` to the entries that fit in `max_bytes` of command payload. Returns the
/// request to send and, when entries were left out, the id of the last one sent.
pub fn bounded_append(
    mut rpc: AppendEntriesRequest<TypeConfig>,
    max_bytes: usize,
) -> (AppendEntriesRequest<TypeConfig>, Option<LogId>) {
    let mut bytes = 0;
    let mut keep = 0;
    for entry in &rpc.entries {
        let size = match &entry.payload {
            openraft::EntryPayload::Normal(command) => command.payload.len() + 32,
            _ => 256,
        };
        if keep > 0 && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        keep += 1;
    }
    if keep == rpc.entries.len() {
        return (rpc, None);
    }
    rpc.entries.truncate(keep);
    let last = rpc.entries.last().map(openraft::entry::RaftEntry::log_id);
    (rpc, last)
}

/// Whether `answer` is one a follower could give to an append of the entries
/// after `prev` up to `last`, sent with `vote`. Anything else comes from a broken
/// or lying member, and openraft must not see it: it asserts on these ranges,
/// and would count entries as matched that never arrived.
pub(crate) fn plausible(
    answer: &StreamAppendResult<TypeConfig>,
    prev: Option<&LogId>,
    last: Option<&LogId>,
    vote: &Vote,
) -> bool {
    match answer {
        Ok(matched) => prev <= matched.as_ref() && matched.as_ref() <= last,
        Err(StreamAppendError::Conflict(at)) => prev == Some(at),
        // Higher, or not comparable with ours: not one a follower may refuse with
        // when it holds ours or a lower one.
        Err(StreamAppendError::HigherVote(higher)) => !matches!(
            higher.partial_cmp(vote),
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        ),
    }
}

/// How long an AppendEntries with entries may take.
pub(crate) const APPEND_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Entry;
    use crate::Command;
    use openraft::entry::RaftEntry;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::vote::RaftLeaderId;

    fn request(sizes: &[usize]) -> AppendEntriesRequest<TypeConfig> {
        let entries = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                Entry::new_normal(
                    LogId::new(LeaderId::new(1, 1).to_committed(), i as u64 + 1),
                    Command {
                        request_id: None,
                        payload: vec![0; n],
                    },
                )
            })
            .collect();
        AppendEntriesRequest {
            vote: crate::types::Vote::new_committed(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        }
    }

    #[test]
    fn answers_naming_entries_that_were_not_sent_are_implausible() {
        let id = |i: u64| LogId::new(LeaderId::new(1, 1).to_committed(), i);
        let vote = crate::types::Vote::new_committed(1, 1);
        let (prev, last) = (Some(id(3)), Some(id(5)));
        let check = |answer: StreamAppendResult<TypeConfig>| {
            plausible(&answer, prev.as_ref(), last.as_ref(), &vote)
        };
        assert!(check(Ok(Some(id(5)))));
        assert!(check(Ok(Some(id(4)))));
        assert!(!check(Ok(Some(id(6)))), "matched past what was sent");
        assert!(!check(Ok(Some(id(2)))), "matched before what was sent");
        assert!(!check(Ok(None)));
        assert!(check(Err(StreamAppendError::Conflict(id(3)))));
        assert!(!check(Err(StreamAppendError::Conflict(id(4)))));
        assert!(check(Err(StreamAppendError::HigherVote(
            crate::types::Vote::new(2, 2)
        ))));
        assert!(!check(Err(StreamAppendError::HigherVote(vote))));
        // A conflict with nothing before the entries sent cannot happen.
        assert!(!plausible(
            &Err(StreamAppendError::Conflict(id(1))),
            None,
            Some(&id(1)),
            &vote
        ));
    }

    #[test]
    fn a_large_batch_is_cut_to_a_prefix_that_fits() {
        let (rpc, last) = bounded_append(request(&[400, 400, 400]), 1000);
        assert_eq!(rpc.entries.len(), 2);
        assert_eq!(last.map(|l| l.index), Some(2));
        let (rpc, last) = bounded_append(request(&[10, 10]), 1000);
        assert_eq!((rpc.entries.len(), last), (2, None));
        // One entry larger than the bound still goes, alone.
        let (rpc, last) = bounded_append(request(&[5000, 10]), 1000);
        assert_eq!(rpc.entries.len(), 1);
        assert_eq!(last.map(|l| l.index), Some(1));
        let (rpc, last) = bounded_append(request(&[]), 1000);
        assert_eq!((rpc.entries.len(), last), (0, None));
    }
}
