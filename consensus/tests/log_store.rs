//! The RocksDB log store as openraft uses it: what it returns after appends,
//! truncation, purges and a reopen (a restart of the node).

use needle_consensus::openraft::entry::RaftEntry;
use needle_consensus::openraft::impls::leader_id_adv::LeaderId;
use needle_consensus::openraft::storage::{IOFlushed, RaftLogStorage};
use needle_consensus::openraft::type_config::TypeConfigExt;
use needle_consensus::openraft::vote::RaftLeaderId;
use needle_consensus::openraft::{LogId, RaftLogReader};
use needle_consensus::types::{Entry, Vote};
use needle_consensus::{Command, LogStore, TypeConfig};

fn log_id(term: u64, index: u64) -> needle_consensus::types::LogId {
    LogId::new(LeaderId::new(term, 1).to_committed(), index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry::new_normal(
        log_id(term, index),
        Command {
            request_id: None,
            payload: index.to_be_bytes().to_vec(),
        },
    )
}

async fn append(store: &mut LogStore, entries: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.index()).collect()
}

#[tokio::test]
async fn entries_votes_and_purges_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    {
        let mut store = LogStore::open(&path).unwrap();
        assert!(store.is_fresh().unwrap());
        let state = store.get_log_state().await.unwrap();
        assert_eq!((state.last_log_id, state.last_purged_log_id), (None, None));
        append(&mut store, (1..=10).map(|i| entry(1, i)).collect()).await;
        store.save_vote(&Vote::new(2, 1)).await.unwrap();
        assert!(!store.is_fresh().unwrap());
        // A new leader's log replaces the tail after 7.
        store.truncate_after(Some(log_id(1, 7))).await.unwrap();
        append(&mut store, vec![entry(2, 8), entry(2, 9)]).await;
        store.purge(log_id(1, 3)).await.unwrap();
    }
    let mut store = LogStore::open(&path).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(2, 9)));
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    let entries = store.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(indexes(&entries), vec![4, 5, 6, 7, 8, 9]);
    assert_eq!(entries[4].log_id(), log_id(2, 8));
    let some = store.try_get_log_entries(5..=6).await.unwrap();
    assert_eq!(indexes(&some), vec![5, 6]);
    assert_eq!(some[0].payload, entry(1, 5).payload);
}

#[tokio::test]
async fn a_log_purged_to_its_end_still_reports_its_last_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(&dir.path().join("log")).unwrap();
    append(&mut store, (1..=4).map(|i| entry(1, i)).collect()).await;
    store.purge(log_id(1, 4)).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 4)));
    assert!(store.try_get_log_entries(0..10).await.unwrap().is_empty());
    assert!(!store.is_fresh().unwrap());
    store.save_committed(Some(log_id(1, 4))).await.unwrap();
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 4)));
}

