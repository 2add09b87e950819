//! Shared by every fuzz target: the allocation limit (any single allocation above
//! `$DAT_MIRROR_FUZZ_MALLOC_LIMIT_MB`, default 128 MiB, aborts: an unbounded allocation
//! from a length field is a crash even if the pages are never touched), and `run`, which
//! every target calls so that this crate, and so the allocator, is linked in.

#[global_allocator]
static ALLOC: dat_mirror::fuzzing::LimitedAlloc =
    dat_mirror::fuzzing::LimitedAlloc::new(dat_mirror::fuzzing::MALLOC_LIMIT_ENV, 128);

/// Runs one fuzz entry point of `dat_mirror::fuzzing` on one input.
pub fn run(target: fn(&[u8]), data: &[u8]) {
    target(data)
}
