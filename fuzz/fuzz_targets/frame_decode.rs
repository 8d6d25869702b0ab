//! Raw bytes → the hub's and the client's decoders. Every input must end in
//! a value or a typed error: no panic, no abort, no allocation beyond the
//! input's size (run with -malloc_limit_mb).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logfunnel_protocol::{
    Preamble, decode_client_frame, decode_client_frame_view, decode_hub_frame, read_frame,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_client_frame(data);
    let _ = decode_client_frame_view(data);
    let _ = decode_hub_frame(data);
    if let Ok(b) = <[u8; 8]>::try_from(data.get(..8).unwrap_or(&[])) {
        let _ = Preamble::parse(b);
    }
    // The streaming reader: length prefix first, then the payload.
    let mut r = data;
    let mut buf = Vec::new();
    while let Ok(true) = read_frame(&mut r, &mut buf) {
        let _ = decode_client_frame_view(&buf);
    }
});
