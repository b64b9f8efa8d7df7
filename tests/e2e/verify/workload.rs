//! The clients: threads doing upserts, deletes, gets, searches and appends against
//! the members, over HTTP and the native RaftClient, each operation recorded.
//!
//! Register keys are of two kinds: shared keys every client writes (contention, for
//! the linearizability checker) and one private key per client, written only by
//! that client, so its later `linearizable` searches for the value it wrote must find
//! it (the search checker). Values are unique in the run; the vector written with
//! value `v` is [`vector_of`]`(v)`, so a search can name the write it looks for.

use super::history::{Call, Outcome, Recorder};
use crate::support::Client;
use needle::replication::raft::{RaftClient, ReadConsistency, ReadPreference};
use needle::replication::WriteConcern;
use needle::VectorRecord;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const REGISTERS: &str = "registers";
pub const APPENDS: &str = "appends";
pub const DIMS: usize = 8;

/// The vector written with value `v`: pseudo-random, so no two values are close.
pub fn vector_of(v: u64) -> Vec<f32> {
    needle_kernels::reference::pseudo_random_floats(v, DIMS)
}

/// Where clients send requests; the nemesis updates it as members restart or roles
/// change.
#[derive(Clone, Default)]
pub struct Targets {
    /// HTTP base URL by member index; empty while the member is down.
    pub urls: Arc<Mutex<Vec<String>>>,
    /// The member writes must go to (primary–replica), or `None` (Raft: any).
    pub writer: Arc<Mutex<Option<usize>>>,
}

/// What the clients do.
#[derive(Clone)]
pub struct Mix {
    pub http_clients: usize,
    /// RaftClient threads (Raft clusters only), given the members' cluster addresses
    /// and the TLS identity to use.
    pub native: Option<(usize, Vec<String>, needle::replication::TlsConfig)>,
    pub shared_keys: usize,
    /// Reads: whether `linearizable` is asked for (false: primary–replica, whose reads
    /// are only checked after the run).
    pub linearizable_reads: bool,
    /// Pause between one client's operations.
    pub think: Duration,
}

