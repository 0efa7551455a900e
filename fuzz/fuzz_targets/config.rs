//! The config parser and validator on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux::catalog::Catalog;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Catalog::from_json(&text) {
        assert!(!e.0.is_empty());
        let _ = e.to_string();
    }
});
