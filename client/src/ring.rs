//! A single-producer, single-consumer byte ring: one per logging thread.
//!
//! The producer (the thread calling `log!`) encodes a record straight into
//! the ring and publishes it by advancing `head`; the sender thread reads
//! whole entries and advances `tail`. Neither side ever blocks or wakes the
//! other: the sender polls (see `sender.rs`), which keeps futex wake-ups,
//! slow at the tail, off the caller's path
//! (docs/BENCHMARKS.md#waiting-without-waking).
//!
//! Entry layout: a little-endian `u32` length, the record bytes, padding to
//! 8 bytes. A length of `WRAP` means "the rest of the ring is unused; the
//! next entry starts at offset 0".

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const WRAP: u32 = u32::MAX;
const ALIGN: usize = 8;

/// Keeps the producer's and the consumer's counters on separate cache lines.
#[repr(align(128))]
struct Padded<T>(T);

pub(crate) struct Ring {
    buf: Box<[UnsafeCell<u8>]>,
    mask: usize,
    /// Bytes ever published (written by the producer only).
    head: Padded<AtomicU64>,
    /// Bytes ever consumed (written by the consumer only).
    tail: Padded<AtomicU64>,
    /// Set when the producing thread has exited; the sender forgets the ring
    /// once it is also empty.
    closed: AtomicBool,
    /// The largest entry accepted: half the ring, and never more than fits a
    /// frame, so one entry can always leave the ring.
    max_entry: usize,
}

// SAFETY: the producer only writes bytes in [head, tail + cap) and the
// consumer only reads bytes in [tail, head); the atomics order the handover
// (Release on publish, Acquire on observe), so no byte is accessed by both
// sides at once.
unsafe impl Sync for Ring {}
unsafe impl Send for Ring {}

/// Why a push did not happen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// Not enough free space now; try again after the sender drains.
    Full,
    /// The entry can never fit, even in an empty ring.
    TooLarge,
}

