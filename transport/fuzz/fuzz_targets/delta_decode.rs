//! Arbitrary bytes as a delta batch, raw or zstd: decoding must return an error or
//! entries that re-encode to an equivalent batch, and never panic or blow up memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use needle_transport::DeltaCodec;

fuzz_target!(|data: &[u8]| {
    let Some((&flag, bytes)) = data.split_first() else {
        return;
    };
    let codec = DeltaCodec {
        max_decoded: 1 << 20,
        ..DeltaCodec::default()
    };
    if let Ok(entries) = codec.decode(bytes, flag & 1 == 1) {
        let again = codec.encode(&entries);
        let decoded = codec
            .decode(&again.bytes, again.compressed)
            .expect("own encoding decodes");
        assert_eq!(decoded.len(), entries.len());
    }
});
