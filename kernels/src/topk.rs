use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One search result: a shard row and its distance to the query (smaller is closer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: u32,
    pub distance: f32,
}

/// Heap entry ordered by (score, row) so that ties resolve the same way on every
/// backend and every run: the lower row wins.
#[derive(Debug, Clone, Copy)]
struct Entry {
    score: f32,
    row: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.row.cmp(&other.row))
    }
}

/// The `k` smallest scores seen so far, as a bounded max-heap.
///
/// `threshold` lets scan loops skip the heap entirely for the vast majority of rows,
/// which is what keeps top-k selection cheap next to the distance computation.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Entry>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    /// Scores at or above this cannot enter (unless they tie and win on row).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |e| e.score)
        }
    }

    /// Offers a candidate; keeps it if it is among the `k` best so far.
    #[inline]
    pub fn push(&mut self, score: f32, row: u32) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        let entry = Entry { score, row };
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if entry < *worst {
                *worst = entry;
            }
        }
    }

    /// Folds another partial result (e.g. from another block of rows) into this one.
    pub fn merge(&mut self, other: TopK) {
        for e in other.heap {
            self.push(e.score, e.row);
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The kept candidates, best first, as (score, row).
    pub fn into_sorted(self) -> Vec<(f32, u32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| (e.score, e.row))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_smallest_in_order() {
        let mut t = TopK::new(3);
        for (i, s) in [5.0, 1.0, 4.0, 2.0, 3.0, 0.5].iter().enumerate() {
            t.push(*s, i as u32);
        }
        let got: Vec<u32> = t.into_sorted().into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, vec![5, 1, 3]);
    }

    #[test]
    fn ties_resolve_to_the_lower_row_and_nan_is_ignored() {
        let mut t = TopK::new(2);
        t.push(1.0, 9);
        t.push(f32::NAN, 0);
        t.push(1.0, 4);
        t.push(1.0, 7);
        let got: Vec<u32> = t.into_sorted().into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, vec![4, 7]);
    }

    #[test]
    fn merge_equals_single_pass() {
        let scores: Vec<f32> = (0..100).map(|i| ((i * 37) % 101) as f32).collect();
        let mut whole = TopK::new(10);
        let mut a = TopK::new(10);
        let mut b = TopK::new(10);
        for (i, s) in scores.iter().enumerate() {
            whole.push(*s, i as u32);
            if i % 2 == 0 {
                a.push(*s, i as u32)
            } else {
                b.push(*s, i as u32)
            }
        }
        a.merge(b);
        assert_eq!(a.into_sorted(), whole.into_sorted());
    }
}
