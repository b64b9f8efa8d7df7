//! The wall clock the core reads, injected through [`crate::DatabaseOptions`] so
//! that whoever embeds the core (a replication mode measuring lag from commit times,
//! a test) decides what time it is.

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy)]
pub struct Clock(pub fn() -> u64);

impl Clock {
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

/// The system clock: what every node runs with.
pub fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Default for Clock {
    fn default() -> Self {
        Clock(system_ms)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for Clock {}
