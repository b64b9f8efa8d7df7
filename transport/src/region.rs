//! "RDMA-style" memory regions: a receiver registers an aligned buffer and hands
//! the sender its key; the sender writes byte ranges into it one-sidedly, in any
//! order and over several streams at once; the receiver learns it is complete when
//! every byte has been written, and both sides compare an xxh3 checksum of the whole
//! region. Reads of a region work the same way in the other direction.
//!
//! This is the bookkeeping only (sans-IO): the async shell reads a `RegionWrite`
//! frame's body straight into [`RegionTable::slot`] and then calls
//! [`RegionTable::commit`]; no intermediate message buffer is allocated.
//!
//! A region to be read can also be a file ([`RegionTable::register_file`]): a
//! snapshot of any size is then served chunk by chunk from disk, never held whole in
//! memory, and the reader writes it to a file of its own as it arrives.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use crate::TransportError;

/// Names a registered region in frames. Keys are never reused within a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionKey(pub u64);

/// A byte buffer aligned for f32 (and u64) access, so a completed region can be
/// used as vectors without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }

    /// The region as f32 values, when its length is a whole number of them.
    pub fn as_f32(&self) -> Option<&[f32]> {
        if !self.len.is_multiple_of(4) {
            return None;
        }
        Some(&bytemuck::cast_slice(&self.words)[..self.len / 4])
    }
}

/// The checksum both ends compute over a whole region.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// [`checksum`] of a file's contents, read in 4 MiB pieces (blocking: call it off
/// the async threads), and the file's length.
pub fn file_checksum(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hasher.digest()))
}

/// Written byte ranges, merged: `start → end` with no two touching.
#[derive(Debug, Default, Clone)]
struct Coverage {
    ranges: BTreeMap<u64, u64>,
    covered: u64,
}

impl Coverage {
    fn add(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        // Absorb every range that overlaps or touches [start, end).
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(..=end)
            .rev()
            .take_while(|&(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.ranges.remove(&s);
            self.covered -= e - s;
            start = start.min(s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
        self.covered += end - start;
    }
}

struct Region {
    buf: AlignedBuf,
    coverage: Coverage,
}

/// What a read of a region yields: bytes copied out of a memory region, or where in
/// a file region's file to read them (the shell reads it off the async threads).
#[derive(Debug)]
pub enum RegionData {
    Bytes(Vec<u8>),
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    },
}

/// A file offered for reading.
struct FileRegion {
    file: Arc<std::fs::File>,
    len: u64,
}

/// The outcome of a fully written region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub key: RegionKey,
    pub len: u64,
    pub checksum: u64,
}

/// The regions one node has registered for peers to write into or read from.
pub struct RegionTable {
    regions: HashMap<RegionKey, Region>,
    files: HashMap<RegionKey, FileRegion>,
    next_key: u64,
    max_region: u64,
}

impl RegionTable {
    /// `max_region` bounds any one region's size (a peer's request to register a
    /// region must not be able to exhaust memory).
    pub fn new(max_region: u64) -> RegionTable {
        RegionTable {
            regions: HashMap::new(),
            files: HashMap::new(),
            next_key: 1,
            max_region,
        }
    }

    /// A new zeroed region of `len` bytes.
    pub fn register(&mut self, len: u64) -> Result<RegionKey, TransportError> {
        if len > self.max_region {
            return Err(TransportError::RegionTooLarge {
                requested: len,
                max: self.max_region,
            });
        }
        let size = usize::try_from(len).map_err(|_| TransportError::RegionTooLarge {
            requested: len,
            max: self.max_region,
        })?;
        let key = RegionKey(self.next_key);
        self.next_key += 1;
        self.regions.insert(
            key,
            Region {
                buf: AlignedBuf::zeroed(size),
                coverage: Coverage::default(),
            },
        );
        Ok(key)
    }

    /// A region with existing contents, for peers to read.
    pub fn register_filled(&mut self, buf: AlignedBuf) -> Result<RegionKey, TransportError> {
        let key = self.register(0)?;
        let len = buf.len() as u64;
        if len > self.max_region {
            self.regions.remove(&key);
            return Err(TransportError::RegionTooLarge {
                requested: len,
                max: self.max_region,
            });
        }
        let mut coverage = Coverage::default();
        coverage.add(0, len);
        self.regions.insert(key, Region { buf, coverage });
        Ok(key)
    }

