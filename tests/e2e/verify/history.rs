//! A recorded history: every operation a client invoked, with when it was invoked and
//! completed, where it went and what came back; and every fault the nemesis injected.
//! Written as JSON lines, one per operation or fault, so a failing run can be read
//! (and checked again) after the fact.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// What a client asked for. Register keys hold the value of the last upsert; values
/// are unique across the run, so a read names the write it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    Upsert {
        key: String,
        value: u64,
    },
    Delete {
        key: String,
    },
    Get {
        key: String,
        consistency: String,
    },
    /// A nearest-neighbour search for the vector `value` was written with on `key`.
    Search {
        key: String,
        value: u64,
        consistency: String,
    },
    /// An insert of a fresh id that is never written again (durability).
    Append {
        id: String,
        concern: String,
    },
}

impl Call {
    pub fn key(&self) -> &str {
        match self {
            Call::Upsert { key, .. }
            | Call::Delete { key }
            | Call::Get { key, .. }
            | Call::Search { key, .. } => key,
            Call::Append { id, .. } => id,
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Call::Upsert { .. } | Call::Delete { .. } | Call::Append { .. }
        )
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A write was acknowledged.
    Written,
    /// A delete was acknowledged, saying whether the key held a value.
    Deleted { existed: bool },
    /// A get's answer: the value the key held, or none.
    Read { found: Option<u64> },
    /// A search's result ids, nearest first.
    Hits { ids: Vec<String> },
    /// Refused with an error that says nothing was done (a 4xx).
    Failed { code: String },
    /// No answer, or one that leaves open whether a write took effect (timeouts,
    /// 503 NO_LEADER, 504 WRITE_CONCERN_TIMEOUT, a dropped connection).
    Unknown { reason: String },
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        !matches!(self, Outcome::Failed { .. } | Outcome::Unknown { .. })
    }
}

/// One operation, invocation and completion together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique in the run, in invocation order per client.
    pub index: u64,
    pub client: usize,
    /// `http` or `native` (the RaftClient over QUIC).
    pub via: String,
    /// The member the request went to (index), when the client chose one.
    pub node: Option<usize>,
    #[serde(flatten)]
    pub call: Call,
    /// Microseconds since the run began.
    pub invoked_us: u64,
    pub completed_us: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A line of the history file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Op(Operation),
    /// A fault injected.
    Fault {
        at_us: u64,
        fault: String,
    },
    /// Anything else the nemesis did or saw: heals, restarts, answers.
    Note {
        at_us: u64,
        note: String,
    },
}

/// The shared recorder: clients and the nemesis append, the checkers read.
#[derive(Clone)]
pub struct Recorder {
    started: Instant,
    lines: Arc<Mutex<Vec<Line>>>,
    next_index: Arc<std::sync::atomic::AtomicU64>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            started: Instant::now(),
            lines: Arc::default(),
            next_index: Arc::default(),
        }
    }

    /// Microseconds since the run began.
    pub fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Runs `call` and records it with its invocation and completion times.
    pub fn record(
        &self,
        client: usize,
        via: &str,
        node: Option<usize>,
        call: Call,
        run: impl FnOnce(&Call) -> Outcome,
    ) -> Outcome {
        let index = self
            .next_index
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let invoked_us = self.now_us();
        let outcome = run(&call);
        let completed_us = self.now_us();
        self.lines.lock().push(Line::Op(Operation {
            index,
            client,
            via: via.to_string(),
            node,
            call,
            invoked_us,
            completed_us,
            outcome: outcome.clone(),
        }));
        outcome
    }

    /// Records a fault injected (counted in the report).
    pub fn fault(&self, fault: String) {
        let at_us = self.now_us();
        println!("[{:>9.3} s] {fault}", at_us as f64 / 1e6);
        self.lines.lock().push(Line::Fault { at_us, fault });
    }

    /// Records a heal, a restart or an answer the nemesis got.
    pub fn note(&self, note: String) {
        let at_us = self.now_us();
        println!("[{:>9.3} s]   {note}", at_us as f64 / 1e6);
        self.lines.lock().push(Line::Note { at_us, note });
    }

    pub fn operations(&self) -> Vec<Operation> {
        self.lines
            .lock()
            .iter()
            .filter_map(|l| match l {
                Line::Op(op) => Some(op.clone()),
                Line::Fault { .. } | Line::Note { .. } => None,
            })
            .collect()
    }

    pub fn faults(&self) -> usize {
        self.lines
            .lock()
            .iter()
            .filter(|l| matches!(l, Line::Fault { .. }))
            .count()
    }

    /// Writes the history as JSON lines.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for line in self.lines.lock().iter() {
            serde_json::to_writer(&mut out, line)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }
}

/// Reads a history file written by [`Recorder::write_to`].
pub fn read_operations(path: &Path) -> std::io::Result<Vec<Operation>> {
    let text = std::fs::read_to_string(path)?;
    let mut ops = Vec::new();
    for line in text.lines() {
        if let Line::Op(op) = serde_json::from_str(line)? {
            ops.push(op);
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_file_reads_back_as_written() {
        let recorder = Recorder::new();
        let calls = [
            (
                Call::Upsert {
                    key: "k1".into(),
                    value: 7,
                },
                Outcome::Written,
            ),
            (
                Call::Get {
                    key: "k1".into(),
                    consistency: "linearizable".into(),
                },
                Outcome::Read { found: Some(7) },
            ),
            (
                Call::Delete { key: "k1".into() },
                Outcome::Unknown {
                    reason: "timeout".into(),
                },
            ),
        ];
        for (call, outcome) in calls.clone() {
            recorder.record(0, "http", Some(1), call, |_| outcome);
        }
        recorder.fault("pause 2".into());
        recorder.note("resume 2".into());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        recorder.write_to(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert_eq!(recorder.faults(), 1);
        assert!(
            text.contains(r#""call":"upsert","key":"k1","value":7"#),
            "{text}"
        );
        let ops = read_operations(&path).unwrap();
        assert_eq!(ops, recorder.operations());
        let read: Vec<(Call, Outcome)> = ops.into_iter().map(|o| (o.call, o.outcome)).collect();
        assert_eq!(read, calls.to_vec());
    }
}
