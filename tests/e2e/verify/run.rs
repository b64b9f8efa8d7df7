//! One verification run: a cluster of real processes, clients recording a history,
//! a nemesis, then heal, quiescence, final reads, and every checker over the result.

use super::checks;
use super::history::{Call, Operation, Outcome, Recorder};
use super::linearizability::{self, KeyVerdict};
use super::nemesis::{self, RaftFault, ADMIN_KEY};
use super::workload::{http_call, Clients, Mix, Rng, Targets, APPENDS, DIMS, REGISTERS};
use crate::raft_cluster::RaftCluster;
use crate::support::Client;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a run found.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    pub seed: u64,
    pub operations: usize,
    pub acknowledged_writes: usize,
    pub faults: usize,
    pub keys_checked: usize,
    pub violations: BTreeMap<String, Vec<Operation>>,
    pub inconclusive: Vec<String>,
    pub lost_appends: Vec<Operation>,
    pub stale_searches: Vec<(Operation, Operation)>,
    pub searches_checked: usize,
    pub divergence: Option<String>,
    pub history: PathBuf,
}

impl Report {
    /// Anomalies of every kind (inconclusive keys count: an undecided key is not a
    /// pass).
    pub fn anomalies(&self) -> usize {
        self.violations.len()
            + self.inconclusive.len()
            + self.lost_appends.len()
            + self.stale_searches.len()
            + usize::from(self.divergence.is_some())
    }

    pub fn summary(&self) -> String {
        let mut text = format!(
            "{}: seed {} · {} operations ({} acknowledged writes) · {} faults · {} keys \
             checked, {} not linearizable, {} undecided · {} acknowledged appends lost · \
             {} of {} judgeable linearizable searches stale · converged: {} · history {}",
            self.name,
            self.seed,
            self.operations,
            self.acknowledged_writes,
            self.faults,
            self.keys_checked,
            self.violations.len(),
            self.inconclusive.len(),
            self.lost_appends.len(),
            self.stale_searches.len(),
            self.searches_checked,
            self.divergence
                .as_deref()
                .map_or("yes".to_string(), |d| format!("NO ({d})")),
            self.history.display(),
        );
        for (key, smallest) in self.violations.iter().take(3) {
            text.push_str(&format!(
                "\n  key {key} is not linearizable; smallest failing sub-history ({} operations):",
                smallest.len()
            ));
            for op in smallest {
                text.push_str(&format!("\n    {}", describe(op)));
            }
        }
        for op in self.lost_appends.iter().take(5) {
            text.push_str(&format!("\n  lost: {}", describe(op)));
        }
        for (search, write) in self.stale_searches.iter().take(3) {
            text.push_str(&format!(
                "\n  stale search: {}\n    missed: {}",
                describe(search),
                describe(write)
            ));
        }
        text
    }
}

fn describe(op: &Operation) -> String {
    let completed = match op.outcome {
        Outcome::Unknown { .. } => "?".to_string(),
        _ => op.completed_us.to_string(),
    };
    format!(
        "[{}..{} µs] client {} via {} node {:?}: {:?} -> {:?}",
        op.invoked_us, completed, op.client, op.via, op.node, op.call, op.outcome
    )
}

/// Where history files are kept: `NEEDLE_VERIFY_DIR`, or the system temp dir.
fn history_path(name: &str, seed: u64) -> PathBuf {
    let dir = std::env::var_os("NEEDLE_VERIFY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("needle-verify"));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{name}-{seed}.jsonl"))
}

/// The seed: `NEEDLE_VERIFY_SEED` to replay one, otherwise fresh.
pub fn seed() -> u64 {
    std::env::var("NEEDLE_VERIFY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            now ^ u64::from(std::process::id())
        })
}

/// A Raft run's settings.
pub struct RaftRun {
    pub name: String,
    pub members: usize,
    pub duration: Duration,
    pub seed: u64,
    pub faults: Vec<RaftFault>,
    pub http_clients: usize,
    pub native_clients: usize,
    /// A planted bug to arm in every member (`FAILPOINTS`).
    pub failpoint: Option<&'static str>,
}

