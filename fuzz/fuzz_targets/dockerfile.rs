//! The Dockerfile reader of `mab check`: any bytes, no panic, and every span it reports lies
//! on character boundaries inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let d = mab::dockerfile::parse(&text);
    for f in &d.froms {
        assert!(text.get(f.image_span.clone()).is_some());
    }
    for a in &d.args {
        assert!(text.get(a.span.clone()).is_some());
    }
    for f in &d.froms {
        let _ = mab::dockerfile::repository(&f.image);
    }
});
