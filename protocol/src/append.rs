//! Appending short byte strings without a `memcpy` call.

/// Appends `bytes` to `out`: short ones (up to 32 bytes: a logger name, a
/// number, the literals of a format) with a few inline moves instead of a
/// call to `memcpy`, whose call and dispatch cost more than the copy; long
/// ones with `extend_from_slice`. Used where records are built or
/// formatted piece by piece (the client's message, the hub's formatter).
#[inline(always)]
pub fn append_short(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > 32 || out.capacity() - out.len() < 32 {
        out.extend_from_slice(bytes);
        return;
    }
    let len = out.len();
    let src = bytes.as_ptr();
    // SAFETY: at least 32 bytes of spare capacity; every read below lies
    // within `bytes` (the overlapping head/tail moves of a small memcpy);
    // the first `n` spare bytes are written before the length grows.
    unsafe {
        let dst = out.as_mut_ptr().add(len);
        if n >= 16 {
            let a = std::ptr::read_unaligned(src.cast::<[u8; 16]>());
            let b = std::ptr::read_unaligned(src.add(n - 16).cast::<[u8; 16]>());
            std::ptr::write_unaligned(dst.cast::<[u8; 16]>(), a);
            std::ptr::write_unaligned(dst.add(n - 16).cast::<[u8; 16]>(), b);
        } else if n >= 8 {
            let a = std::ptr::read_unaligned(src.cast::<u64>());
            let b = std::ptr::read_unaligned(src.add(n - 8).cast::<u64>());
            std::ptr::write_unaligned(dst.cast::<u64>(), a);
            std::ptr::write_unaligned(dst.add(n - 8).cast::<u64>(), b);
        } else if n >= 4 {
            let a = std::ptr::read_unaligned(src.cast::<u32>());
            let b = std::ptr::read_unaligned(src.add(n - 4).cast::<u32>());
            std::ptr::write_unaligned(dst.cast::<u32>(), a);
            std::ptr::write_unaligned(dst.add(n - 4).cast::<u32>(), b);
        } else if n > 0 {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
        out.set_len(len + n);
    }
}