/// Running clients; [`Clients::stop`] joins them.
pub struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    pub fn start(mix: &Mix, targets: &Targets, recorder: &Recorder, seed: u64) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let values = Arc::new(AtomicU64::new(1));
        let mut threads = Vec::new();
        let total = mix.http_clients + mix.native.as_ref().map_or(0, |n| n.0);
        for client in 0..total {
            let worker = Worker {
                client,
                rng: Rng::new(seed ^ (client as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                mix: mix.clone(),
                targets: targets.clone(),
                recorder: recorder.clone(),
                values: values.clone(),
                stop: stop.clone(),
                own: format!("own-{client}"),
                last_own: None,
            };
            threads.push(if client < mix.http_clients {
                std::thread::spawn(move || worker.run_http())
            } else {
                std::thread::spawn(move || worker.run_native())
            });
        }
        Clients { stop, threads }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// xorshift64: small, seedable, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Worker {
    client: usize,
    rng: Rng,
    mix: Mix,
    targets: Targets,
    recorder: Recorder,
    values: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// This client's private key, and the last value it had acknowledged there.
    own: String,
    last_own: Option<u64>,
}

/// The kinds of operation, drawn with fixed weights.
enum Kind {
    Upsert,
    Delete,
    Get,
    Search,
    Append,
}

impl Worker {
    fn kind(&mut self) -> Kind {
        match self.rng.below(100) {
            0..=29 => Kind::Upsert,
            30..=39 => Kind::Delete,
            40..=69 => Kind::Get,
            70..=84 => Kind::Search,
            _ => Kind::Append,
        }
    }

    /// A shared key, or (one time in four) this client's own.
    fn key(&mut self) -> String {
        if self.rng.chance(25) {
            self.own.clone()
        } else {
            format!("k{}", self.rng.below(self.mix.shared_keys as u64))
        }
    }

    fn consistency(&mut self) -> &'static str {
        if self.mix.linearizable_reads && self.rng.chance(85) {
            "linearizable"
        } else {
            "eventual"
        }
    }

    fn concern(&mut self) -> &'static str {
        if self.rng.chance(20) {
            "all"
        } else {
            "majority"
        }
    }

    fn pick_node(&mut self, write: bool) -> Option<(usize, String)> {
        if write {
            if let Some(w) = *self.targets.writer.lock() {
                let url = self.targets.urls.lock()[w].clone();
                return (!url.is_empty()).then_some((w, url));
            }
        }
        let urls = self.targets.urls.lock().clone();
        let live: Vec<usize> = (0..urls.len()).filter(|i| !urls[*i].is_empty()).collect();
        if live.is_empty() {
            return None;
        }
        let i = live[self.rng.below(live.len() as u64) as usize];
        Some((i, urls[i].clone()))
    }

    /// A search for a value this client knows was written: its own key's last value
    /// most of the time (checkable), otherwise a recent value of any key.
    fn search_target(&mut self) -> (String, u64) {
        match self.last_own {
            Some(v) if self.rng.chance(80) => (self.own.clone(), v),
            _ => {
                let latest = self.values.load(Ordering::Relaxed).max(2);
                let v = latest - 1 - self.rng.below(latest.min(20) - 1);
                (self.key(), v)
            }
        }
    }

    fn run_http(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let kind = self.kind();
            let write = matches!(kind, Kind::Upsert | Kind::Delete | Kind::Append);
            let Some((node, url)) = self.pick_node(write) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let http = Client::with_timeout(&url, Duration::from_secs(4));
            let call = self.call(kind);
            let outcome =
                self.recorder
                    .record(self.client, "http", Some(node), call.clone(), |call| {
                        http_call(&http, call)
                    });
            self.remember(&call, &outcome);
            std::thread::sleep(self.mix.think);
        }
    }

    fn run_native(mut self) {
        let Some((_, addrs, tls)) = self.mix.native.clone() else {
            return;
        };
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => panic!("runtime: {e}"),
        };
        let client = match runtime.block_on(async { RaftClient::with_tls(addrs, tls) }) {
            Ok(c) => c,
            Err(e) => panic!("RaftClient: {e}"),
        };
        while !self.stop.load(Ordering::Relaxed) {
            // The native client has no get: its reads are searches.
            let kind = match self.kind() {
                Kind::Get => Kind::Search,
                k => k,
            };
            let call = self.call(kind);
            let outcome = self
                .recorder
                .record(self.client, "native", None, call.clone(), |call| {
                    runtime.block_on(native_call(&client, call))
                });
            self.remember(&call, &outcome);
            std::thread::sleep(self.mix.think);
        }
    }

    fn call(&mut self, kind: Kind) -> Call {
        match kind {
            Kind::Upsert => {
                let key = self.key();
                Call::Upsert {
                    key,
                    value: self.values.fetch_add(1, Ordering::Relaxed),
                }
            }
            Kind::Delete => Call::Delete { key: self.key() },
            Kind::Get => Call::Get {
                key: self.key(),
                consistency: self.consistency().into(),
            },
            Kind::Search => {
                let (key, value) = self.search_target();
                Call::Search {
                    key,
                    value,
                    consistency: self.consistency().into(),
                }
            }
            Kind::Append => Call::Append {
                id: format!("a{}", self.values.fetch_add(1, Ordering::Relaxed)),
                concern: self.concern().into(),
            },
        }
    }

    /// Tracks the value of this client's own key, for its searches: known after an
    /// acknowledged upsert, unknown after anything else that may have changed it.
    fn remember(&mut self, call: &Call, outcome: &Outcome) {
        match call {
            Call::Upsert { key, value } if *key == self.own => {
                self.last_own = (*outcome == Outcome::Written).then_some(*value);
            }
            Call::Delete { key }
                if *key == self.own && !matches!(outcome, Outcome::Failed { .. }) =>
            {
                self.last_own = None;
            }
            _ => {}
        }
    }
}

