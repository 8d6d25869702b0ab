//! Raw bytes → the unpickler that reads Python's SocketHandler records.
//! Every input must end in a value or a typed error: no panic, no abort,
//! no allocation beyond a small multiple of the input (run with
//! -malloc_limit_mb), and rendering a shared or cyclic value stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logfunnel_protocol::pickle::loads;
use logfunnel_protocol::python::record_from_pickle;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = loads(data) {
        assert!(p.repr(p.root_id(), 4096).len() <= 4096);
    }
    let _ = record_from_pickle(data);
});
