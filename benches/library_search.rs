//! Batched exact search through the needle library, timed, for `compare_faiss.py`.
//!
//! `cargo bench --bench library_search -- BASE.npy QUERIES.npy DISTANCE K REPEATS OUT.json`
//! loads BASE into a fresh database (a temp directory), runs every query as one batch
//! REPEATS times, and writes the best time plus the result ids as JSON. It also times
//! single-query searches (the first 100 queries, one at a time).

use needle::{CollectionConfig, Database, Op, Precondition};
use std::time::Instant;

type BoxError = Box<dyn std::error::Error>;

/// (dimensions, rows) of a vector file.
fn load(path: &str) -> Result<(usize, Vec<Vec<f32>>), BoxError> {
    let mut rows = Vec::new();
    let mut dims = 0;
    needle::import::read_batches::<needle::import::ImportError>(
        std::path::Path::new(path),
        10_000,
        "",
        |f| Box::new(f),
        |batch| {
            for r in batch {
                dims = r.vector.len();
                rows.push(r.vector);
            }
            Ok(())
        },
    )?;
    Ok((dims, rows))
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [base, queries, distance, k, repeats, out] = args.as_slice() else {
        eprintln!("usage: library_search BASE.npy QUERIES.npy DISTANCE K REPEATS OUT.json");
        std::process::exit(2);
    };
    let (k, repeats): (usize, usize) = (k.parse()?, repeats.parse()?);
    let (dims, base) = load(base)?;
    let (_, queries) = load(queries)?;
    let dir = std::env::temp_dir().join(format!("needle-bench-{}", std::process::id()));
    let db = Database::open(&dir)?;
    let c = db.create_collection(CollectionConfig::new("bench", dims, distance.parse()?))?;
    for (chunk_no, chunk) in base.chunks(10_000).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| needle::VectorRecord::new((chunk_no * 10_000 + i).to_string(), v.clone()))
            .collect();
        db.submit(
            Op::Upsert {
                collection: "bench".into(),
                records,
            },
            Precondition::None,
        )?;
    }
    let mut best = f64::INFINITY;
    let mut ids: Vec<Vec<u64>> = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        let hits = c.search_batch(&queries, k, None, false)?;
        best = best.min(start.elapsed().as_secs_f64());
        ids = hits
            .iter()
            .map(|h| h.iter().map(|x| x.id.parse().unwrap_or(u64::MAX)).collect())
            .collect();
    }
    let mut single: Vec<f64> = Vec::new();
    for q in queries.iter().take(100) {
        let start = Instant::now();
        c.search(q, k, None)?;
        single.push(start.elapsed().as_secs_f64());
    }
    single.sort_by(f64::total_cmp);
    let report = serde_json::json!({
        "batch_seconds": best,
        "queries": queries.len(),
        "single_median_seconds": single[single.len() / 2],
        "single_p99_seconds": single[(single.len() * 99 / 100).min(single.len() - 1)],
        "ids": ids,
    });
    std::fs::write(out, serde_json::to_vec(&report)?)?;
    drop(c);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
