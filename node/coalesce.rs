//! Coalescing of concurrent single-query searches into engine batches.
//!
//! One query at a time reads every vector of the shard for one dot product each: the
//! scan is bound by memory bandwidth. A batch reads the shard once for all its queries
//! (four queries per row read, or a GEMM), so a few concurrent queries cost little
//! more than one. The
//! coalescer is a queue in front of the engine with no timer: while the engine is busy,
//! arriving queries wait; when it frees, everything waiting that can share an engine
//! call (same collection, filter and options) goes as one batch. An idle node therefore
//! adds no latency, and a loaded one batches exactly as much as the load allows.
//!
//! The queue is bounded: when it is full a search is refused at once (`OVERLOADED`)
//! rather than waiting behind thousands of others. A query is validated before it is
//! queued, so one bad query never shares (and spoils) a batch, and a query whose
//! client went away before its turn is dropped unrun.

use crate::cancel::CancelToken;
use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::health::NodeHealth;
use crate::search::{AnswerBudget, SearchHit, MAX_RESULTS_PER_SEARCH};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The most queries one engine call takes from the queue.
const MAX_COALESCED: usize = 1024;
/// The most searches waiting for the engine; past it, searches are refused.
pub const DEFAULT_QUEUE: usize = 4096;

/// One query with its options.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Vec<f32>,
    pub k: usize,
    pub filter: Option<Arc<Filter>>,
    pub include_vectors: bool,
    /// The answer's byte budget (`None`: unbounded).
    pub budget: Option<AnswerBudget>,
}

struct Job {
    collection: Collection,
    request: SearchRequest,
    reply: oneshot::Sender<Result<Vec<SearchHit>>>,
}

/// Called after every engine call with the collection name and the batch size.
pub type BatchObserver = Box<dyn Fn(&str, usize) + Send>;

/// Owns the dispatcher thread; dropping it lets queued searches finish, then stops.
pub struct SearchCoalescer {
    tx: Option<SyncSender<Job>>,
    join: Option<JoinHandle<()>>,
}

impl SearchCoalescer {
    pub fn start(
        observe: BatchObserver,
        health: Arc<NodeHealth>,
        queue: usize,
    ) -> std::io::Result<SearchCoalescer> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let join = std::thread::Builder::new()
            .name("needle-search".into())
            .spawn(move || run(&rx, &observe, &health))?;
        Ok(SearchCoalescer {
            tx: Some(tx),
            join: Some(join),
        })
    }

    /// Searches `collection`, sharing an engine call with whatever else is waiting.
    pub async fn search(
        &self,
        collection: Collection,
        request: SearchRequest,
    ) -> Result<Vec<SearchHit>> {
        // Checked here, not in the batch: `k = 0` would otherwise ride along with
        // others' k and answer an empty 200, and a wrong-sized query would fail the
        // whole batch.
        collection.validate_search(std::slice::from_ref(&request.query), request.k)?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            collection,
            request,
            reply,
        };
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::Overloaded("the search queue is full".into()))
            }
            Err(TrySendError::Disconnected(_)) => return Err(Error::Closed),
        }
        // A dropped reply means the engine call panicked (and was recovered from).
        rx.await.map_err(|_| Error::Interrupted)?
    }
}

impl Drop for SearchCoalescer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

fn run(rx: &Receiver<Job>, observe: &BatchObserver, health: &NodeHealth) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_COALESCED {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // A client that gave up while queued gets no engine time.
        jobs.retain(|j| !j.reply.is_closed());
        for group in partition(jobs, |a, b| {
            a.collection.name() == b.collection.name()
                && a.request.include_vectors == b.request.include_vectors
                && a.request.filter == b.request.filter
        }) {
            // Keep each engine call within the per-search result limit.
            let k = group.iter().map(|j| j.request.k).max().unwrap_or(1);
            let per_call = (MAX_RESULTS_PER_SEARCH / k.max(1)).max(1);
            let mut group = group;
            while group.len() > per_call {
                let rest = group.split_off(per_call);
                execute_isolated(group, observe, health);
                group = rest;
            }
            execute_isolated(group, observe, health);
        }
    }
}

/// [`execute`], with a panic in the engine answered as an error to the group's
/// callers instead of ending the thread (and with it every later search).
fn execute_isolated(group: Vec<Job>, observe: &BatchObserver, health: &NodeHealth) {
    // Replies move into the closure; a panic drops them, which their callers see as
    // a closed channel and answer with an error.
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| execute(group, observe))) {
        health.record_panic("search", payload.as_ref());
    }
}

/// Splits `items` into groups of mutually compatible items, keeping arrival order
/// within each group.
fn partition<T>(items: Vec<T>, same: impl Fn(&T, &T) -> bool) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        match groups.iter_mut().find(|g| same(&g[0], &item)) {
            Some(group) => group.push(item),
            None => groups.push(vec![item]),
        }
    }
    groups
}