fn align_up(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

impl Ring {
    /// A ring of `capacity` bytes, rounded up to a power of two (≥ 4 KiB).
    pub(crate) fn new(capacity: usize) -> Ring {
        let cap = capacity.max(4096).next_power_of_two();
        let buf = (0..cap).map(|_| UnsafeCell::new(0u8)).collect::<Vec<_>>().into_boxed_slice();
        Ring {
            buf,
            mask: cap - 1,
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
            closed: AtomicBool::new(false),
            max_entry: (cap / 2).min(logfunnel_protocol::MAX_FRAME_BYTES / 2),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    fn ptr(&self, offset: usize) -> *mut u8 {
        self.buf[offset].get()
    }

    /// Producer side. `encode` writes the record into the slice it is given
    /// and returns the bytes used, or `None` if the slice is too small; it
    /// may be called twice (once at the end of the ring, once at its start).
    /// `size_hint` is called only on failure, to tell "full" from "never fits".
    pub(crate) fn try_push(
        &self,
        mut encode: impl FnMut(&mut [u8]) -> Option<usize>,
        size_hint: impl FnOnce() -> usize,
    ) -> Result<(), PushError> {
        let cap = self.capacity();
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Acquire);
        let free = cap - (head - tail) as usize;
        let pos = head as usize & self.mask;
        let contig = cap - pos; // ≥ 8: positions are 8-aligned
        let here = contig.min(free);
        if here > 4 {
            // SAFETY: [pos, pos + here) is free space owned by the producer.
            let slot = unsafe { std::slice::from_raw_parts_mut(self.ptr(pos + 4), here - 4) };
            if let Some(n) = encode(slot) {
                if n + 4 > self.max_entry {
                    return Err(PushError::TooLarge);
                }
                self.publish(head, pos, n, 0);
                return Ok(());
            }
        }
        // Not enough room before the end: skip to the start if that helps.
        if contig < free {
            let at_start = free - contig;
            if at_start > 4 {
                // SAFETY: [0, at_start) is free space owned by the producer.
                let slot = unsafe { std::slice::from_raw_parts_mut(self.ptr(4), at_start - 4) };
                if let Some(n) = encode(slot) {
                    if n + 4 > self.max_entry {
                        return Err(PushError::TooLarge);
                    }
                    // SAFETY: the wrap marker goes at pos, still free space.
                    unsafe { (self.ptr(pos) as *mut [u8; 4]).write_unaligned(WRAP.to_le_bytes()) };
                    self.publish(head, 0, n, contig);
                    return Ok(());
                }
            }
        }
        if size_hint() + 4 > self.max_entry { Err(PushError::TooLarge) } else { Err(PushError::Full) }
    }

    fn publish(&self, head: u64, pos: usize, n: usize, skipped: usize) {
        // SAFETY: the length header sits in free space owned by the producer.
        unsafe { (self.ptr(pos) as *mut [u8; 4]).write_unaligned((n as u32).to_le_bytes()) };
        let used = skipped + align_up(4 + n);
        self.head.0.store(head + used as u64, Ordering::Release);
        // Warm the cache lines the next entry will be written to: after a
        // pause they are cold, and the miss would land in the next log call.
        #[cfg(target_arch = "x86_64")]
        {
            let next = (head as usize + used) & self.mask;
            for line in 0..4 {
                let at = (next + line * 64) & self.mask;
                // SAFETY: a prefetch is a hint; the address is inside the ring.
                unsafe {
                    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                        self.ptr(at) as *const i8
                    )
                };
            }
        }
    }

    /// Consumer side: calls `f` with each published entry, oldest first,
    /// until `f` returns false or the ring is empty; frees what was read.
    /// Returns the number of entries read.
    pub(crate) fn drain(&self, mut f: impl FnMut(&[u8]) -> bool) -> usize {
        let head = self.head.0.load(Ordering::Acquire);
        let mut tail = self.tail.0.load(Ordering::Relaxed);
        let mut n = 0;
        while tail < head {
            let pos = tail as usize & self.mask;
            // SAFETY: [tail, head) was published by the producer.
            let len = u32::from_le_bytes(unsafe { (self.ptr(pos) as *const [u8; 4]).read_unaligned() });
            if len == WRAP {
                tail += (self.capacity() - pos) as u64;
                continue;
            }
            let len = len as usize;
            // SAFETY: as above; the entry lies within the published range.
            let entry = unsafe { std::slice::from_raw_parts(self.ptr(pos + 4) as *const u8, len) };
            if !f(entry) {
                break;
            }
            tail += align_up(4 + len) as u64;
            n += 1;
        }
        self.tail.0.store(tail, Ordering::Release);
        n
    }

    /// Bytes the producer could write now.
    pub(crate) fn free(&self) -> usize {
        self.capacity() - (self.head.0.load(Ordering::Relaxed) - self.tail.0.load(Ordering::Acquire)) as usize
    }

    /// Bytes published so far (a position a flush can wait for).
    pub(crate) fn head(&self) -> u64 {
        self.head.0.load(Ordering::Acquire)
    }

    /// Bytes consumed so far.
    pub(crate) fn tail(&self) -> u64 {
        self.tail.0.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tail() >= self.head()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn push_bytes(r: &Ring, data: &[u8]) -> Result<(), PushError> {
        r.try_push(
            |slot| {
                (slot.len() >= data.len()).then(|| {
                    slot[..data.len()].copy_from_slice(data);
                    data.len()
                })
            },
            || data.len(),
        )
    }

    #[test]
    fn entries_come_out_in_order_across_wraps() {
        let r = Ring::new(4096);
        let mut next_out = 0u32;
        for i in 0u32..10_000 {
            let len = (i as usize * 7) % 300 + 1;
            let data = vec![(i % 251) as u8; len];
            while push_bytes(&r, &data) == Err(PushError::Full) {
                r.drain(|e| {
                    assert_eq!(e.len(), (next_out as usize * 7) % 300 + 1);
                    assert!(e.iter().all(|&b| b == (next_out % 251) as u8));
                    next_out += 1;
                    true
                });
            }
        }
        r.drain(|_| {
            next_out += 1;
            true
        });
        assert_eq!(next_out, 10_000);
        assert!(r.is_empty());
    }

    #[test]
    fn an_entry_larger_than_half_the_ring_is_refused() {
        let r = Ring::new(4096);
        assert_eq!(push_bytes(&r, &[1u8; 3000]), Err(PushError::TooLarge));
        assert_eq!(push_bytes(&r, &[1u8; 1000]), Ok(()));
    }

    #[test]
    fn a_consumer_thread_sees_every_entry_exactly_once() {
        let r = Arc::new(Ring::new(8192));
        let total = 200_000u32;
        let consumer = {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                let mut expect = 0u32;
                while expect < total {
                    r.drain(|e| {
                        assert_eq!(u32::from_le_bytes(e[..4].try_into().unwrap()), expect);
                        assert_eq!(e.len(), 4 + (expect as usize % 50));
                        expect += 1;
                        true
                    });
                    std::thread::yield_now();
                }
            })
        };
        for i in 0..total {
            let mut data = i.to_le_bytes().to_vec();
            data.resize(4 + i as usize % 50, 0xAB);
            while push_bytes(&r, &data).is_err() {
                std::thread::yield_now();
            }
        }
        consumer.join().unwrap();
    }
}
