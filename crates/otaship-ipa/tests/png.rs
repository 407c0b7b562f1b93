//! The CgBI decoder against real crushed icons (pixel digests from an independent decoder,
//! `reference/cgbi_reference.py`) and against synthetic crushed images of every colour type,
//! bit depth, filter and interlace method, built by a small encoder in this file.
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use std::io::Write;

use otaship_ipa::png::{decode_crushed, is_crushed, normalize};
use otaship_ipa::zip::Archive;
use otaship_ipa::{FileSource, Limits};
use sha2::{Digest, Sha256};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/third-party/ipa/");

/// Decodes a standard PNG to 8-bit RGBA with the `png` crate, to check our output.
fn decode_standard(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(
        png::Transformations::EXPAND | png::Transformations::ALPHA | png::Transformations::STRIP_16,
    );
    let mut reader = decoder.read_info().expect("standard PNG");
    let mut buffer = vec![0; reader.output_buffer_size().expect("size")];
    let frame = reader.next_frame(&mut buffer).expect("frame");
    buffer.truncate(frame.buffer_size());
    let rgba = match frame.color_type {
        png::ColorType::Rgba => buffer,
        png::ColorType::GrayscaleAlpha => buffer.chunks(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
        other => panic!("unexpected colour type {other:?}"),
    };
    (frame.width, frame.height, rgba)
}

#[test]
fn real_crushed_icons_decode_to_the_reference_pixels() {
    let table = include_str!("reference/cgbi_icons.tsv");
    let mut checked = 0;
    for line in table.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [file, entry, width, height, digest] = fields[..] else {
            panic!("bad reference line {line:?}");
        };
        let source = FileSource::new(std::fs::File::open(format!("{FIXTURES}{file}")).expect("fixture")).expect("open");
        let archive = Archive::open(&source, &Limits::default()).expect("archive");
        let index = archive.find(entry.as_bytes()).expect("entry").index;
        let bytes = archive.read(index, 1 << 20, "an icon").expect("read");
        assert!(is_crushed(&bytes), "{file} {entry} is crushed");
        let normalized = normalize(&bytes, 2048).expect("decodes");
        assert!(normalized.crushed);
        assert!(!is_crushed(&normalized.png));
        let (w, h, rgba) = decode_standard(&normalized.png);
        assert_eq!((w.to_string(), h.to_string()), (width.to_owned(), height.to_owned()), "{file} {entry}");
        let actual: String = Sha256::digest(&rgba).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(actual, digest, "{file} {entry}: pixels differ from the reference decoder");
        checked += 1;
    }
    assert_eq!(checked, 40, "every crushed icon in the fixtures is checked");
}

#[test]
fn plain_pngs_pass_through_unchanged() {
    let pixels: Vec<u8> = (0..16 * 16 * 4).map(|i| (i * 7 % 256) as u8).collect();
    let plain = otaship_ipa::png::encode_rgba(16, 16, &pixels).expect("encode");
    let normalized = normalize(&plain, 64).expect("plain");
    assert!(!normalized.crushed);
    assert_eq!(normalized.png, plain);
    assert_eq!((normalized.width, normalized.height), (16, 16));
    assert!(normalize(&plain, 8).is_err(), "too large for the limit");
}