/// One HTTP request for `call`, classified.
pub fn http_call(http: &Client, call: &Call) -> Outcome {
    let answer = match call {
        Call::Upsert { key, value } => http.try_post(
            &format!("/collections/{REGISTERS}/vectors/batch"),
            &json!({"vectors": [{"id": key, "vector": vector_of(*value), "metadata": {"v": value}}]}),
        ),
        Call::Delete { key } => http.try_delete(&format!("/collections/{REGISTERS}/vectors/{key}")),
        Call::Get { key, consistency } => http.try_get(&format!(
            "/collections/{REGISTERS}/vectors/{key}?consistency={consistency}"
        )),
        Call::Search {
            value, consistency, ..
        } => http.try_post(
            &format!("/collections/{REGISTERS}/search"),
            &json!({"vector": vector_of(*value), "k": 3, "consistency": consistency, "include_metadata": false}),
        ),
        Call::Append { id, concern } => http.try_post(
            &format!("/collections/{APPENDS}/vectors"),
            &json!({"id": id, "vector": vector_of(0), "write_concern": concern}),
        ),
    };
    let (status, body) = match answer {
        Ok(a) => a,
        Err(e) => {
            return Outcome::Unknown {
                reason: e.to_string(),
            }
        }
    };
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    match (call, status) {
        (Call::Upsert { .. } | Call::Append { .. }, 200 | 201) => Outcome::Written,
        (Call::Delete { .. }, 200) => match body["deleted"].as_bool() {
            Some(existed) => Outcome::Deleted { existed },
            None => Outcome::Unknown {
                reason: format!("delete answered {body}"),
            },
        },
        (Call::Get { .. }, 200) => Outcome::Read {
            found: body["metadata"]["v"].as_u64(),
        },
        (Call::Get { .. }, 404) if code == "VECTOR_NOT_FOUND" => Outcome::Read { found: None },
        (Call::Search { .. }, 200) => Outcome::Hits {
            ids: hit_ids(&body["results"]),
        },
        // A 4xx is a refusal: nothing was done. A 5xx (NO_LEADER, WRITE_CONCERN_TIMEOUT)
        // leaves the write's fate open.
        (_, 400..=499) => Outcome::Failed { code },
        _ => Outcome::Unknown {
            reason: format!("{status} {code}"),
        },
    }
}

fn hit_ids(results: &Value) -> Vec<String> {
    results
        .as_array()
        .map(|hits| {
            hits.iter()
                .filter_map(|h| h["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One RaftClient call for `call`. Its errors are all taken as unknown: the client
/// retries internally, so a final error does not prove a write was not applied.
async fn native_call(client: &RaftClient, call: &Call) -> Outcome {
    let unknown = |e: needle::replication::ReplicationError| Outcome::Unknown {
        reason: format!("{} {e}", e.code()),
    };
    match call {
        Call::Upsert { key, value } => {
            let record = VectorRecord {
                id: key.clone(),
                vector: vector_of(*value),
                metadata: json!({"v": value}).as_object().cloned(),
            };
            match client
                .upsert(REGISTERS, vec![record], WriteConcern::Majority)
                .await
            {
                Ok(_) => Outcome::Written,
                Err(e) => unknown(e),
            }
        }
        Call::Delete { key } => {
            match client
                .delete(REGISTERS, vec![key.clone()], WriteConcern::Majority)
                .await
            {
                Ok(applied) => match applied.deleted.first() {
                    Some(existed) => Outcome::Deleted { existed: *existed },
                    None => Outcome::Unknown {
                        reason: "the delete's answer named no id".into(),
                    },
                },
                Err(e) => unknown(e),
            }
        }
        Call::Search {
            value, consistency, ..
        } => {
            let consistency = if consistency == "linearizable" {
                ReadConsistency::Linearizable
            } else {
                ReadConsistency::Eventual
            };
            match client
                .search_with(
                    REGISTERS,
                    &vector_of(*value),
                    3,
                    None,
                    consistency,
                    ReadPreference::Nearest,
                )
                .await
            {
                Ok(hits) => Outcome::Hits {
                    ids: hits.into_iter().map(|h| h.id).collect(),
                },
                Err(e) => unknown(e),
            }
        }
        Call::Append { id, concern } => {
            let concern = if concern == "all" {
                WriteConcern::All
            } else {
                WriteConcern::Majority
            };
            match client
                .insert_with_concern(APPENDS, id, &vector_of(0), None, concern)
                .await
            {
                Ok(_) => Outcome::Written,
                Err(e) => unknown(e),
            }
        }
        Call::Get { .. } => Outcome::Failed {
            code: "UNSUPPORTED".into(),
        },
    }
}
