//! Readers for the vector file formats `needle import` accepts: `.jsonl` (one
//! `{"id","vector","metadata"?}` object per line), `.npy` (2-D f32, C order) and
//! `.fvecs` (per vector: little-endian i32 dimension, then that many f32). Readers
//! hand out records in batches so imports of any size run in bounded memory.

use crate::model::VectorRecord;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{0}: unsupported file type (expected .jsonl, .npy or .fvecs)")]
    UnknownFormat(String),
    #[error("reading the file: {0}")]
    Io(#[from] io::Error),
    #[error("line {line}: {message}")]
    Jsonl { line: usize, message: String },
    #[error("npy: {0}")]
    Npy(String),
    #[error("fvecs vector {index}: {message}")]
    Fvecs { index: usize, message: String },
}

/// A supported vector file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Npy,
    Fvecs,
}

impl Format {
    /// The format named by the file's extension.
    pub fn from_path(path: &Path) -> Result<Format, ImportError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") | Some("ndjson") => Ok(Format::Jsonl),
            Some("npy") => Ok(Format::Npy),
            Some("fvecs") => Ok(Format::Fvecs),
            _ => Err(ImportError::UnknownFormat(path.display().to_string())),
        }
    }
}

/// Reads `path` and calls `sink` with batches of at most `batch_size` records, in file
/// order. Rows of `.npy`/`.fvecs` files get ids `{id_prefix}{row}`. `wrap` lets the
/// caller observe the raw reader (e.g. a progress bar counting bytes).
pub fn read_batches<E: From<ImportError>>(
    path: &Path,
    batch_size: usize,
    id_prefix: &str,
    wrap: impl FnOnce(File) -> Box<dyn Read>,
    mut sink: impl FnMut(Vec<VectorRecord>) -> Result<(), E>,
) -> Result<usize, E> {
    let format = Format::from_path(path)?;
    let file = File::open(path).map_err(ImportError::from)?;
    let reader = BufReader::with_capacity(1 << 20, wrap(file));
    let batch_size = batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut total = 0usize;
    let mut push = |record: VectorRecord, batch: &mut Vec<VectorRecord>| -> Result<(), E> {
        batch.push(record);
        total += 1;
        if batch.len() >= batch_size {
            sink(std::mem::replace(batch, Vec::with_capacity(batch_size)))?;
        }
        Ok(())
    };
    match format {
        Format::Jsonl => {
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(ImportError::from)?;
                if line.trim().is_empty() {
                    continue;
                }
                let record: VectorRecord =
                    serde_json::from_str(&line).map_err(|e| ImportError::Jsonl {
                        line: i + 1,
                        message: e.to_string(),
                    })?;
                push(record, &mut batch)?;
            }
        }
        Format::Npy => {
            let npy = npyz::NpyFile::new(reader).map_err(|e| ImportError::Npy(e.to_string()))?;
            let shape = npy.shape().to_vec();
            if shape.len() != 2 {
                return Err(
                    ImportError::Npy(format!("expected a 2-D array, got shape {shape:?}")).into(),
                );
            }
            if npy.order() != npyz::Order::C {
                return Err(
                    ImportError::Npy("Fortran-ordered arrays are not supported".into()).into(),
                );
            }
            let (rows, dims) = (shape[0] as usize, shape[1] as usize);
            let mut data = npy
                .data::<f32>()
                .map_err(|e| ImportError::Npy(format!("expected f32 data: {e}")))?;
            for row in 0..rows {
                let mut vector = Vec::with_capacity(dims);
                for _ in 0..dims {
                    let v = data
                        .next()
                        .ok_or_else(|| ImportError::Npy(format!("file ends in row {row}")))?
                        .map_err(|e| ImportError::Npy(e.to_string()))?;
                    vector.push(v);
                }
                push(
                    VectorRecord::new(format!("{id_prefix}{row}"), vector),
                    &mut batch,
                )?;
            }
        }
        Format::Fvecs => {
            let mut reader = reader;
            let mut index = 0usize;
            loop {
                let mut dim = [0u8; 4];
                if !read_exact_or_eof(&mut reader, &mut dim).map_err(ImportError::from)? {
                    break;
                }
                let d = i32::from_le_bytes(dim);
                if d <= 0 || d as usize > crate::model::MAX_DIMENSIONS {
                    return Err(ImportError::Fvecs {
                        index,
                        message: format!("bad dimension {d}"),
                    }
                    .into());
                }
                let mut bytes = vec![0u8; d as usize * 4];
                reader
                    .read_exact(&mut bytes)
                    .map_err(|e| ImportError::Fvecs {
                        index,
                        message: format!("truncated: {e}"),
                    })?;
                let vector = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                push(
                    VectorRecord::new(format!("{id_prefix}{index}"), vector),
                    &mut batch,
                )?;
                index += 1;
            }
        }
    }
    if !batch.is_empty() {
        sink(batch)?;
    }
    Ok(total)
}

