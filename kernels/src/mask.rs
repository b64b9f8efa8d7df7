/// A set of shard rows a search may return: one bit per row, set = allowed.
///
/// Filters are evaluated once per request into a mask, so the kernels only test bits
/// and never interpret metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMask {
    words: Vec<u64>,
    rows: usize,
}

impl RowMask {
    /// A mask over `rows` rows with none allowed.
    pub fn none(rows: usize) -> Self {
        RowMask {
            words: vec![0; rows.div_ceil(64)],
            rows,
        }
    }

    /// A mask over `rows` rows with every row allowed.
    pub fn all(rows: usize) -> Self {
        let mut mask = RowMask {
            words: vec![u64::MAX; rows.div_ceil(64)],
            rows,
        };
        mask.clear_tail();
        mask
    }

    fn clear_tail(&mut self) {
        let tail = self.rows % 64;
        if tail != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << tail) - 1;
            }
        }
    }

    /// A mask from raw words (row `r` at bit `r % 64` of word `r / 64`), sized to
    /// `rows`: missing words are zero, extra words and bits past `rows` are dropped.
    pub fn from_words(mut words: Vec<u64>, rows: usize) -> Self {
        words.resize(rows.div_ceil(64), 0);
        let mut mask = RowMask { words, rows };
        mask.clear_tail();
        mask
    }

    /// Number of rows this mask covers.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Allows `row`. Rows beyond the mask's size are ignored.
    pub fn set(&mut self, row: usize) {
        if row < self.rows {
            self.words[row / 64] |= 1 << (row % 64);
        }
    }

    /// Forbids `row`.
    pub fn clear(&mut self, row: usize) {
        if row < self.rows {
            self.words[row / 64] &= !(1 << (row % 64));
        }
    }

    /// Whether `row` is allowed.
    #[inline]
    pub fn contains(&self, row: usize) -> bool {
        row < self.rows && self.words[row / 64] & (1 << (row % 64)) != 0
    }

    /// Grows or shrinks the mask to `rows`, new rows set to `allowed`.
    pub fn resize(&mut self, rows: usize, allowed: bool) {
        let old = self.rows;
        if rows > old && allowed {
            self.words.resize(rows.div_ceil(64), 0);
            self.rows = rows;
            for row in old..rows {
                self.set(row);
            }
        } else {
            self.words.resize(rows.div_ceil(64), 0);
            self.rows = rows;
            self.clear_tail();
        }
    }

    /// Number of allowed rows.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Keeps only rows allowed by both masks.
    pub fn intersect(&mut self, other: &RowMask) {
        for (i, w) in self.words.iter_mut().enumerate() {
            *w &= other.words.get(i).copied().unwrap_or(0);
        }
    }

    /// The raw 64-bit words, row `r` at bit `r % 64` of word `r / 64`. GPU backends
    /// upload these as-is.
    pub fn words(&self) -> &[u64] {
        &self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_and_none_cover_exactly_the_rows() {
        let all = RowMask::all(130);
        assert_eq!(all.count(), 130);
        assert!(all.contains(129));
        assert!(!all.contains(130));
        assert_eq!(RowMask::none(130).count(), 0);
    }

    #[test]
    fn set_clear_resize_intersect() {
        let mut m = RowMask::none(10);
        m.set(3);
        m.set(9);
        m.set(50); // ignored: out of range
        assert_eq!(m.count(), 2);
        m.clear(3);
        assert!(!m.contains(3));
        m.resize(70, true);
        assert_eq!(m.count(), 61);
        m.resize(8, true);
        assert_eq!(m.count(), 0);
        let mut a = RowMask::all(100);
        let mut b = RowMask::none(100);
        b.set(7);
        b.set(99);
        a.intersect(&b);
        assert_eq!(a.count(), 2);
        assert!(a.contains(99));
        let w = RowMask::from_words(vec![u64::MAX, u64::MAX, 7], 70);
        assert_eq!(w.count(), 70);
        assert_eq!(RowMask::from_words(vec![1], 130).count(), 1);
    }
}
