//! Arbitrary bytes, fed to the frame decoder in arbitrary pieces: it must never
//! panic, never return a body over the maximum, and stay failed after an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use needle_transport::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let max = 4096;
    let mut decoder = FrameDecoder::new(max);
    let step = usize::from(split).max(1);
    let mut failed = false;
    for piece in bytes.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(!failed);
                    assert!(frame.body.len() <= max as usize);
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    assert!(decoder.next_frame().is_err());
                    break;
                }
            }
        }
    }
});