/// Fills `buf`, or returns `false` on a clean end of file before the first byte.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 if filled == 0 => return Ok(false),
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated record",
                ))
            }
            n => filled += n,
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(path: &Path, batch: usize) -> Result<(Vec<Vec<VectorRecord>>, usize), ImportError> {
        let mut batches = Vec::new();
        let n = read_batches::<ImportError>(
            path,
            batch,
            "r",
            |f| Box::new(f),
            |b| {
                batches.push(b);
                Ok(())
            },
        )?;
        Ok((batches, n))
    }

    #[test]
    fn fvecs_and_npy_and_jsonl_read_the_same_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Vec<f32>> = (0..5)
            .map(|i| vec![i as f32, -0.5, 2.0 * i as f32])
            .collect();

        let fvecs = dir.path().join("a.fvecs");
        let mut f = File::create(&fvecs).unwrap();
        for r in &rows {
            f.write_all(&3i32.to_le_bytes()).unwrap();
            for v in r {
                f.write_all(&v.to_le_bytes()).unwrap();
            }
        }
        drop(f);

        let npy = dir.path().join("a.npy");
        let mut header =
            String::from("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3), }");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut f = File::create(&npy).unwrap();
        f.write_all(b"\x93NUMPY\x01\x00").unwrap();
        f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
        f.write_all(header.as_bytes()).unwrap();
        for v in rows.iter().flatten() {
            f.write_all(&v.to_le_bytes()).unwrap();
        }
        drop(f);

        let jsonl = dir.path().join("a.jsonl");
        let mut f = File::create(&jsonl).unwrap();
        for (i, r) in rows.iter().enumerate() {
            writeln!(
                f,
                "{}",
                serde_json::json!({"id": format!("r{i}"), "vector": r})
            )
            .unwrap();
            writeln!(f).unwrap();
        }
        drop(f);

        for path in [&fvecs, &npy, &jsonl] {
            let (batches, n) = collect(path, 2).unwrap();
            assert_eq!(n, 5, "{path:?}");
            assert_eq!(
                batches.iter().map(Vec::len).collect::<Vec<_>>(),
                vec![2, 2, 1]
            );
            let all: Vec<VectorRecord> = batches.into_iter().flatten().collect();
            for (i, r) in all.iter().enumerate() {
                assert_eq!(r.id, format!("r{i}"));
                assert_eq!(r.vector, rows[i]);
            }
        }
    }

    #[test]
    fn broken_files_are_errors_with_a_location() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("b.jsonl");
        std::fs::write(&jsonl, "{\"id\":\"a\",\"vector\":[1]}\n{\"id\":\"b\"}\n").unwrap();
        let err = collect(&jsonl, 10).unwrap_err().to_string();
        assert!(err.starts_with("line 2:"), "{err}");
        let fvecs = dir.path().join("b.fvecs");
        std::fs::write(&fvecs, [3u8, 0, 0, 0, 1, 2]).unwrap();
        assert!(collect(&fvecs, 10).is_err());
        assert!(Format::from_path(Path::new("x.csv")).is_err());
    }
}
