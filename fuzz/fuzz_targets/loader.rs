//! Fuzzes the adapter loader: safetensors header and offsets, key classification, the PEFT and
//! kohya readers and the config parser (see `lora_lego::io::probe_untrusted`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lora_lego::io::probe_untrusted(data);
});
