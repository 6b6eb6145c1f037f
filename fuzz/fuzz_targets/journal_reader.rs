#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| litefs::fuzz::journal_reader(data));
