//! [`ServedDatabase`]: the database a node serves right now.
//!
//! `POST /reload` and a replica's snapshot install replace a node's whole state while
//! it runs. Everything that serves it (the HTTP handlers, the replication loops)
//! holds this handle and takes the current database for each piece of work, so each
//! request sees one state from start to end and the old one closes when the last
//! request using it finishes.

use crate::Database;
use std::sync::Arc;

#[derive(Clone)]
pub struct ServedDatabase(Arc<parking_lot::RwLock<Database>>);

impl ServedDatabase {
    pub fn new(db: Database) -> ServedDatabase {
        ServedDatabase(Arc::new(parking_lot::RwLock::new(db)))
    }

    pub fn current(&self) -> Database {
        self.0.read().clone()
    }

    /// Serves `db` from now on; returns the one it replaces.
    pub fn replace(&self, db: Database) -> Database {
        std::mem::replace(&mut *self.0.write(), db)
    }

    /// Serves `db` from now on and removes the replaced state's files once the
    /// requests still using it are done (a reload or a snapshot install).
    pub fn swap_in(&self, db: Database) {
        drop(self.replace(db.clone()));
        tokio::spawn(async move {
            // Requests on the old state finish first; see `Database::reload_from`.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let _ = tokio::task::spawn_blocking(move || db.remove_inactive_generations()).await;
        });
    }
}
