//! Response bodies with a byte budget (`--max-response-bytes`).
//!
//! Results are capped by count (`k`, queries × k), but a count says little about
//! bytes: 10,000 hits with 64 KiB of metadata each, or with 65,536-dimension vectors,
//! are gigabytes. Answers are serialized straight from the hits (no intermediate
//! `serde_json::Value` tree, which costs several times the text) into a buffer that
//! refuses to grow past the budget; a request whose answer would not fit gets
//! `RESPONSE_TOO_LARGE` instead of exhausting the node.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// A serialized JSON body.
pub struct JsonBody(pub Vec<u8>);

impl IntoResponse for JsonBody {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// `value` as JSON, or `RESPONSE_TOO_LARGE` once it passes `max` bytes (nothing
/// beyond `max` is ever allocated).
pub fn to_json_within<T: Serialize + ?Sized>(value: &T, max: usize) -> Result<JsonBody, Error> {
    let mut out = Limited {
        buf: Vec::new(),
        max,
        over: false,
    };
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => Ok(JsonBody(out.buf)),
        Err(_) if out.over => Err(Error::ResponseTooLarge {
            bytes: max as u64 + 1,
            max: max as u64,
        }),
        Err(e) => Err(Error::Corrupt(format!("serializing a response: {e}"))),
    }
}

/// Refuses before any work when even the smallest possible answer is over budget:
/// `hits` hits of at least `per_hit` bytes each.
pub fn ensure_fits(hits: usize, per_hit: usize, max: usize) -> Result<(), Error> {
    let least = hits.saturating_mul(per_hit);
    if least > max {
        return Err(Error::ResponseTooLarge {
            bytes: least as u64,
            max: max as u64,
        });
    }
    Ok(())
}

struct Limited {
    buf: Vec<u8>,
    max: usize,
    over: bool,
}

impl std::io::Write for Limited {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > self.max {
            self.over = true;
            return Err(std::io::Error::other("response budget exceeded"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_within_the_budget_pass_and_larger_ones_are_refused() {
        let small = vec![1u32; 10];
        assert_eq!(
            to_json_within(&small, 100).unwrap().0,
            b"[1,1,1,1,1,1,1,1,1,1]"
        );
        let big = vec![1u32; 1000];
        let err = to_json_within(&big, 100).err().unwrap();
        assert_eq!(err.code(), "RESPONSE_TOO_LARGE");
        assert!(ensure_fits(10, 10, 100).is_ok());
        assert_eq!(
            ensure_fits(11, 10, 100).unwrap_err().code(),
            "RESPONSE_TOO_LARGE"
        );
        assert!(ensure_fits(usize::MAX, 2, 100).is_err());
    }
}
