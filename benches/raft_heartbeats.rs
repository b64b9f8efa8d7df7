//! Heartbeats of many Raft groups between the same members: coalesced (shard
//! groups' heartbeats that come while one to the same member is in flight go
//! together) against one request per heartbeat, measured in the same run on
//! in-process members over loopback QUIC.
//!
//! `cargo bench --bench raft_heartbeats --features failpoints`;
//! `NEEDLE_BENCH_GROUPS=N` (default 48) groups on 3 members, each group on all
//! three, first leaders spread; `NEEDLE_BENCH_SECS=S` (default 3) per variant.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use needle_consensus::openraft::async_runtime::WatchReceiver;
use needle_consensus::{ClusterNode, GroupId, NodeId};

#[path = "machine.rs"]
mod machine;
// The consensus tests' members, of which this bench uses only a part.
#[allow(dead_code)]
#[path = "../consensus/tests/support/members.rs"]
mod members;
#[allow(dead_code)]
#[path = "../consensus/tests/support/memory.rs"]
mod memory;

use members::{leader_of, Member};

struct Measured {
    heartbeats_per_s: f64,
    answered_per_s: f64,
    requests_per_s: f64,
    cpu_per_s: f64,
    /// Elections meanwhile: per group, how far its highest term moved.
    leader_changes: u64,
}

/// This process's user + system CPU seconds so far, from /proc (in USER_HZ
/// ticks, 100 a second on Linux whatever the kernel's own tick rate).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux only)");
    // Fields after the command name (which may hold spaces) start after ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// How the members send their groups' heartbeats.
#[derive(Clone, Copy)]
enum Heartbeats {
    /// One request per heartbeat, each group on its own timer.
    Alone,
    /// Coalesced while one to the same member is in flight; own timers.
    Coalesced,
    /// Coalesced, and every group beating on the member's one clock.
    Clocked,
}

async fn measure(groups: u64, mode: Heartbeats, secs: u64) -> Measured {
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut members: Vec<Member> = (1..=3).map(|id| Member::start(id, root.path())).collect();
    for member in &mut members {
        let batching = !matches!(mode, Heartbeats::Alone);
        member.network = member.network.clone().with_heartbeat_batching(batching);
        if matches!(mode, Heartbeats::Clocked) {
            member
                .service
                .start_heartbeat_clock(Duration::from_millis(50))
                .expect("the bench runs in a tokio runtime");
        }
    }
    for g in 1..=groups {
        let group = GroupId(g);
        for member in &mut members {
            member.run_group(group).await;
        }
        let voters: std::collections::BTreeMap<NodeId, ClusterNode> =
            members.iter().map(|m| (m.id, m.node())).collect();
        let first = (g % 3) as usize;
        members[first]
            .raft(group)
            .initialize(voters)
            .await
            .unwrap_or_else(|e| panic!("initialising {group}: {e}"));
    }
    for g in 1..=groups {
        leader_of(&members, GroupId(g)).await;
    }
    // Settle, then count over the window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Per group, the highest term any member saw: it moves once per election
    // (won or not), whichever member saw it.
    let terms = |members: &[Member]| -> u64 {
        (1..=groups)
            .map(|g| {
                members
                    .iter()
                    .map(|m| m.raft(GroupId(g)).metrics().borrow_watched().current_term)
                    .max()
                    .unwrap_or(0)
            })
            .sum()
    };
    let totals = |members: &[Member]| -> [u64; 3] {
        members.iter().fold([0; 3], |[h, a, r], m| {
            let stats = m.network.heartbeat_stats();
            [
                h + stats.heartbeats.load(Ordering::Relaxed),
                a + stats.answered.load(Ordering::Relaxed),
                r + stats.requests.load(Ordering::Relaxed),
            ]
        })
    };
    let (terms_before, [h0, a0, r0], cpu0, started) = (
        terms(&members),
        totals(&members),
        cpu_seconds(),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ([h1, a1, r1], cpu1, terms_after) = (totals(&members), cpu_seconds(), terms(&members));
    for member in &members {
        for (raft, _) in member.groups.values() {
            let _ = raft.shutdown().await;
        }
        member.transport.close();
    }
    Measured {
        heartbeats_per_s: (h1 - h0) as f64 / elapsed,
        answered_per_s: (a1 - a0) as f64 / elapsed,
        requests_per_s: (r1 - r0) as f64 / elapsed,
        cpu_per_s: (cpu1 - cpu0) / elapsed,
        leader_changes: terms_after - terms_before,
    }
}

fn main() {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (groups, secs) = (
        number("NEEDLE_BENCH_GROUPS", 48),
        number("NEEDLE_BENCH_SECS", 3),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The baseline first, so that no variant gets a warmer machine than it.
    let alone = runtime.block_on(measure(groups, Heartbeats::Alone, secs));
    let batched = runtime.block_on(measure(groups, Heartbeats::Coalesced, secs));
    let clocked = runtime.block_on(measure(groups, Heartbeats::Clocked, secs));
    println!("raft heartbeats: 3 in-process members over loopback QUIC, {groups} groups on all three, {secs} s per variant");
    println!("machine: {}", machine::describe());
    for (name, m) in [
        ("one request per heartbeat", &alone),
        ("coalesced while in flight", &batched),
        ("coalesced, one clock", &clocked),
    ] {
        println!(
            "  {name:<26} {:>7.0} heartbeats/s ({:>7.0} answered) in {:>7.0} requests/s ({:.1} per request), CPU {:.2} s/s, elections {}",
            m.heartbeats_per_s,
            m.answered_per_s,
            m.requests_per_s,
            m.heartbeats_per_s / m.requests_per_s.max(1.0),
            m.cpu_per_s,
            m.leader_changes
        );
    }
    for (name, m) in [("coalesced", &batched), ("one clock", &clocked)] {
        println!(
            "  {name} / one per heartbeat: requests {:.2}, CPU {:.2}",
            m.requests_per_s / alone.requests_per_s.max(1.0),
            m.cpu_per_s / alone.cpu_per_s.max(1e-9)
        );
    }
}
