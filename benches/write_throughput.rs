//! Durable write throughput: concurrent single-vector inserts through the library with
//! group commit (the default) and with one fsync per write, measured in one run.
//! `cargo bench --bench write_throughput [-- WRITERS OPS_PER_WRITER DIMS]`.

mod machine;

use needle::{CollectionConfig, Database, DatabaseOptions, Distance, SyncMode, VectorRecord};
use std::time::Instant;

fn run(
    mode: SyncMode,
    writers: usize,
    per_writer: usize,
    dims: usize,
) -> Result<f64, needle::Error> {
    let dir = std::env::temp_dir().join(format!("needle-writes-{}-{mode:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Database::open_with(
        &dir,
        DatabaseOptions {
            sync: mode,
            ..Default::default()
        },
    )?;
    let c = db.create_collection(CollectionConfig::new("w", dims, Distance::Dot))?;
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let c = c.clone();
                s.spawn(move || {
                    for i in 0..per_writer {
                        let v: Vec<f32> = (0..dims)
                            .map(|j| ((w * 31 + i * 7 + j) % 97) as f32)
                            .collect();
                        c.insert(VectorRecord::new(format!("{w}-{i}"), v))?;
                    }
                    Ok::<(), needle::Error>(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or(Err(needle::Error::Closed)))
    })?;
    let rate = (writers * per_writer) as f64 / start.elapsed().as_secs_f64();
    drop(c);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rate)
}

fn main() -> Result<(), needle::Error> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (writers, per_writer, dims) = match args.as_slice() {
        [w, n, d, ..] => (*w, *n, *d),
        _ => (16, 200, 384),
    };
    println!("machine: {}", machine::describe());
    println!("{writers} concurrent writers x {per_writer} single-vector inserts, d={dims}, fsync before every ack");
    let mut best = [0.0f64; 2];
    for _ in 0..2 {
        for (i, mode) in [SyncMode::PerWrite, SyncMode::Group]
            .into_iter()
            .enumerate()
        {
            best[i] = best[i].max(run(mode, writers, per_writer, dims)?);
        }
    }
    println!("per-write fsync: {:>10.0} inserts/s", best[0]);
    println!("group commit:    {:>10.0} inserts/s", best[1]);
    println!("ratio group/per-write: {:.2}x", best[1] / best[0]);
    Ok(())
}
