//! Cache hints for readers that jump around memory (a block being merged, a head being cut in
//! trace order): ask for the next item's bytes before working on the current one.

/// The size of a cache line on the processors this runs on.
const LINE: usize = 64;

/// A hint that the cache line holding `address` is read soon.
#[inline(always)]
fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address, and changes nothing but the
    // caches; SSE, which it needs, is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// A hint that the first `lines` cache lines of `items` are read soon (the processor goes on
/// by itself after that).
#[inline]
pub(crate) fn prefetch_lines<T>(items: &[T], lines: usize) {
    let start = items.as_ptr().cast::<u8>();
    let bytes = std::mem::size_of_val(items);
    for line in 0..bytes.div_ceil(LINE).min(lines) {
        prefetch(start.wrapping_add(line * LINE));
    }
}