/// A test image: straight-alpha RGBA with opaque, transparent and partial pixels.
fn test_image(width: u32, height: u32) -> Vec<[u8; 4]> {
    (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            let alpha = match (x + y) % 5 {
                0 => 0,
                1 => 255,
                2 => 128,
                3 => 37,
                _ => 255,
            };
            [(x * 37 % 256) as u8, (y * 53 % 256) as u8, ((x ^ y) * 29 % 256) as u8, alpha]
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
struct Format {
    colour_type: u8,
    bit_depth: u8,
    interlaced: bool,
}

impl Format {
    fn channels(self) -> usize {
        match self.colour_type {
            2 => 3,
            4 => 2,
            6 => 4,
            _ => 1,
        }
    }
}

/// What a pixel becomes in the given format (the precision the format keeps), as straight
/// RGBA, plus the samples to store, with crushed images' BGR order and premultiplication.
fn samples(format: Format, pixel: [u8; 4], palette: &[[u8; 4]], crushed: bool) -> (Vec<u16>, [u8; 4]) {
    let premultiply = |c: u8, a: u8| if crushed { ((u32::from(c) * u32::from(a) + 127) / 255) as u8 } else { c };
    let max = (1u32 << format.bit_depth) - 1;
    let widen = |value: u8| -> u16 {
        if format.bit_depth == 16 { u16::from(value) * 257 } else { (u32::from(value) * max / 255) as u16 }
    };
    let narrow = |value: u16| -> u8 {
        if format.bit_depth == 16 { (value >> 8) as u8 } else { (u32::from(value) * 255 / max) as u8 }
    };
    match format.colour_type {
        0 => {
            let grey = widen(pixel[0]);
            (vec![grey], [narrow(grey), narrow(grey), narrow(grey), 255])
        }
        4 => {
            let [g, _, _, a] = pixel;
            let stored = premultiply(g, a);
            let shown = expected_unpremultiplied(stored, a, crushed);
            (vec![widen(stored), widen(a)], [shown, shown, shown, a])
        }
        2 => {
            let [r, g, b, _] = pixel;
            let order = if crushed { [b, g, r] } else { [r, g, b] };
            (order.iter().map(|&c| widen(c)).collect(), [r, g, b, 255])
        }
        3 => {
            let index = palette.iter().position(|entry| entry == &pixel).expect("in palette");
            let entry = palette[index];
            let (r, g, b) = if crushed {
                let stored =
                    [premultiply(entry[0], entry[3]), premultiply(entry[1], entry[3]), premultiply(entry[2], entry[3])];
                (
                    expected_unpremultiplied(stored[0], entry[3], crushed),
                    expected_unpremultiplied(stored[1], entry[3], crushed),
                    expected_unpremultiplied(stored[2], entry[3], crushed),
                )
            } else {
                (entry[0], entry[1], entry[2])
            };
            (vec![index as u16], [r, g, b, entry[3]])
        }
        _ => {
            let [r, g, b, a] = pixel;
            let stored = [premultiply(r, a), premultiply(g, a), premultiply(b, a)];
            let order = if crushed { [stored[2], stored[1], stored[0]] } else { stored };
            let shown = [0, 1, 2].map(|i| expected_unpremultiplied(stored[i], a, crushed));
            let mut values: Vec<u16> = order.iter().map(|&c| widen(c)).collect();
            values.push(widen(a));
            (values, [shown[0], shown[1], shown[2], a])
        }
    }
}

/// Un-premultiplication as the spec states it: round to nearest, clamp at 255.
fn expected_unpremultiplied(stored: u8, alpha: u8, crushed: bool) -> u8 {
    if !crushed || alpha == 0 || alpha == 255 {
        return stored;
    }
    ((u32::from(stored) * 255 + u32::from(alpha) / 2) / u32::from(alpha)).min(255) as u8
}

const ADAM7: [(u32, u32, u32, u32); 7] =
    [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

/// Encodes an image in `format`, crushed or standard, cycling through all five filters.
fn encode(
    format: Format,
    width: u32,
    height: u32,
    image: &[[u8; 4]],
    palette: &[[u8; 4]],
    crushed: bool,
) -> (Vec<u8>, Vec<u8>) {
    let passes: Vec<(u32, u32, u32, u32)> = if format.interlaced { ADAM7.to_vec() } else { vec![(0, 0, 1, 1)] };
    let bits_per_pixel = format.channels() * usize::from(format.bit_depth);
    let stride = bits_per_pixel.div_ceil(8).max(1);
    let mut raw = Vec::new();
    let mut filter = 0u8;
    let mut expected = vec![0u8; (width * height * 4) as usize];
    for (x0, y0, dx, dy) in passes {
        let pass_width = width.saturating_sub(x0).div_ceil(dx);
        let pass_height = height.saturating_sub(y0).div_ceil(dy);
        if pass_width == 0 || pass_height == 0 {
            continue;
        }
        let row_bytes = (pass_width as usize * bits_per_pixel).div_ceil(8);
        let mut previous = vec![0u8; row_bytes];
        for row in 0..pass_height {
            let y = y0 + row * dy;
            let mut bits = BitWriter::default();
            for column in 0..pass_width {
                let x = x0 + column * dx;
                let (values, shown) = samples(format, image[(y * width + x) as usize], palette, crushed);
                let at = ((y * width + x) * 4) as usize;
                expected[at..at + 4].copy_from_slice(&shown);
                for value in values {
                    bits.push(value, format.bit_depth);
                }
            }
            let line = bits.finish(row_bytes);
            raw.push(filter);
            raw.extend(apply_filter(filter, stride, &previous, &line));
            previous = line;
            filter = (filter + 1) % 5;
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    if crushed {
        chunk(&mut png, b"CgBI", &[0x50, 0x00, 0x20, 0x02]);
    }
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[format.bit_depth, format.colour_type, 0, 0, u8::from(format.interlaced)]);
    chunk(&mut png, b"IHDR", &header);
    if format.colour_type == 3 {
        let entries: Vec<u8> = palette
            .iter()
            .flat_map(|e| {
                let premultiply =
                    |c: u8| if crushed { ((u32::from(c) * u32::from(e[3]) + 127) / 255) as u8 } else { c };
                if crushed { [premultiply(e[2]), premultiply(e[1]), premultiply(e[0])] } else { [e[0], e[1], e[2]] }
            })
            .collect();
        chunk(&mut png, b"PLTE", &entries);
        let alphas: Vec<u8> = palette.iter().map(|e| e[3]).collect();
        chunk(&mut png, b"tRNS", &alphas);
    }
    let compressed = if crushed {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&raw).expect("deflate");
        encoder.finish().expect("deflate")
    } else {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&raw).expect("deflate");
        encoder.finish().expect("deflate")
    };
    // Split the data over two IDAT chunks, as real encoders do.
    let middle = compressed.len() / 2;
    chunk(&mut png, b"IDAT", &compressed[..middle]);
    chunk(&mut png, b"IDAT", &compressed[middle..]);
    chunk(&mut png, b"IEND", &[]);
    (png, expected)
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    fn push(&mut self, value: u16, depth: u8) {
        match depth {
            16 => self.bytes.extend_from_slice(&value.to_be_bytes()),
            8 => self.bytes.push(value as u8),
            _ => {
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let shift = 8 - usize::from(depth) - self.bits % 8;
                if let Some(last) = self.bytes.last_mut() {
                    *last |= (value as u8) << shift;
                }
                self.bits += usize::from(depth);
                return;
            }
        }
        self.bits += usize::from(depth);
    }

    fn finish(mut self, len: usize) -> Vec<u8> {
        self.bytes.resize(len, 0);
        self.bytes
    }
}

fn apply_filter(filter: u8, stride: usize, previous: &[u8], line: &[u8]) -> Vec<u8> {
    (0..line.len())
        .map(|i| {
            let left = if i >= stride { line[i - stride] } else { 0 };
            let above = previous[i];
            let upper_left = if i >= stride { previous[i - stride] } else { 0 };
            let predictor = match filter {
                0 => 0,
                1 => left,
                2 => above,
                3 => ((u16::from(left) + u16::from(above)) / 2) as u8,
                _ => {
                    let p = i16::from(left) + i16::from(above) - i16::from(upper_left);
                    let (pa, pb, pc) =
                        ((p - i16::from(left)).abs(), (p - i16::from(above)).abs(), (p - i16::from(upper_left)).abs());
                    if pa <= pb && pa <= pc {
                        left
                    } else if pb <= pc {
                        above
                    } else {
                        upper_left
                    }
                }
            };
            line[i].wrapping_sub(predictor)
        })
        .collect()
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(kind);
    hasher.update(data);
    png.extend_from_slice(&hasher.finalize().to_be_bytes());
}

#[test]
fn synthetic_crushed_images_of_every_format_decode_exactly() {
    let formats = [
        (0, 1),
        (0, 2),
        (0, 4),
        (0, 8),
        (0, 16),
        (2, 8),
        (2, 16),
        (3, 1),
        (3, 2),
        (3, 4),
        (3, 8),
        (4, 8),
        (4, 16),
        (6, 8),
        (6, 16),
    ];
    for (width, height) in [(1, 1), (3, 2), (13, 11), (33, 17)] {
        let image = test_image(width, height);
        for &(colour_type, bit_depth) in &formats {
            for interlaced in [false, true] {
                let format = Format { colour_type, bit_depth, interlaced };
                // Palette images use only as many colours as the depth allows.
                let palette: Vec<[u8; 4]> = {
                    let mut colours: Vec<[u8; 4]> = Vec::new();
                    for pixel in &image {
                        if !colours.contains(pixel) {
                            colours.push(*pixel);
                        }
                    }
                    colours.truncate(1 << bit_depth.min(8));
                    colours
                };
                let image: Vec<[u8; 4]> = if colour_type == 3 {
                    image.iter().map(|p| if palette.contains(p) { *p } else { palette[0] }).collect()
                } else {
                    image.clone()
                };
                // The standard form, checked with the png crate, proves the encoder right...
                let (standard, standard_expected) = encode(format, width, height, &image, &palette, false);
                let (w, h, decoded) = decode_standard(&standard);
                assert_eq!((w, h), (width, height));
                assert_eq!(decoded, standard_expected, "test encoder, {format:?} {width}x{height}");
                // ...and the crushed form must decode to the same image, un-premultiplied.
                let (crushed, crushed_expected) = encode(format, width, height, &image, &palette, true);
                assert!(is_crushed(&crushed));
                let decoded = decode_crushed(&crushed, 64).expect("decodes");
                assert_eq!(decoded.rgba, crushed_expected, "crushed, {format:?} {width}x{height}");
                let normalized = normalize(&crushed, 64).expect("normalizes");
                let (_, _, again) = decode_standard(&normalized.png);
                assert_eq!(again, crushed_expected);
            }
        }
    }
}

#[test]
fn hostile_crushed_images_are_refused() {
    let image = test_image(8, 8);
    let format = Format { colour_type: 6, bit_depth: 8, interlaced: false };
    let (good, _) = encode(format, 8, 8, &image, &[], true);
    assert!(decode_crushed(&good, 64).is_ok());
    // Too large for the limit, from IHDR alone.
    assert!(decode_crushed(&good, 4).is_err());
    // Cut short.
    for cut in [9, 20, 40, good.len() - 20] {
        assert!(normalize(&good[..cut], 64).is_err(), "cut at {cut}");
    }
    // Dimensions that lie: IHDR says 60000x60000 with tiny data.
    let mut huge = good.clone();
    huge[24..28].copy_from_slice(&60_000u32.to_be_bytes());
    huge[28..32].copy_from_slice(&60_000u32.to_be_bytes());
    assert!(decode_crushed(&huge, 2048).is_err());
    // Data that inflates past the image size.
    let mut long_raw = vec![0u8; 8 * (1 + 8 * 4) + 10_000];
    long_raw[0] = 0;
    assert!(decode_crushed(&crushed_8x8_rgba(&long_raw), 64).is_err());
    // A bad filter byte.
    let mut raw = vec![0u8; 8 * (1 + 8 * 4)];
    raw[0] = 9;
    assert!(decode_crushed(&crushed_8x8_rgba(&raw), 64).is_err());
}

/// A crushed 8x8 RGBA PNG around the given (unchecked) filtered image data.
fn crushed_8x8_rgba(raw: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(raw).expect("deflate");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"CgBI", &[0x50, 0, 0x20, 2]);
    chunk(&mut png, b"IHDR", &[0, 0, 0, 8, 0, 0, 0, 8, 8, 6, 0, 0, 0]);
    chunk(&mut png, b"IDAT", &encoder.finish().expect("deflate"));
    chunk(&mut png, b"IEND", &[]);
    png
}