/// Creates both collections. Retried until they exist: a planted bug may answer
/// before the creation is applied.
fn create_collections(c: &Client) {
    for name in [REGISTERS, APPENDS] {
        let body = json!({"name": name, "dimensions": DIMS, "distance": "euclidean"});
        let mut last = None;
        let created = crate::support::wait_for(Duration::from_secs(30), || {
            let answer = c.try_post("/collections", &body);
            let done = matches!(answer, Ok((201 | 409, _)))
                && matches!(c.try_get(&format!("/collections/{name}")), Ok((200, _)));
            last = Some(answer.map(|a| a.1.to_string()));
            done
        });
        assert!(created, "creating {name}: {last:?}");
    }
}

/// Every register key the clients can touch.
fn register_keys(clients: usize, shared: usize) -> Vec<String> {
    (0..shared)
        .map(|k| format!("k{k}"))
        .chain((0..clients).map(|c| format!("own-{c}")))
        .collect()
}

const SHARED_KEYS: usize = 6;

impl RaftRun {
    pub fn run(&self) -> Report {
        println!(
            "{}: seed {} (NEEDLE_VERIFY_SEED={} replays the schedule), {} members, {:?}",
            self.name, self.seed, self.seed, self.members, self.duration
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let env: Vec<(String, String)> = self
            .failpoint
            .map(|f| vec![("FAILPOINTS".to_string(), format!("{f}=return"))])
            .unwrap_or_default();
        let mut cluster = RaftCluster::start_with_env(
            dir.path(),
            self.members,
            &[
                "--fault-injection",
                "--admin-key",
                ADMIN_KEY,
                "--write-timeout-ms",
                "2000",
            ],
            &env,
        );
        create_collections(&cluster.client(cluster.leader()));
        let recorder = Recorder::new();
        let targets = Targets::default();
        *targets.urls.lock() = cluster.urls();
        let certs = dir.path().join("certs");
        // The native clients use the last spare identity from the cluster CA (the
        // others are for members the nemesis adds).
        let identity = self.members + crate::raft_cluster::SPARE_IDENTITIES;
        let tls = needle::replication::TlsConfig {
            cert_path: certs.join(format!("node-{identity}.pem")),
            key_path: certs.join(format!("node-{identity}-key.pem")),
            ca_path: Some(certs.join("ca.pem")),
        };
        let mix = Mix {
            http_clients: self.http_clients,
            native: (self.native_clients > 0)
                .then(|| (self.native_clients, cluster.addrs.clone(), tls)),
            shared_keys: SHARED_KEYS,
            linearizable_reads: true,
            think: Duration::from_millis(5),
        };
        let clients = Clients::start(&mix, &targets, &recorder, self.seed);
        let mut rng = Rng::new(self.seed);
        let started = Instant::now();
        while started.elapsed() < self.duration {
            std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
            if !self.faults.is_empty() {
                nemesis::raft_fault(&mut cluster, &self.faults, &mut rng, &recorder, &targets);
            }
        }
        clients.stop();
        cluster.heal();
        recorder.note("final heal".into());
        restore_membership(&mut cluster);
        let total_clients = self.http_clients + self.native_clients;
        let Some(leader) = cluster.leader_within(Duration::from_secs(60)) else {
            // Still a report (and a history file): the cluster never settled.
            let statuses: Vec<_> = cluster
                .live()
                .into_iter()
                .map(|i| cluster.status(i))
                .collect();
            let divergence = Some(format!("no leader all members agree on: {statuses:?}"));
            let any = cluster.live()[0];
            let url = cluster.urls()[any].clone();
            return report(
                &self.name,
                self.seed,
                &recorder,
                &url,
                Some(any),
                total_clients,
                divergence,
            );
        };
        let divergence = checks::converged(&live_urls(&cluster), Duration::from_secs(90)).err();
        let leader_url = cluster.urls()[leader].clone();
        report(
            &self.name,
            self.seed,
            &recorder,
            &leader_url,
            Some(leader),
            total_clients,
            divergence,
        )
    }
}

/// Final linearizable reads of every key through `url`, then every checker.
fn report(
    name: &str,
    seed: u64,
    recorder: &Recorder,
    url: &str,
    node: Option<usize>,
    clients: usize,
    divergence: Option<String>,
) -> Report {
    let http = Client::with_timeout(url, Duration::from_secs(10));
    for key in register_keys(clients, SHARED_KEYS) {
        let call = Call::Get {
            key,
            consistency: "linearizable".into(),
        };
        recorder.record(clients, "http", node, call, |call| http_call(&http, call));
    }
    let ops = recorder.operations();
    let present = checks::present_appends(url, &checks::appended_ids(&ops));
    let verdicts = linearizability::check(&ops);
    let keys_checked = verdicts.len();
    let mut violations = BTreeMap::new();
    let mut inconclusive = Vec::new();
    for (key, verdict) in verdicts {
        match verdict {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Inconclusive => inconclusive.push(key),
            KeyVerdict::Violation { smallest } => {
                violations.insert(key, smallest);
            }
        }
    }
    let history = history_path(name, seed);
    if let Err(e) = recorder.write_to(&history) {
        println!("could not write the history to {}: {e}", history.display());
    }
    Report {
        name: name.to_string(),
        seed,
        operations: ops.len(),
        acknowledged_writes: ops
            .iter()
            .filter(|o| o.call.is_write() && o.outcome.is_ok())
            .count(),
        faults: recorder.faults(),
        keys_checked,
        violations,
        inconclusive,
        lost_appends: checks::lost_appends(&ops, &present),
        stale_searches: checks::stale_searches(&ops),
        searches_checked: checks::checkable_searches(&ops),
        divergence,
        history,
    }
}

fn live_urls(cluster: &RaftCluster) -> Vec<String> {
    cluster
        .urls()
        .into_iter()
        .filter(|u| !u.is_empty())
        .collect()
}

/// A member the nemesis started but could not add (it was cut off, say) is added
/// now, or stopped: every live process must be a member for the convergence check.
fn restore_membership(cluster: &mut RaftCluster) {
    let Some(leader) = cluster.leader_within(Duration::from_secs(30)) else {
        return;
    };
    let Some(status) = cluster.status(leader) else {
        return;
    };
    let members: Vec<u64> = status["peers"]
        .as_array()
        .map(|p| p.iter().filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default();
    for i in cluster.live() {
        if !members.contains(&(i as u64 + 1)) {
            let url = cluster.urls()[leader].clone();
            let added = Client::with_timeout(&url, Duration::from_secs(60)).try_post_with_bearer(
                "/cluster/members",
                ADMIN_KEY,
                &json!({"cluster_addr": cluster.addrs[i]}),
            );
            if !matches!(added, Ok((200, _))) {
                cluster.kill(i);
            }
        }
    }
}

/// A primary–replica run: the trio under pauses, isolations of the primary and
/// manual failovers (promote a replica, re-point the others), writes with `majority`
/// or `all` to whichever node is primary.
pub struct PrimaryReplicaRun {
    pub name: String,
    pub duration: Duration,
    pub seed: u64,
    pub http_clients: usize,
}

impl PrimaryReplicaRun {
    pub fn run(&self) -> Report {
        println!(
            "{}: seed {} (NEEDLE_VERIFY_SEED={} replays the schedule), primary + 2 replicas, {:?}",
            self.name, self.seed, self.seed, self.duration
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let trio = crate::cluster::trio(dir.path(), |_| {
            [
                "--fault-injection",
                "--admin-key",
                ADMIN_KEY,
                "--write-timeout-ms",
                "2000",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        });
        create_collections(&trio.p.client());
        let recorder = Recorder::new();
        let targets = Targets::default();
        *targets.urls.lock() = vec![trio.p.url.clone(), trio.r1.url.clone(), trio.r2.url.clone()];
        *targets.writer.lock() = Some(0);
        let mix = Mix {
            http_clients: self.http_clients,
            native: None,
            shared_keys: SHARED_KEYS,
            linearizable_reads: false,
            think: Duration::from_millis(5),
        };
        let clients = Clients::start(&mix, &targets, &recorder, self.seed);
        let mut rng = Rng::new(self.seed);
        let mut failover = super::failover::Failover::new(&trio, &recorder, &targets);
        let started = Instant::now();
        while started.elapsed() < self.duration {
            std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
            failover.fault(&trio, &mut rng);
        }
        clients.stop();
        failover.heal(&trio);
        let urls = targets.urls.lock().clone();
        let divergence = checks::converged(&urls, Duration::from_secs(90)).err();
        let primary = failover.primary();
        report(
            &self.name,
            self.seed,
            &recorder,
            &urls[primary],
            Some(primary),
            self.http_clients,
            divergence,
        )
    }
}