/// One engine call for the group at the largest `k` asked; each caller gets its own
/// prefix, and only then its vectors (if asked) and its budget's check: one caller's
/// large `k` never makes the node read vectors for another's hits. If the batch
/// fails (the collection changed under a queued query, say), each query runs alone so
/// only the faulty one sees an error.
fn execute(group: Vec<Job>, observe: &BatchObserver) {
    let Some(first) = group.first() else { return };
    let collection = first.collection.clone();
    let filter = first.request.filter.clone();
    let include_vectors = first.request.include_vectors;
    let k = group.iter().map(|j| j.request.k).max().unwrap_or(1);
    crate::injected_faults::search_engine_call();
    // The queries move into the batch; each caller keeps its k, budget and reply.
    let (queries, waiting): (Vec<Vec<f32>>, Vec<_>) = group
        .into_iter()
        .map(|j| (j.request.query, (j.request.k, j.request.budget, j.reply)))
        .unzip();
    observe(collection.name(), queries.len());
    let never = CancelToken::never();
    let finish = |mut hits: Vec<SearchHit>, k: usize, budget: Option<AnswerBudget>| {
        hits.truncate(k);
        collection
            .finish_hits(&mut hits, include_vectors, budget.as_ref())
            .map(|()| hits)
    };
    match collection.search_batch_within(&queries, k, filter.as_deref(), false, &never, None) {
        Ok(results) => {
            for ((k, budget, reply), hits) in waiting.into_iter().zip(results) {
                let _ = reply.send(finish(hits, k, budget));
            }
        }
        Err(e) if waiting.len() == 1 => {
            if let Some((_, _, reply)) = waiting.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(_) => {
            for (query, (k, budget, reply)) in queries.iter().zip(waiting) {
                observe(collection.name(), 1);
                let result = collection
                    .search_batch_within(
                        std::slice::from_ref(query),
                        k,
                        filter.as_deref(),
                        false,
                        &never,
                        None,
                    )
                    .and_then(|mut per_query| {
                        finish(per_query.pop().unwrap_or_default(), k, budget)
                    });
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CollectionConfig, Distance, VectorRecord};

    fn request(k: usize) -> SearchRequest {
        SearchRequest {
            query: vec![1.0, 0.0],
            k,
            filter: None,
            include_vectors: false,
            budget: None,
        }
    }

    /// While the engine is busy (the test holds the collection), queued searches
    /// are validated one by one (`k = 0` never rides along with others' k) and the
    /// queue refuses past its bound.
    #[test]
    fn queued_searches_are_validated_alone_and_the_queue_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Database::open(dir.path()).unwrap();
        let c = db
            .create_collection(CollectionConfig::new("c", 2, Distance::Dot))
            .unwrap();
        c.upsert(
            (0..10)
                .map(|i| VectorRecord::new(format!("{i}"), vec![i as f32, 1.0]))
                .collect(),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let coalescer =
            Arc::new(SearchCoalescer::start(Box::new(|_, _| {}), db.health(), 2).unwrap());
        let state = db.state("c").unwrap();
        let held = state.index.write();
        // One in the engine (blocked), two queued, the rest refused: wait until a
        // refusal shows, however slowly the tasks are scheduled.
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (coalescer, c) = (Arc::clone(&coalescer), c.clone());
                runtime.spawn(async move { coalescer.search(c, request(5)).await })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !tasks.iter().any(|t| t.is_finished()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let zero = runtime.block_on(coalescer.search(c.clone(), request(0)));
        assert_eq!(zero.unwrap_err().code(), "INVALID_K");
        drop(held);
        let (mut answered, mut refused) = (0, 0);
        for task in tasks {
            match runtime.block_on(task).unwrap() {
                Ok(hits) => {
                    assert_eq!(hits.len(), 5);
                    answered += 1;
                }
                Err(e) => {
                    assert_eq!(e.code(), "OVERLOADED");
                    refused += 1;
                }
            }
        }
        assert!(refused >= 1, "the queue never refused");
        assert!(answered >= 1);
    }

    /// Callers sharing an engine call get vectors for their own hits only, each
    /// within its own budget: a large k asked by one never makes the node read (or
    /// answer) vectors for another.
    #[test]
    fn shared_engine_calls_read_vectors_per_caller_within_each_budget() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Database::open(dir.path()).unwrap();
        let c = db
            .create_collection(CollectionConfig::new("c", 64, Distance::Dot))
            .unwrap();
        c.upsert(
            (0..500)
                .map(|i| VectorRecord::new(format!("{i}"), vec![i as f32; 64]))
                .collect(),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let coalescer =
            Arc::new(SearchCoalescer::start(Box::new(|_, _| {}), db.health(), 16).unwrap());
        let ask = |k: usize| SearchRequest {
            query: vec![1.0; 64],
            k,
            filter: None,
            include_vectors: true,
            budget: Some(AnswerBudget {
                max_bytes: 20_000,
                with_metadata: true,
            }),
        };
        let state = db.state("c").unwrap();
        let held = state.index.write();
        let big = {
            let (coalescer, c) = (Arc::clone(&coalescer), c.clone());
            runtime.spawn(async move { coalescer.search(c, ask(500)).await })
        };
        let small = {
            let (coalescer, c) = (Arc::clone(&coalescer), c.clone());
            runtime.spawn(async move { coalescer.search(c, ask(2)).await })
        };
        // Both queued behind the held index, so they share one engine call.
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(held);
        let big = runtime.block_on(big).unwrap();
        assert_eq!(big.unwrap_err().code(), "RESPONSE_TOO_LARGE");
        let small = runtime.block_on(small).unwrap().unwrap();
        assert_eq!(small.len(), 2);
        assert!(small
            .iter()
            .all(|h| h.vector.as_ref().is_some_and(|v| v.len() == 64)));
    }

    #[test]
    fn partition_groups_compatible_items_in_arrival_order() {
        let items = vec![("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6)];
        let groups = partition(items, |x, y| x.0 == y.0);
        assert_eq!(
            groups,
            vec![
                vec![("a", 1), ("a", 3), ("a", 6)],
                vec![("b", 2), ("b", 5)],
                vec![("c", 4)]
            ]
        );
        assert!(partition(Vec::<u8>::new(), |_, _| true).is_empty());
    }
}
