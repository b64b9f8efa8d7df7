//! The primary–replica nemesis: pauses, and manual failovers as an operator does them
//! (`POST /replication/promote` on a replica, `POST /replication/demote` on the old
//! primary and the other replica), with or without the primary cut off first.

use super::history::Recorder;
use super::nemesis::ADMIN_KEY;
use super::workload::{Rng, Targets};
use crate::cluster::Trio;
use crate::support::{Client, Node};
use serde_json::json;
use std::time::Duration;

pub struct Failover {
    recorder: Recorder,
    targets: Targets,
    /// Cluster addresses by node index (0: the first primary).
    addrs: [String; 3],
    urls: [String; 3],
    primary: usize,
}

fn nodes(trio: &Trio) -> [&Node; 3] {
    [&trio.p, &trio.r1, &trio.r2]
}

impl Failover {
    pub fn new(trio: &Trio, recorder: &Recorder, targets: &Targets) -> Failover {
        Failover {
            recorder: recorder.clone(),
            targets: targets.clone(),
            addrs: [
                trio.p_addr.clone(),
                trio.r1_addr.clone(),
                trio.r2_addr.clone(),
            ],
            urls: [trio.p.url.clone(), trio.r1.url.clone(), trio.r2.url.clone()],
            primary: 0,
        }
    }

    pub fn primary(&self) -> usize {
        self.primary
    }

    fn admin(&self, i: usize, path: &str, body: serde_json::Value) -> Option<(u16, String)> {
        Client::with_timeout(&self.urls[i], Duration::from_secs(30))
            .try_post_with_bearer(path, ADMIN_KEY, &body)
            .ok()
            .map(|(status, body)| (status, body.to_string()))
    }

    fn partition(&self, sides: &[Vec<usize>]) {
        let sets: Vec<Vec<String>> = sides
            .iter()
            .map(|side| side.iter().map(|&i| self.addrs[i].clone()).collect())
            .collect();
        for url in &self.urls {
            let _ = Client::with_timeout(url, Duration::from_secs(10))
                .with_bearer(ADMIN_KEY)
                .try_post("/debug/faults", &json!({"partitions": sets, "seed": 7}));
        }
    }

    pub fn heal(&self, _trio: &Trio) {
        for url in &self.urls {
            let _ = Client::with_timeout(url, Duration::from_secs(10))
                .with_bearer(ADMIN_KEY)
                .try_delete("/debug/faults");
        }
        self.recorder.note("heal".into());
    }

    /// Promotes replica `to` and re-points every other node at it. Returns whether the
    /// promotion was accepted.
    fn fail_over_to(&mut self, to: usize) -> bool {
        let promoted = self.admin(to, "/replication/promote", json!({}));
        self.recorder
            .note(format!("promote {}: {:?}", to + 1, promoted));
        if !matches!(promoted, Some((200, _))) {
            return false;
        }
        let old = self.primary;
        self.primary = to;
        *self.targets.writer.lock() = Some(to);
        for i in (0..3).filter(|i| *i != to && *i != old) {
            let answer = self.admin(i, "/replication/demote", json!({"primary": self.addrs[to]}));
            self.recorder
                .note(format!("re-point {}: {answer:?}", i + 1));
        }
        true
    }

    fn demote_old(&self, old: usize) {
        let answer = self.admin(
            old,
            "/replication/demote",
            json!({"primary": self.addrs[self.primary]}),
        );
        self.recorder
            .note(format!("demote old primary {}: {answer:?}", old + 1));
    }

    pub fn fault(&mut self, trio: &Trio, rng: &mut Rng) {
        let hold = Duration::from_millis(300 + rng.below(1200));
        match rng.below(3) {
            0 => {
                let victim = rng.below(3) as usize;
                self.recorder.fault(format!("pause {}", victim + 1));
                nodes(trio)[victim].signal("STOP");
                std::thread::sleep(hold);
                nodes(trio)[victim].signal("CONT");
                self.recorder.note(format!("resume {}", victim + 1));
            }
            1 => {
                let old = self.primary;
                let to = (old + 1 + rng.below(2) as usize) % 3;
                self.recorder
                    .fault(format!("fail over from {} to {}", old + 1, to + 1));
                if self.fail_over_to(to) {
                    self.demote_old(old);
                }
            }
            _ => {
                let old = self.primary;
                let rest: Vec<usize> = (0..3).filter(|i| *i != old).collect();
                self.recorder.fault(format!("isolate primary {}", old + 1));
                self.partition(&[vec![old], rest]);
                std::thread::sleep(hold);
                let to = (old + 1 + rng.below(2) as usize) % 3;
                let moved = self.fail_over_to(to);
                self.heal(trio);
                if moved {
                    self.demote_old(old);
                }
            }
        }
    }
}