#[tokio::test]
async fn groups_in_one_database_keep_their_logs_votes_and_purges_apart() {
    use needle_consensus::GroupId;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    // Neighbouring ids, and the largest one, are where a key range would spill.
    let (three, four, last) = (GroupId(3), GroupId(4), GroupId(u64::MAX));
    {
        let mut cluster = LogStore::open(&path).unwrap();
        let mut g3 = cluster.group(three).unwrap();
        let mut g4 = cluster.group(four).unwrap();
        let mut glast = cluster.group(last).unwrap();
        append(&mut cluster, (1..=5).map(|i| entry(1, i)).collect()).await;
        append(&mut g3, (1..=8).map(|i| entry(2, i)).collect()).await;
        append(&mut g4, (1..=2).map(|i| entry(3, i)).collect()).await;
        assert!(glast.is_fresh().unwrap());
        glast.save_vote(&Vote::new(9, 2)).await.unwrap();
        g3.save_vote(&Vote::new(2, 1)).await.unwrap();
        g3.truncate_after(Some(log_id(2, 6))).await.unwrap();
        g4.purge(log_id(3, 1)).await.unwrap();
        assert!(!glast.is_fresh().unwrap());
    }
    let mut cluster = LogStore::open(&path).unwrap();
    let (mut g3, mut g4, mut glast) = (
        cluster.group(three).unwrap(),
        cluster.group(four).unwrap(),
        cluster.group(last).unwrap(),
    );
    assert_eq!(cluster.stored_groups().unwrap(), vec![three, four, last]);

    let state = cluster.get_log_state().await.unwrap();
    assert_eq!(
        (state.last_log_id, state.last_purged_log_id),
        (Some(log_id(1, 5)), None)
    );
    assert_eq!(
        indexes(&cluster.try_get_log_entries(0..).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(cluster.read_vote().await.unwrap(), None);

    let state = g3.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(2, 6)));
    assert_eq!(
        indexes(&g3.try_get_log_entries(0..).await.unwrap()),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(g3.read_vote().await.unwrap(), Some(Vote::new(2, 1)));

    let state = g4.get_log_state().await.unwrap();
    assert_eq!(
        (state.last_log_id, state.last_purged_log_id),
        (Some(log_id(3, 2)), Some(log_id(3, 1)))
    );
    assert_eq!(
        indexes(&g4.try_get_log_entries(0..).await.unwrap()),
        vec![2]
    );
    assert_eq!(g4.read_vote().await.unwrap(), None);

    let state = glast.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, None);
    assert_eq!(glast.read_vote().await.unwrap(), Some(Vote::new(9, 2)));

    // A group whose replica moved away leaves nothing behind, and nothing of the
    // others goes with it; the cluster group's log is never discarded.
    cluster.discard_group(three).unwrap();
    assert!(g3.is_fresh().unwrap());
    assert!(g3.try_get_log_entries(0..).await.unwrap().is_empty());
    assert_eq!(
        indexes(&g4.try_get_log_entries(0..).await.unwrap()),
        vec![2]
    );
    assert_eq!(cluster.stored_groups().unwrap(), vec![four, last]);
    cluster.discard_group(last).unwrap();
    assert_eq!(cluster.stored_groups().unwrap(), vec![four]);
    assert!(cluster.discard_group(GroupId::CLUSTER).is_err());
    assert_eq!(cluster.try_get_log_entries(0..).await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_member_that_never_ran_another_group_keeps_the_log_database_of_before_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    {
        let mut cluster = LogStore::open(&path).unwrap();
        append(&mut cluster, (1..=3).map(|i| entry(1, i)).collect()).await;
        cluster.save_vote(&Vote::new(1, 1)).await.unwrap();
        assert!(cluster.stored_groups().unwrap().is_empty());
    }
    // The column families and keys a binary from before groups opens and reads:
    // `log` keyed by the bare index, `meta` by the bare name, and nothing else.
    let options = rocksdb::Options::default();
    let mut families = rocksdb::DB::list_cf(&options, &path).unwrap();
    families.sort();
    assert_eq!(families, vec!["default", "log", "meta"]);
    {
        let raw =
            rocksdb::DB::open_cf_for_read_only(&options, &path, ["log", "meta"], false).unwrap();
        let log = raw.cf_handle("log").unwrap();
        let keys: Vec<Vec<u8>> = raw
            .iterator_cf(log, rocksdb::IteratorMode::Start)
            .map(|item| item.unwrap().0.to_vec())
            .collect();
        let expected: Vec<Vec<u8>> = (1u64..=3).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys, expected);
        let meta = raw.cf_handle("meta").unwrap();
        assert!(raw.get_cf(meta, b"vote").unwrap().is_some());
    }
    // Running a group adds its families; the database still opens and the cluster
    // group's log is as it was.
    {
        let cluster = LogStore::open(&path).unwrap();
        let mut group = cluster.group(needle_consensus::GroupId(5)).unwrap();
        append(&mut group, vec![entry(1, 1)]).await;
    }
    let mut families = rocksdb::DB::list_cf(&options, &path).unwrap();
    families.sort();
    assert_eq!(
        families,
        vec!["default", "group_log", "group_meta", "log", "meta"]
    );
    let mut cluster = LogStore::open(&path).unwrap();
    assert_eq!(
        indexes(&cluster.try_get_log_entries(0..).await.unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(
        cluster.stored_groups().unwrap(),
        vec![needle_consensus::GroupId(5)]
    );
}
