//! Delta batches: operation-log entries as the replication stream carries them.
//!
//! The transport does not know what an operation is: an entry is its sequence
//! number, opaque metadata bytes (the op without its vectors) and its vectors as one
//! run of f32. The vectors travel as their raw little-endian bytes, cast with
//! `bytemuck` on the way out and copied straight into an aligned `Vec<f32>` on the
//! way in: no per-float serialisation, no intermediate buffer.
//!
//! A batch is zstd-compressed when that pays, as measured by
//! `benches/delta_compression.rs` (benches/RESULTS.md): metadata and ids shrink 4–10×
//! at level 1, while vectors shrink only to ~85 % (just the exponent bytes repeat) at
//! ~640 MB/s on one core — slower than sending the bytes on a 10 Gb/s link. So small
//! batches and vector-dominated batches go raw without trying, level 1 is used (3 and
//! 9 shrink no further), and an output that is not below `max_ratio` is dropped.

use crate::TransportError;

#[cfg(target_endian = "big")]
compile_error!("needle-transport sends f32 payloads in native (little-endian) byte order");

/// One operation-log entry on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaEntry {
    pub seq: u64,
    /// The entry without its vectors, encoded by the layer above.
    pub meta: Vec<u8>,
    /// Every vector of the entry, back to back.
    pub vectors: Vec<f32>,
}

/// When and how hard to compress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeltaCodec {
    /// zstd level (1 = fastest).
    pub level: i32,
    /// Batches smaller than this many encoded bytes are sent raw.
    pub min_bytes: usize,
    /// Batches whose vector bytes exceed this share of the whole are sent raw.
    pub max_vector_share: f64,
    /// Compressed output larger than this fraction of the input is discarded and the
    /// batch sent raw.
    pub max_ratio: f64,
    /// Largest batch a receiver decodes (guards against decompression bombs).
    pub max_decoded: usize,
}

impl Default for DeltaCodec {
    fn default() -> Self {
        DeltaCodec {
            level: 1,
            min_bytes: 512,
            max_vector_share: 0.5,
            max_ratio: 0.75,
            max_decoded: 256 << 20,
        }
    }
}

/// An encoded batch: the bytes for a frame body and whether they are compressed
/// (the frame's `COMPRESSED` flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedDelta {
    pub bytes: Vec<u8>,
    pub compressed: bool,
    /// Size before compression, for the compression-ratio metric.
    pub raw_len: usize,
}

impl DeltaCodec {
    /// A codec that never compresses: every batch goes raw (for links where CPU is
    /// dearer than bandwidth, and to measure what compression saves).
    pub fn uncompressed() -> DeltaCodec {
        DeltaCodec {
            min_bytes: usize::MAX,
            ..DeltaCodec::default()
        }
    }

    pub fn encode(&self, entries: &[DeltaEntry]) -> EncodedDelta {
        let raw = encode_raw(entries);
        let raw_len = raw.len();
        let vector_bytes: usize = entries.iter().map(|e| 4 * e.vectors.len()).sum();
        let vector_share = vector_bytes as f64 / raw_len as f64;
        if raw_len >= self.min_bytes && vector_share <= self.max_vector_share {
            if let Ok(packed) = zstd::bulk::compress(&raw, self.level) {
                if (packed.len() as f64) <= self.max_ratio * raw_len as f64 {
                    return EncodedDelta {
                        bytes: packed,
                        compressed: true,
                        raw_len,
                    };
                }
            }
        }
        EncodedDelta {
            bytes: raw,
            compressed: false,
            raw_len,
        }
    }

    pub fn decode(
        &self,
        bytes: &[u8],
        compressed: bool,
    ) -> Result<Vec<DeltaEntry>, TransportError> {
        if compressed {
            let raw = zstd::bulk::decompress(bytes, self.max_decoded).map_err(|_| {
                TransportError::DeltaTooLarge {
                    max: self.max_decoded,
                }
            })?;
            decode_raw(&raw)
        } else {
            if bytes.len() > self.max_decoded {
                return Err(TransportError::DeltaTooLarge {
                    max: self.max_decoded,
                });
            }
            decode_raw(bytes)
        }
    }
}

/// `[count u32] { [seq u64] [meta_len u32] [meta] [floats u32] [f32 × floats] }*`,
/// integers little-endian.
fn encode_raw(entries: &[DeltaEntry]) -> Vec<u8> {
    let size: usize = 4 + entries
        .iter()
        .map(|e| 16 + e.meta.len() + 4 * e.vectors.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.seq.to_le_bytes());
        out.extend_from_slice(&(e.meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.meta);
        out.extend_from_slice(&(e.vectors.len() as u32).to_le_bytes());
        out.extend_from_slice(bytemuck::cast_slice(&e.vectors));
    }
    out
}

