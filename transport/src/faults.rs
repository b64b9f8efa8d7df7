//! Fault injection for tests of real clusters: drop, delay, duplicate or reorder
//! messages to chosen peers, and partition sets of nodes, changed at run time.
//!
//! The decision is a plain, seeded function of the configuration (sans-IO, so a
//! failing schedule replays from its seed); the QUIC shell applies it to every
//! message it sends (requests, pushes, region writes) and to every stream it accepts.
//! On an ordered request stream (Raft replication) a request is delayed or lost,
//! never duplicated or overtaken, as on any ordered stream: a lost one holds up
//! every request behind it until the requester gives up on the stream.
//! A transport has an injector only when built with one, which a node does only when
//! started with `--fault-injection`.

use std::net::SocketAddr;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// What to do to messages exchanged with some peers. Probabilities are 0 to 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Peer addresses (`ip:port`) the rule applies to; empty means every peer.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Chance a message is silently lost.
    #[serde(default)]
    pub drop: f64,
    /// Extra latency, uniformly between the two bounds in milliseconds.
    #[serde(default)]
    pub delay_ms: Option<(u64, u64)>,
    /// Chance a message is sent twice.
    #[serde(default)]
    pub duplicate: f64,
    /// Chance a message is held back by `reorder_ms`, so later ones overtake it.
    #[serde(default)]
    pub reorder: f64,
    #[serde(default = "default_reorder_ms")]
    pub reorder_ms: u64,
}

fn default_reorder_ms() -> u64 {
    50
}

/// The whole fault configuration of one node; replaced as a unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    /// Sets of node addresses; nothing passes between nodes in different sets.
    /// Addresses in no set are unaffected.
    #[serde(default)]
    pub partitions: Vec<Vec<String>>,
    /// Seed of the random choices, printed by test harnesses so runs replay.
    #[serde(default)]
    pub seed: u64,
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// 0: dropped; 2: duplicated.
    pub copies: u32,
    pub delay: Duration,
}

impl Verdict {
    pub const DELIVER: Verdict = Verdict {
        copies: 1,
        delay: Duration::ZERO,
    };
}

/// A node's injector: its configuration and random state.
#[derive(Debug)]
pub struct FaultInjector {
    local: Mutex<Option<SocketAddr>>,
    state: Mutex<(FaultConfig, u64)>,
}

impl Default for FaultInjector {
    fn default() -> Self {
        FaultInjector {
            local: Mutex::new(None),
            state: Mutex::new((FaultConfig::default(), 0x9e37_79b9_7f4a_7c15)),
        }
    }
}

impl FaultInjector {
    /// Replaces the configuration (and reseeds).
    pub fn set(&self, config: FaultConfig) {
        let seed = config.seed ^ 0x9e37_79b9_7f4a_7c15;
        *self.state.lock() = (config, seed | 1);
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.set(FaultConfig::default());
    }

    pub fn config(&self) -> FaultConfig {
        self.state.lock().0.clone()
    }

    /// The address partitions are judged from (the transport's own).
    pub(crate) fn set_local(&self, addr: SocketAddr) {
        *self.local.lock() = Some(addr);
    }

    /// Whether `peer` is on the other side of a partition from this node. Checked on
    /// incoming streams, so configuring one side cuts both directions.
    pub fn is_partitioned(&self, peer: SocketAddr) -> bool {
        let local = *self.local.lock();
        partitioned(&self.state.lock().0, local, peer)
    }

    /// The fate of one message between this node and `peer`.
    pub fn decide(&self, peer: SocketAddr) -> Verdict {
        let local = *self.local.lock();
        let mut state = self.state.lock();
        let (config, rng) = &mut *state;
        decide(config, rng, local, peer)
    }
}

fn uniform(rng: &mut u64) -> f64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    (*rng >> 11) as f64 / (1u64 << 53) as f64
}

fn partitioned(config: &FaultConfig, local: Option<SocketAddr>, peer: SocketAddr) -> bool {
    let Some(local) = local else { return false };
    let side = |addr: SocketAddr| {
        let text = addr.to_string();
        config.partitions.iter().position(|set| set.contains(&text))
    };
    matches!((side(local), side(peer)), (Some(a), Some(b)) if a != b)
}

