//! Any bytes as an icon: crushed CgBI or plain PNG. What comes out is a standard PNG of the
//! dimensions the input declares, within the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otaship_ipa::png::{dimensions, is_crushed, normalize};

const MAX_DIMENSION: u32 = 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(normalized) = normalize(data, MAX_DIMENSION) else { return };
    let size = (normalized.width, normalized.height);
    assert!(size.0 <= MAX_DIMENSION && size.1 <= MAX_DIMENSION, "{size:?}");
    assert_eq!(dimensions(data), Some(size), "the declared dimensions");
    assert_eq!(normalized.crushed, is_crushed(data));
    assert!(!is_crushed(&normalized.png));
    assert_eq!(dimensions(&normalized.png), Some(size), "the output's dimensions");
    if normalized.crushed {
        // What it serves is itself a sound plain PNG of the same size.
        let again = normalize(&normalized.png, MAX_DIMENSION).expect("the normalized PNG reads back");
        assert_eq!((again.width, again.height), size);
        assert!(!again.crushed);
    }
});
