use super::client::{check, NodeClient};
use crate::import::{read_batches, ImportError};
use crate::{CollectionConfig, Database, Distance, Op, Precondition, VectorRecord};
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Collection to import into.
    #[arg(long)]
    pub collection: String,
    /// A .jsonl, .npy (2-D f32) or .fvecs file.
    pub file: PathBuf,
    /// Import through a running node's HTTP API, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "data")]
    pub url: Option<String>,
    /// CA certificates (PEM) an `https://` node's certificate must chain to
    #[arg(long, env = "NEEDLE_CA_FILE", requires = "url")]
    pub ca_file: Option<PathBuf>,
    /// The node's read-write API key
    #[arg(long, env = "NEEDLE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Import straight into a stopped node's data directory.
    #[arg(long, env = "NEEDLE_DATA")]
    pub data: Option<PathBuf>,
    /// Create the collection with this distance if it does not exist (dimensions
    /// are taken from the file).
    #[arg(long)]
    pub create: Option<String>,
    /// Vectors per write.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Prefix for the ids of .npy/.fvecs rows, which are numbered from 0.
    #[arg(long, default_value = "")]
    pub id_prefix: String,
}

/// Where imported batches go.
enum Sink {
    Http(NodeClient),
    Local(Database),
}

impl Sink {
    fn ensure_collection(
        &self,
        name: &str,
        create: Option<Distance>,
        dims: usize,
    ) -> anyhow::Result<()> {
        match self {
            Sink::Local(db) => {
                if db.collection(name).is_ok() {
                    return Ok(());
                }
                let Some(distance) = create else {
                    bail!(
                        "collection {name:?} does not exist (pass --create DISTANCE to create it)"
                    );
                };
                db.create_collection(CollectionConfig::new(name, dims, distance))?;
            }
            Sink::Http(node) => {
                let resp = node.get(&format!("/collections/{name}")).send()?;
                if resp.status().is_success() {
                    return Ok(());
                }
                let Some(distance) = create else {
                    bail!(
                        "collection {name:?} does not exist (pass --create DISTANCE to create it)"
                    );
                };
                let body =
                    serde_json::json!({"name": name, "dimensions": dims, "distance": distance});
                check(node.post("/collections").json(&body).send()?)?;
            }
        }
        Ok(())
    }

    fn write(&self, name: &str, records: Vec<VectorRecord>) -> anyhow::Result<()> {
        match self {
            Sink::Local(db) => {
                db.submit(
                    Op::Upsert {
                        collection: name.to_string(),
                        records,
                    },
                    Precondition::None,
                )?;
            }
            Sink::Http(node) => {
                let body = serde_json::json!({ "vectors": records });
                check(
                    node.post(&format!("/collections/{name}/vectors/batch"))
                        .json(&body)
                        .send()?,
                )?;
            }
        }
        Ok(())
    }
}

/// Errors from either the reader or the sink, so one `?` serves both.
struct Failure(anyhow::Error);

impl From<ImportError> for Failure {
    fn from(e: ImportError) -> Self {
        Failure(e.into())
    }
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let create = args
        .create
        .as_deref()
        .map(str::parse::<Distance>)
        .transpose()?;
    let sink = match (&args.url, &args.data) {
        (Some(url), _) => Sink::Http(NodeClient::new(
            url,
            args.ca_file.as_deref(),
            args.api_key.clone(),
        )?),
        (None, Some(dir)) => Sink::Local(Database::open(dir).with_context(|| {
            format!(
                "opening {} (is a node running on it? use --url)",
                dir.display()
            )
        })?),
        (None, None) => {
            bail!("pass --url to import through a running node or --data DIR for a stopped one")
        }
    };
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut ensured = false;
    let mut written = 0usize;
    let reader_bar = bar.clone();
    let result = read_batches::<Failure>(
        &args.file,
        args.batch_size,
        &args.id_prefix,
        move |f| Box::new(reader_bar.wrap_read(f)) as Box<dyn Read>,
        |batch| {
            if !ensured {
                let dims = batch.first().map_or(0, |r| r.vector.len());
                sink.ensure_collection(&args.collection, create, dims)
                    .map_err(Failure)?;
                ensured = true;
            }
            written += batch.len();
            sink.write(&args.collection, batch).map_err(Failure)?;
            bar.set_message(format!("{written} vectors"));
            Ok(())
        },
    );
    bar.finish();
    match result {
        Ok(n) => {
            println!("imported {n} vectors into {}", args.collection);
            Ok(())
        }
        Err(Failure(e)) => Err(e.context(format!("import stopped after {written} vectors"))),
    }
}
