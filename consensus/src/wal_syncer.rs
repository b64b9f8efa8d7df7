//! Group commit for the Raft log: one thread fsyncs the log's WAL for every append
//! waiting on it. Appends that arrive while an fsync runs share the next one, so
//! concurrent client writes (and a follower's stream of AppendEntries) cost one
//! fsync per group instead of one each, and their acknowledgements go out in the
//! order they were appended, as openraft's flush notifications expect.

use std::io;
use std::sync::mpsc;

/// What to do once an append is on disk (or the fsync failed).
pub(crate) type AfterSync = Box<dyn FnOnce(io::Result<()>) + Send>;

/// The handle appends hand their acknowledgements to. Dropping it stops the thread
/// and waits for it, so whatever the thread holds (the log's database) is released
/// when the handle is gone: a store reopened right after is not locked by its
/// predecessor.
pub(crate) struct WalSyncer {
    queue: Option<mpsc::Sender<AfterSync>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WalSyncer {
    /// Starts the thread; `fsync` makes everything written before it durable.
    pub(crate) fn start(
        fsync: impl Fn() -> io::Result<()> + Send + 'static,
    ) -> io::Result<WalSyncer> {
        let (queue, waiting) = mpsc::channel::<AfterSync>();
        let thread = std::thread::Builder::new()
            .name("needle-raft-sync".into())
            .spawn(move || run(&fsync, &waiting))?;
        Ok(WalSyncer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `after` once an fsync that started after this call has finished.
    /// Call it after the write it waits for.
    pub(crate) fn after_next_sync(&self, after: AfterSync) {
        let refused = match &self.queue {
            Some(queue) => queue.send(after).err().map(|mpsc::SendError(after)| after),
            None => Some(after),
        };
        if let Some(after) = refused {
            after(Err(io::Error::other(
                "the raft log's fsync thread has stopped",
            )));
        }
    }
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop once it has answered what it took.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Each round takes everything queued, fsyncs once, and answers them in order.
fn run(fsync: &dyn Fn() -> io::Result<()>, waiting: &mpsc::Receiver<AfterSync>) {
    while let Ok(first) = waiting.recv() {
        let mut group = vec![first];
        group.extend(waiting.try_iter());
        let synced = fsync();
        for after in group {
            let answer = match &synced {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            after(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WalSyncer;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Mutex};

    #[test]
    fn appends_queued_during_an_fsync_share_the_next_one_and_are_answered_in_order() {
        let fsyncs = Arc::new(AtomicUsize::new(0));
        // The first fsync blocks until the test lets it go, so the next ten appends
        // are queued behind it whatever the scheduling.
        let (started_tx, started) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let counted = fsyncs.clone();
        let syncer = WalSyncer::start(move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = started_tx.send(());
                let _ = released.lock().unwrap().recv();
            }
            Ok(())
        })
        .unwrap();
        let (answered_tx, answered) = mpsc::channel::<usize>();
        let answer = |i: usize| {
            let tx = answered_tx.clone();
            Box::new(move |r: std::io::Result<()>| {
                assert!(r.is_ok());
                let _ = tx.send(i);
            })
        };
        syncer.after_next_sync(answer(0));
        started.recv().unwrap();
        for i in 1..=10 {
            syncer.after_next_sync(answer(i));
        }
        release.send(()).unwrap();
        let order: Vec<usize> = (0..=10).map(|_| answered.recv().unwrap()).collect();
        assert_eq!(order, (0..=10).collect::<Vec<_>>());
        assert_eq!(fsyncs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_fsync_fails_every_append_that_waited_on_it() {
        let syncer = WalSyncer::start(|| Err(std::io::Error::other("disk gone"))).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            let tx = tx.clone();
            syncer.after_next_sync(Box::new(move |r| {
                let _ = tx.send(r.map_err(|e| e.to_string()));
            }));
        }
        for _ in 0..3 {
            assert_eq!(rx.recv().unwrap(), Err("disk gone".to_string()));
        }
    }
}
