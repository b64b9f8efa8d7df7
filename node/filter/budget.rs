//! What a filter may cost, whichever language it was written in (native or
//! Qdrant's): each condition and each listed value is paid for on every row.

use super::{MAX_FILTER_CONDITIONS, MAX_FILTER_VALUES};

/// What a filter has used of its size limits so far.
#[derive(Default)]
pub(crate) struct Budget {
    conditions: usize,
    values: usize,
}

impl Budget {
    pub(crate) fn condition(&mut self) -> Result<(), String> {
        self.conditions += 1;
        if self.conditions > MAX_FILTER_CONDITIONS {
            return Err(format!(
                "the filter has more than {MAX_FILTER_CONDITIONS} conditions"
            ));
        }
        Ok(())
    }

    pub(crate) fn values(&mut self, n: usize) -> Result<(), String> {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_FILTER_VALUES {
            return Err(format!(
                "the filter's value lists hold more than {MAX_FILTER_VALUES} values"
            ));
        }
        Ok(())
    }
}
