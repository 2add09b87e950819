#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dat_mirror_fuzz::run(
    dat_mirror::fuzzing::engine_proof_apply,
    data
));