fn decide(
    config: &FaultConfig,
    rng: &mut u64,
    local: Option<SocketAddr>,
    peer: SocketAddr,
) -> Verdict {
    if partitioned(config, local, peer) {
        return Verdict {
            copies: 0,
            delay: Duration::ZERO,
        };
    }
    let text = peer.to_string();
    let mut verdict = Verdict::DELIVER;
    for rule in config
        .rules
        .iter()
        .filter(|r| r.peers.is_empty() || r.peers.contains(&text))
    {
        if uniform(rng) < rule.drop {
            verdict.copies = 0;
        } else if uniform(rng) < rule.duplicate {
            verdict.copies = verdict.copies.max(2);
        }
        if let Some((lo, hi)) = rule.delay_ms {
            let span = hi.saturating_sub(lo) as f64;
            verdict.delay += Duration::from_millis(lo + (uniform(rng) * span) as u64);
        }
        if uniform(rng) < rule.reorder {
            verdict.delay += Duration::from_millis(rule.reorder_ms);
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn injector(config: FaultConfig) -> FaultInjector {
        let f = FaultInjector::default();
        f.set_local(addr(1));
        f.set(config);
        f
    }

    fn rule(peers: &[u16]) -> FaultRule {
        FaultRule {
            peers: peers.iter().map(|&p| addr(p).to_string()).collect(),
            reorder_ms: 50,
            ..FaultRule::default()
        }
    }

    #[test]
    fn no_configuration_delivers_everything() {
        let f = injector(FaultConfig::default());
        assert!((0..100).all(|_| f.decide(addr(2)) == Verdict::DELIVER));
    }

    #[test]
    fn drops_hit_only_the_named_peers_at_the_given_rate() {
        let f = injector(FaultConfig {
            rules: vec![FaultRule {
                drop: 0.3,
                ..rule(&[2])
            }],
            ..FaultConfig::default()
        });
        let dropped = (0..10_000)
            .filter(|_| f.decide(addr(2)).copies == 0)
            .count();
        assert!((2700..3300).contains(&dropped), "{dropped}");
        assert!((0..1000).all(|_| f.decide(addr(3)) == Verdict::DELIVER));
    }

    #[test]
    fn delays_duplicates_and_reorders() {
        let f = injector(FaultConfig {
            rules: vec![FaultRule {
                delay_ms: Some((10, 20)),
                duplicate: 1.0,
                reorder: 1.0,
                ..rule(&[])
            }],
            ..FaultConfig::default()
        });
        for _ in 0..100 {
            let v = f.decide(addr(9));
            assert_eq!(v.copies, 2);
            assert!(
                v.delay >= Duration::from_millis(60) && v.delay <= Duration::from_millis(70),
                "{v:?}"
            );
        }
    }

    #[test]
    fn partitions_cut_between_sets_and_heal() {
        let sets = vec![
            vec![addr(1).to_string(), addr(2).to_string()],
            vec![addr(3).to_string()],
        ];
        let f = injector(FaultConfig {
            partitions: sets,
            ..FaultConfig::default()
        });
        assert_eq!(f.decide(addr(2)), Verdict::DELIVER);
        assert_eq!(f.decide(addr(3)).copies, 0);
        assert_eq!(
            f.decide(addr(4)),
            Verdict::DELIVER,
            "nodes in no set are unaffected"
        );
        f.heal();
        assert_eq!(f.decide(addr(3)), Verdict::DELIVER);
    }

    #[test]
    fn the_same_seed_replays_the_same_choices() {
        let config = FaultConfig {
            rules: vec![FaultRule {
                drop: 0.5,
                ..rule(&[])
            }],
            seed: 42,
            ..FaultConfig::default()
        };
        let run = || {
            let f = injector(config.clone());
            (0..200)
                .map(|_| f.decide(addr(2)).copies)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn configurations_are_json() {
        let text = r#"{"rules":[{"peers":["127.0.0.1:5002"],"drop":0.1,"delay_ms":[5,10]}],"partitions":[["127.0.0.1:5001"],["127.0.0.1:5002"]],"seed":7}"#;
        let config: FaultConfig = serde_json::from_str(text).unwrap();
        assert_eq!(config.rules[0].delay_ms, Some((5, 10)));
        assert!(serde_json::from_str::<FaultConfig>(r#"{"drop":1}"#).is_err());
    }
}
