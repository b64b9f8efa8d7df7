//! What `/health` reports beyond "the process answers": problems the node recovered
//! from (a worker thread that panicked and was restarted, a collection served from
//! host memory after its GPU filled) and the one it cannot recover from (it stopped
//! applying writes). Kept with the metrics, so it survives a reload.

use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts, Registry};

/// The most recovered problems remembered (the newest ones).
const KEPT: usize = 32;

/// How the node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing went wrong.
    Ok,
    /// Something went wrong and was recovered from; the node serves every request.
    Degraded,
    /// The node no longer applies writes and must be restarted.
    Failed,
}

/// One thing that went wrong.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// Which part: `writer`, `search`, `apply`.
    pub component: String,
    pub message: String,
    pub unix_ms: u64,
}

pub struct NodeHealth {
    problems: Mutex<Vec<Problem>>,
    failed: Mutex<Option<Problem>>,
    panics: IntCounterVec,
}

impl NodeHealth {
    pub fn register(registry: &Registry) -> Result<NodeHealth, prometheus::Error> {
        let panics = IntCounterVec::new(
            Opts::new(
                "needle_thread_panics_total",
                "Panics caught in the node's worker threads, which were recovered",
            ),
            &["component"],
        )?;
        registry.register(Box::new(panics.clone()))?;
        Ok(NodeHealth {
            problems: Mutex::default(),
            failed: Mutex::default(),
            panics,
        })
    }

    /// A panic was caught in `component` and the work it was doing was answered
    /// with an error.
    pub fn record_panic(&self, component: &str, payload: &(dyn std::any::Any + Send)) {
        let message = panic_message(payload);
        tracing::error!(component, %message, "a worker panicked; recovered");
        self.panics.with_label_values(&[component]).inc();
        self.record(component, format!("panicked: {message}"));
    }

    /// A problem that was worked around.
    pub fn record(&self, component: &str, message: String) {
        let mut problems = self.problems.lock();
        if problems.len() >= KEPT {
            problems.remove(0);
        }
        problems.push(Problem {
            component: component.to_string(),
            message,
            unix_ms: now_ms(),
        });
    }

    /// The node cannot go on applying writes (its memory may disagree with its
    /// store and could not be rebuilt).
    pub fn fail(&self, component: &str, message: String) {
        tracing::error!(component, %message, "the node stops applying writes");
        let mut failed = self.failed.lock();
        if failed.is_none() {
            *failed = Some(Problem {
                component: component.to_string(),
                message,
                unix_ms: now_ms(),
            });
        }
    }

    /// The node's state was rebuilt from scratch (a reload, a snapshot install): a
    /// failure of the old state no longer applies. Kept among the problems.
    pub fn clear_failure(&self) {
        if let Some(failure) = self.failed.lock().take() {
            self.record(
                &failure.component,
                format!(
                    "{} (cleared: the state was rebuilt from a snapshot)",
                    failure.message
                ),
            );
        }
    }

    /// Why the node stopped taking writes, if it did.
    pub fn failure(&self) -> Option<Problem> {
        self.failed.lock().clone()
    }

    pub fn status(&self) -> Status {
        if self.failed.lock().is_some() {
            Status::Failed
        } else if self.problems.lock().is_empty() {
            Status::Ok
        } else {
            Status::Degraded
        }
    }

    /// Every problem remembered, the failure last.
    pub fn problems(&self) -> Vec<Problem> {
        let mut all = self.problems.lock().clone();
        all.extend(self.failed.lock().clone());
        all
    }
}

fn now_ms() -> u64 {
    crate::clock::system_ms()
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_moves_from_ok_to_degraded_to_failed() {
        let health = NodeHealth::register(&Registry::new()).unwrap();
        assert_eq!(health.status(), Status::Ok);
        let payload: Box<dyn std::any::Any + Send> = Box::new("boom");
        health.record_panic("writer", payload.as_ref());
        assert_eq!(health.status(), Status::Degraded);
        assert_eq!(health.problems()[0].message, "panicked: boom");
        health.fail("apply", "store unreadable".into());
        assert_eq!(health.status(), Status::Failed);
        assert_eq!(health.failure().unwrap().component, "apply");
        for i in 0..100 {
            health.record("search", format!("{i}"));
        }
        assert_eq!(health.problems().len(), KEPT + 1);
    }
}