    /// A region whose contents are the file at `path`, for peers to read; its length
    /// comes back with the key. Any size: nothing is loaded, and the memory bound
    /// does not apply.
    pub fn register_file(
        &mut self,
        path: &std::path::Path,
    ) -> Result<(RegionKey, u64), TransportError> {
        let io = |e: std::io::Error| TransportError::Stream(format!("{}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let key = RegionKey(self.next_key);
        self.next_key += 1;
        self.files.insert(
            key,
            FileRegion {
                file: Arc::new(file),
                len,
            },
        );
        Ok((key, len))
    }

    /// Forgets a region of either kind (a file region's file stays on disk).
    pub fn remove(&mut self, key: RegionKey) -> bool {
        self.regions.remove(&key).is_some() || self.files.remove(&key).is_some()
    }

    /// `len` bytes at `offset` of a memory or file region, for a peer's read.
    pub fn read_data(
        &mut self,
        key: RegionKey,
        offset: u64,
        len: u64,
    ) -> Result<RegionData, TransportError> {
        if let Some(f) = self.files.get(&key) {
            let size = usize::try_from(f.len).unwrap_or(usize::MAX);
            Self::bounds(key, size, offset, len)?;
            return Ok(RegionData::File {
                file: Arc::clone(&f.file),
                offset,
                len,
            });
        }
        Ok(RegionData::Bytes(self.read(key, offset, len)?.to_vec()))
    }

    fn region(&mut self, key: RegionKey) -> Result<&mut Region, TransportError> {
        self.regions
            .get_mut(&key)
            .ok_or(TransportError::NoSuchRegion(key.0))
    }

    fn bounds(
        key: RegionKey,
        size: usize,
        offset: u64,
        len: u64,
    ) -> Result<Range<usize>, TransportError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= size as u64)
            .ok_or(TransportError::OutOfRegion {
                key: key.0,
                offset,
                len,
                size: size as u64,
            })?;
        Ok(offset as usize..end as usize)
    }

    /// The bytes a write of `len` at `offset` goes into, for the shell to fill
    /// directly from the stream. Nothing counts as written until [`Self::commit`].
    pub fn slot(
        &mut self,
        key: RegionKey,
        offset: u64,
        len: u64,
    ) -> Result<&mut [u8], TransportError> {
        let region = self.region(key)?;
        let range = Self::bounds(key, region.buf.len(), offset, len)?;
        Ok(&mut region.buf.as_bytes_mut()[range])
    }

    /// Records that `len` bytes at `offset` were written in full.
    pub fn commit(&mut self, key: RegionKey, offset: u64, len: u64) -> Result<(), TransportError> {
        let region = self.region(key)?;
        Self::bounds(key, region.buf.len(), offset, len)?;
        region.coverage.add(offset, offset + len);
        Ok(())
    }

    /// Copies `bytes` in at `offset` and commits them.
    pub fn write(
        &mut self,
        key: RegionKey,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), TransportError> {
        self.slot(key, offset, bytes.len() as u64)?
            .copy_from_slice(bytes);
        self.commit(key, offset, bytes.len() as u64)
    }

    /// `len` bytes at `offset`, for a peer's read.
    pub fn read(&mut self, key: RegionKey, offset: u64, len: u64) -> Result<&[u8], TransportError> {
        let region = self.region(key)?;
        let range = Self::bounds(key, region.buf.len(), offset, len)?;
        Ok(&region.buf.as_bytes()[range])
    }

    /// The completion of a fully written region, or how much is missing.
    pub fn complete(&mut self, key: RegionKey) -> Result<Completion, TransportError> {
        let region = self.region(key)?;
        let size = region.buf.len() as u64;
        if region.coverage.covered < size {
            return Err(TransportError::RegionIncomplete {
                key: key.0,
                missing: size - region.coverage.covered,
                size,
            });
        }
        Ok(Completion {
            key,
            len: size,
            checksum: checksum(region.buf.as_bytes()),
        })
    }

    /// Removes the region and hands its buffer to the caller (e.g. a GPU upload).
    pub fn take(&mut self, key: RegionKey) -> Result<AlignedBuf, TransportError> {
        self.regions
            .remove(&key)
            .map(|r| r.buf)
            .ok_or(TransportError::NoSuchRegion(key.0))
    }

