//! `NEEDLE_BENCH_ONLY=batches`: batches of 1000 alone, raft against standalone in
//! the same run, with where each member's time went; `NEEDLE_BENCH_MEMBERS=N`
//! sets the members (1 shows Raft's own cost on the leader). Also the batch-size
//! means the whole bench prints, read from the members' `/metrics`.

use std::path::Path;

use super::raft_cluster::RaftCluster;
use super::support::Node;
use super::{create_docs, throughput};

pub fn run(dir: &Path) {
    // Batches of 1000 alone (`NEEDLE_BENCH_ONLY=batches`), for profiling.
    let standalone = Node::start(&dir.join("standalone"), &["--backend", "cpu"]);
    create_docs(&standalone.url);
    let solo = throughput(std::slice::from_ref(&standalone.url), 16, 2, 1000);
    drop(standalone);
    let members = std::env::var("NEEDLE_BENCH_MEMBERS")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(3);
    let raft = RaftCluster::start(&dir.join("raft"), members, &["--write-timeout-ms", "30000"]);
    let leader = raft.nodes[raft.leader()]
        .as_ref()
        .expect("leader")
        .url
        .clone();
    create_docs(&leader);
    let replicated = throughput(std::slice::from_ref(&leader), 16, 2, 1000);
    println!(
        "batch 1000, 16 clients: raft {replicated:.0}/s, standalone {solo:.0}/s, ratio {:.2}",
        replicated / solo
    );
    println!("{}", batch_sizes(&raft));
    // Where a batch's time went, as means over the run.
    let route = "needle_http_request_duration_seconds{method=\"POST\",route=\"/collections/{name}/vectors/batch\"}";
    let leader = raft.leader();
    for i in raft.live() {
        let text = raft.client(i).get_text("/metrics").1;
        let mean = |name: &str| metric_mean(&text, name) * 1000.0;
        let requests = if i == leader {
            format!(" (leader): batch request {:.1} ms,", mean(route))
        } else {
            ":".to_string()
        };
        println!(
            "member {i}{requests} database write {:.1} ms",
            mean("needle_write_commit_seconds"),
        );
    }
}

/// Mean batch sizes so far, from each member's `/metrics`: client writes per
/// proposal on the leader, entries per log append on the leader and followers.
pub fn batch_sizes(raft: &RaftCluster) -> String {
    let leader = raft.leader();
    let mean = |i: usize, name: &str| metric_mean(&raft.client(i).get_text("/metrics").1, name);
    let followers: Vec<String> = raft
        .live()
        .into_iter()
        .filter(|&i| i != leader)
        .map(|i| format!("{:.1}", mean(i, "needle_raft_append_batch_entries")))
        .collect();
    let on_followers = if followers.is_empty() {
        String::new()
    } else {
        format!(", {} on the followers", followers.join(" and "))
    };
    format!(
        "mean batches so far: {:.1} writes per proposal, {:.1} entries per log append on the leader{on_followers}",
        mean(leader, "needle_raft_write_batch_entries"),
        mean(leader, "needle_raft_append_batch_entries"),
    )
}

/// A Prometheus histogram's mean (`_sum / _count`) in `text`; `name` may carry
/// labels (`name{a="b"}`). 0 when absent.
fn metric_mean(text: &str, name: &str) -> f64 {
    let (base, labels) = name.split_at(name.find('{').unwrap_or(name.len()));
    let value = |suffix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{base}_{suffix}{labels} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    value("sum") / value("count").max(1.0)
}
