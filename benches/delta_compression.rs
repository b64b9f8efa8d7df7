//! zstd on operation-log delta batches: encoded size and encode/decode time against
//! sending the batch raw (the peer, same run), for the batch shapes replication
//! carries. `cargo bench -p needle-transport --bench delta_compression`.
//! The figures justify `DeltaCodec::default()` (level 1; raw below 512 bytes, when
//! vectors are over half the bytes, or unless it shrinks to 75 %): benches/RESULTS.md.

#[path = "machine.rs"]
mod machine;

use needle_transport::{DeltaCodec, DeltaEntry};
use std::time::Instant;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Roughly normal f32, like embedding components.
    fn gaussian(&mut self) -> f32 {
        let s: f64 = (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        ((s - 2.0) * 1.7) as f32
    }
}

/// A batch of `n` upserts of `dims`-dimensional vectors with realistic metadata, or
/// (dims = 0) of deletes carrying only ids.
fn batch(n: usize, dims: usize, rng: &mut Rng) -> Vec<DeltaEntry> {
    let langs = ["en", "de", "fr", "ja"];
    (0..n)
        .map(|i| {
            let meta = if dims == 0 {
                format!(r#"{{"op":"delete","collection":"docs","ids":["doc-{:08}"]}}"#, rng.next() % 100_000_000)
            } else {
                format!(
                    r#"{{"op":"upsert","collection":"docs","id":"doc-{:08}","metadata":{{"lang":"{}","year":{},"tags":["t{}","t{}"],"title":"Document number {i} about topic {}"}}}}"#,
                    rng.next() % 100_000_000,
                    langs[(rng.next() % 4) as usize],
                    1990 + rng.next() % 35,
                    rng.next() % 50,
                    rng.next() % 50,
                    rng.next() % 1000
                )
            };
            DeltaEntry {
                seq: 1_000_000 + i as u64,
                meta: meta.into_bytes(),
                vectors: (0..dims).map(|_| rng.gaussian()).collect(),
            }
        })
        .collect()
}

fn micros<T>(reps: u32, mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(reps)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("machine: {}", machine::describe());
    println!("peer: the same batch sent raw (no compression), same run");
    println!("| batch | raw bytes | codec | bytes | ratio | encode µs | decode µs |");
    println!("|---|---:|---|---:|---:|---:|---:|");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for (label, n, dims) in [
        ("1 upsert d=384", 1, 384),
        ("10 upserts d=384", 10, 384),
        ("100 upserts d=384", 100, 384),
        ("1000 upserts d=384", 1000, 384),
        ("1 delete", 1, 0),
        ("10 deletes", 10, 0),
        ("100 deletes", 100, 0),
        ("1000 deletes", 1000, 0),
    ] {
        let entries = batch(n, dims, &mut rng);
        let reps = (20_000 / n.max(1)).clamp(5, 2000) as u32;
        let raw = DeltaCodec {
            min_bytes: usize::MAX,
            ..DeltaCodec::default()
        };
        let raw_bytes = raw.encode(&entries).bytes;
        for level in [0, 1, 3, 9] {
            let codec = DeltaCodec {
                level,
                min_bytes: 0,
                max_vector_share: 1.0,
                max_ratio: f64::INFINITY,
                ..DeltaCodec::default()
            };
            let (name, encoded) = if level == 0 {
                ("raw", raw.encode(&entries))
            } else {
                ("zstd", codec.encode(&entries))
            };
            let using = if level == 0 { raw } else { codec };
            let enc = micros(reps, || using.encode(&entries));
            let dec = micros(reps, || {
                using
                    .decode(&encoded.bytes, encoded.compressed)
                    .map(|e| e.len())
            });
            println!(
                "| {label} | {} | {name}{} | {} | {:.3} | {enc:.1} | {dec:.1} |",
                raw_bytes.len(),
                if level == 0 {
                    String::new()
                } else {
                    format!(" -{level}")
                },
                encoded.bytes.len(),
                encoded.bytes.len() as f64 / raw_bytes.len() as f64,
            );
        }
    }
}