    /// Bytes held in memory by all registered regions (file regions hold none).
    pub fn bytes_held(&self) -> u64 {
        self.regions.values().map(|r| r.buf.len() as u64).sum()
    }
}

/// The sender's plan for writing `len` bytes: chunks of at most `chunk` bytes dealt
/// round-robin to `streams` streams, so parallel streams each carry an even share.
pub fn plan_writes(len: u64, chunk: u64, streams: usize) -> Vec<Vec<Range<u64>>> {
    let streams = streams.max(1);
    let chunk = chunk.max(1);
    let mut plan = vec![Vec::new(); streams];
    let mut offset = 0;
    let mut i = 0;
    while offset < len {
        let end = (offset + chunk).min(len);
        plan[i % streams].push(offset..end);
        offset = end;
        i += 1;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Writes in any order, split over any number of streams, complete the region
        /// with the sender's checksum; a region with any chunk missing does not.
        #[test]
        fn out_of_order_parallel_writes_complete_with_the_right_checksum(
            data in prop::collection::vec(any::<u8>(), 1..5000),
            chunk in 1u64..700,
            streams in 1usize..6,
            seed in any::<u64>(),
            skip_one in any::<bool>(),
        ) {
            let mut table = RegionTable::new(1 << 20);
            let key = table.register(data.len() as u64).unwrap();
            let plan = plan_writes(data.len() as u64, chunk, streams);
            // Interleave streams in a seed-dependent order, as concurrent streams would.
            let mut ops: Vec<Range<u64>> = plan.into_iter().flatten().collect();
            let mut s = seed | 1;
            for i in (1..ops.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                ops.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let skipped = if skip_one { ops.pop() } else { None };
            for r in &ops {
                table.write(key, r.start, &data[r.start as usize..r.end as usize]).unwrap();
            }
            match skipped {
                Some(r) => {
                    let err = table.complete(key).unwrap_err();
                    let missing = r.end - r.start;
                    prop_assert_eq!(err, TransportError::RegionIncomplete { key: key.0, missing, size: data.len() as u64 });
                }
                None => {
                    let done = table.complete(key).unwrap();
                    prop_assert_eq!(done.checksum, checksum(&data));
                    let buf = table.take(key).unwrap();
                    prop_assert_eq!(buf.as_bytes(), &data[..]);
                }
            }
        }
    }

    #[test]
    fn writes_outside_the_region_or_to_unknown_keys_are_refused() {
        let mut table = RegionTable::new(100);
        let key = table.register(10).unwrap();
        let out = TransportError::OutOfRegion {
            key: key.0,
            offset: 8,
            len: 3,
            size: 10,
        };
        assert_eq!(table.write(key, 8, &[1, 2, 3]), Err(out));
        assert!(matches!(
            table.write(key, u64::MAX, &[1]),
            Err(TransportError::OutOfRegion { .. })
        ));
        assert_eq!(
            table.write(RegionKey(999), 0, &[1]),
            Err(TransportError::NoSuchRegion(999))
        );
        assert_eq!(
            table.register(101),
            Err(TransportError::RegionTooLarge {
                requested: 101,
                max: 100
            })
        );
        // Overlapping rewrites count each byte once.
        table.write(key, 0, &[1; 6]).unwrap();
        table.write(key, 4, &[2; 6]).unwrap();
        assert_eq!(table.complete(key).unwrap().len, 10);
    }

    #[test]
    fn a_completed_region_reads_back_as_aligned_f32() {
        let floats: Vec<f32> = (0..257).map(|i| i as f32 * 0.5).collect();
        let bytes: &[u8] = bytemuck::cast_slice(&floats);
        let mut table = RegionTable::new(1 << 20);
        let key = table.register(bytes.len() as u64).unwrap();
        for r in plan_writes(bytes.len() as u64, 100, 3)
            .into_iter()
            .flatten()
        {
            table
                .write(key, r.start, &bytes[r.start as usize..r.end as usize])
                .unwrap();
        }
        assert_eq!(table.read(key, 4, 4).unwrap(), &0.5f32.to_le_bytes());
        let buf = table.take(key).unwrap();
        assert_eq!(buf.as_f32().unwrap(), &floats[..]);
        assert_eq!(table.bytes_held(), 0);
    }

    #[test]
    fn file_regions_serve_reads_from_disk_and_hold_no_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        // A memory bound far below the file's size: files are not held, so it does
        // not apply.
        let mut table = RegionTable::new(16);
        let (key, len) = table.register_file(&path).unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(table.bytes_held(), 0);
        match table.read_data(key, 5000, 100).unwrap() {
            RegionData::File { offset, len, .. } => assert_eq!((offset, len), (5000, 100)),
            RegionData::Bytes(_) => panic!("a file region is read from its file"),
        }
        assert!(matches!(
            table.read_data(key, 9_950, 100),
            Err(TransportError::OutOfRegion { .. })
        ));
        assert!(table.remove(key));
        assert!(table.read_data(key, 0, 1).is_err());
        assert!(path.exists(), "removing the region leaves the file");
    }

    #[test]
    fn filled_regions_serve_reads() {
        let mut buf = AlignedBuf::zeroed(16);
        buf.as_bytes_mut().copy_from_slice(&[7; 16]);
        let mut table = RegionTable::new(64);
        let key = table.register_filled(buf).unwrap();
        assert_eq!(table.read(key, 10, 6).unwrap(), &[7; 6]);
        assert_eq!(table.complete(key).unwrap().checksum, checksum(&[7; 16]));
    }
}