/// A cursor that never reads past the end: every shortfall is a `Malformed` error.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TransportError> {
        if self.bytes.len() < n {
            return Err(TransportError::malformed(
                "delta batch",
                format!("needs {n} more bytes, {} left", self.bytes.len()),
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, TransportError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, TransportError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn decode_raw(bytes: &[u8]) -> Result<Vec<DeltaEntry>, TransportError> {
    let mut r = Reader { bytes };
    let count = r.u32()? as usize;
    // Each entry takes at least 16 bytes: a count larger than that allows is a lie,
    // and must not size an allocation.
    if count > bytes.len() / 16 {
        return Err(TransportError::malformed(
            "delta batch",
            format!("{count} entries in {} bytes", bytes.len()),
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let seq = r.u64()?;
        let meta_len = r.u32()? as usize;
        let meta = r.take(meta_len)?.to_vec();
        let floats = r.u32()? as usize;
        let raw = r.take(floats.checked_mul(4).ok_or_else(|| {
            TransportError::malformed("delta batch", "vector length overflows")
        })?)?;
        let mut vectors = vec![0f32; floats];
        bytemuck::cast_slice_mut::<f32, u8>(&mut vectors).copy_from_slice(raw);
        entries.push(DeltaEntry { seq, meta, vectors });
    }
    if !r.bytes.is_empty() {
        return Err(TransportError::malformed(
            "delta batch",
            format!("{} trailing bytes", r.bytes.len()),
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(seq: u64, meta: &str, dims: usize, seed: u32) -> DeltaEntry {
        DeltaEntry {
            seq,
            meta: meta.as_bytes().to_vec(),
            vectors: (0..dims)
                .map(|i| ((i as u32 ^ seed).wrapping_mul(2_654_435_761) as f32) / 1e9)
                .collect(),
        }
    }

    proptest! {
        #[test]
        fn batches_round_trip_compressed_or_not(
            entries in prop::collection::vec(
                (any::<u64>(), prop::collection::vec(any::<u8>(), 0..100), prop::collection::vec(any::<f32>(), 0..64)),
                0..20,
            ),
            min_bytes in 0usize..5000,
        ) {
            let entries: Vec<DeltaEntry> = entries
                .into_iter()
                .map(|(seq, meta, vectors)| DeltaEntry { seq, meta, vectors })
                .collect();
            let codec = DeltaCodec { min_bytes, ..DeltaCodec::default() };
            let encoded = codec.encode(&entries);
            let decoded = codec.decode(&encoded.bytes, encoded.compressed).unwrap();
            // Compare bit patterns: NaN payloads must survive too.
            prop_assert_eq!(decoded.len(), entries.len());
            for (d, e) in decoded.iter().zip(&entries) {
                prop_assert_eq!(d.seq, e.seq);
                prop_assert_eq!(&d.meta, &e.meta);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&d.vectors), bits(&e.vectors));
            }
        }

        #[test]
        fn garbage_batches_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), compressed: bool) {
            let _ = DeltaCodec::default().decode(&bytes, compressed);
        }
    }

    #[test]
    fn small_and_vector_heavy_batches_go_raw_metadata_heavy_ones_compressed() {
        let codec = DeltaCodec::default();
        let small = codec.encode(&[entry(1, "{}", 4, 1)]);
        assert!(!small.compressed);
        let meta =
            r#"{"collection":"docs","id":"doc-000123","metadata":{"lang":"en","tags":["a","b"]}}"#;
        let big: Vec<DeltaEntry> = (0..200).map(|i| entry(i, meta, 0, 0)).collect();
        let packed = codec.encode(&big);
        assert!(packed.compressed);
        assert!(
            packed.bytes.len() * 4 < packed.raw_len,
            "{} of {}",
            packed.bytes.len(),
            packed.raw_len
        );
        let vectors: Vec<DeltaEntry> = (0..50).map(|i| entry(i, meta, 384, i as u32)).collect();
        assert!(!codec.encode(&vectors).compressed);
    }

    #[test]
    fn incompressible_batches_are_sent_raw() {
        // Pseudo-random f32 bit patterns do not shrink by 10 %.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let vectors: Vec<f32> = (0..20_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                f32::from_bits(state as u32 & 0x3fff_ffff)
            })
            .collect();
        let batch = [DeltaEntry {
            seq: 1,
            meta: Vec::new(),
            vectors,
        }];
        let always_try = DeltaCodec {
            max_vector_share: 1.0,
            ..DeltaCodec::default()
        };
        assert!(!always_try.encode(&batch).compressed);
    }

    #[test]
    fn decompression_bombs_and_lying_counts_are_refused() {
        let codec = DeltaCodec {
            max_decoded: 1000,
            ..DeltaCodec::default()
        };
        let bomb = zstd::bulk::compress(&vec![0u8; 1_000_000], 3).unwrap();
        assert_eq!(
            codec.decode(&bomb, true),
            Err(TransportError::DeltaTooLarge { max: 1000 })
        );
        let mut lie = u32::MAX.to_le_bytes().to_vec();
        lie.extend([0u8; 32]);
        assert!(matches!(
            DeltaCodec::default().decode(&lie, false),
            Err(TransportError::Malformed { .. })
        ));
    }
}
