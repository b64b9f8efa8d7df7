//! How long searches stall while a collection compacts. Loads N vectors, deletes 40 %
//! in one op (which starts background compaction), and meanwhile runs single-query
//! searches back to back, reporting the slowest one during compaction against the
//! median before it. `cargo bench --bench compaction_stall [-- N DIMS]`.

mod machine;

use needle::{CollectionConfig, Database, Distance, Op, Precondition, VectorRecord};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn main() -> Result<(), needle::Error> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, dims) = match args.as_slice() {
        [n, d, ..] => (*n, *d),
        _ => (400_000, 128),
    };
    let dir = std::env::temp_dir().join(format!("needle-compaction-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Database::open(&dir)?;
    let c = db.create_collection(CollectionConfig::new("c", dims, Distance::Dot))?;
    for chunk in 0..n.div_ceil(10_000) {
        let records = (chunk * 10_000..((chunk + 1) * 10_000).min(n))
            .map(|i| {
                VectorRecord::new(
                    i.to_string(),
                    (0..dims).map(|j| ((i * 31 + j * 7) % 101) as f32).collect(),
                )
            })
            .collect();
        c.upsert(records)?;
    }
    let query: Vec<f32> = (0..dims).map(|j| (j % 13) as f32).collect();
    let mut before: Vec<Duration> = (0..30)
        .map(|_| {
            let t = Instant::now();
            c.search(&query, 10, None).map(|_| t.elapsed())
        })
        .collect::<Result<_, _>>()?;
    before.sort();
    let done = AtomicBool::new(false);
    let (worst, searches) = std::thread::scope(|s| {
        let searcher = s.spawn(|| {
            let (mut worst, mut count) = (Duration::ZERO, 0usize);
            while !done.load(Ordering::Acquire) {
                let t = Instant::now();
                if c.search(&query, 10, None).is_ok() {
                    worst = worst.max(t.elapsed());
                    count += 1;
                }
            }
            (worst, count)
        });
        let doomed: Vec<String> = (0..n)
            .filter(|i| i % 5 < 2)
            .map(|i| i.to_string())
            .collect();
        let result = db.submit(
            Op::Delete {
                collection: "c".into(),
                ids: doomed,
            },
            Precondition::None,
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        while c.tombstones().map(|t| t > 0).unwrap_or(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        done.store(true, Ordering::Release);
        let searched = searcher.join().unwrap_or((Duration::ZERO, 0));
        result.map(|_| searched)
    })?;
    println!("machine: {}", machine::describe());
    println!("N={n} d={dims}: delete 40 % then background compaction");
    println!(
        "median search before: {:.2} ms",
        before[before.len() / 2].as_secs_f64() * 1e3
    );
    println!(
        "slowest search during delete + compaction: {:.2} ms ({searches} searches), {:.1}x the median before",
        worst.as_secs_f64() * 1e3,
        worst.as_secs_f64() / before[before.len() / 2].as_secs_f64()
    );
    drop(c);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
