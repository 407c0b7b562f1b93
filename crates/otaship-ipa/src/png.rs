//! App icons: Apple's crushed "CgBI" PNGs turned into standard PNGs that browsers show.
//!
//! A crushed PNG has a `CgBI` chunk before `IHDR`, raw DEFLATE image data (no zlib header),
//! blue and red swapped, and colours premultiplied by alpha. No crate decodes it, so this
//! module does: it inflates under a size computed from `IHDR`, undoes all five PNG filters,
//! walks the seven Adam7 passes of interlaced images, expands every colour type (palettes
//! included) to RGBA, swaps channels back, un-premultiplies, and encodes a standard PNG.
//! Plain PNGs are checked by decoding them and passed through unchanged.

use std::fmt;

/// Why an image could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PngError(pub String);

impl fmt::Display for PngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PngError {}

fn error(message: impl Into<String>) -> PngError {
    PngError(message.into())
}

/// A standard PNG, ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPng {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether the source was a crushed CgBI PNG.
    pub crushed: bool,
    /// The standard PNG bytes.
    pub png: Vec<u8>,
}

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Whether `bytes` are a crushed PNG (the `CgBI` chunk comes first).
pub fn is_crushed(bytes: &[u8]) -> bool {
    bytes.starts_with(SIGNATURE) && bytes.get(12..16) == Some(b"CgBI")
}

/// Reads the width and height from `IHDR` without decoding (crushed or not).
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let chunks = Chunks::new(bytes).ok()?;
    for chunk in chunks {
        let (kind, data) = chunk.ok()?;
        if &kind == b"IHDR" {
            return Some((be32(data, 0)?, be32(data, 4)?));
        }
    }
    None
}

/// Turns a PNG (crushed or not) into a standard PNG no larger than `max_dimension` a side.
pub fn normalize(bytes: &[u8], max_dimension: u32) -> Result<NormalizedPng, PngError> {
    if !bytes.starts_with(SIGNATURE) {
        return Err(error("not a PNG file"));
    }
    if is_crushed(bytes) {
        let image = decode_crushed(bytes, max_dimension)?;
        let png = encode_rgba(image.width, image.height, &image.rgba)?;
        Ok(NormalizedPng { width: image.width, height: image.height, crushed: true, png })
    } else {
        let (width, height) = check_plain(bytes, max_dimension)?;
        Ok(NormalizedPng { width, height, crushed: false, png: bytes.to_vec() })
    }
}

/// Decoded pixels, 8-bit RGBA, straight (not premultiplied) alpha.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes, rows top to bottom.
    pub rgba: Vec<u8>,
}

/// Decodes a crushed PNG to RGBA.
pub fn decode_crushed(bytes: &[u8], max_dimension: u32) -> Result<RgbaImage, PngError> {
    let mut header = None;
    let mut palette: Option<&[u8]> = None;
    let mut transparency: Option<&[u8]> = None;
    let mut compressed = Vec::new();
    let mut premultiplied = true;
    let mut seen_end = false;
    for (position, chunk) in Chunks::new(bytes)?.enumerate() {
        let (kind, data) = chunk?;
        match &kind {
            b"CgBI" => {
                if position != 0 {
                    return Err(error("the CgBI chunk is not first"));
                }
                // The last byte is a CGImageAlphaInfo: 1 and 2 are the premultiplied kinds;
                // 5 and 6 mean there is no alpha to undo.
                if let Some(&alpha_info) = data.get(3) {
                    premultiplied = !matches!(alpha_info & 0x1f, 0 | 3 | 4 | 5 | 6);
                }
            }
            b"IHDR" => header = Some(Header::parse(data, max_dimension)?),
            b"PLTE" => palette = Some(data),
            b"tRNS" => transparency = Some(data),
            b"IDAT" => compressed.extend_from_slice(data),
            b"IEND" => {
                seen_end = true;
                break;
            }
            _ if kind[0].is_ascii_uppercase() => {
                return Err(error(format!("unknown critical chunk {:?}", String::from_utf8_lossy(&kind))));
            }
            _ => {}
        }
    }
    let header = header.ok_or_else(|| error("no IHDR chunk"))?;
    if !seen_end && compressed.is_empty() {
        return Err(error("no image data"));
    }
    let raw = inflate(&compressed, header.raw_size()?)?;
    let mut image = header.expand(&raw, palette, transparency)?;
    for pixel in image.rgba.chunks_exact_mut(4) {
        // Crushed images store BGR(A); palettes and grey are left as they are by the caller
        // (palette entries are swapped below, grey has no order).
        if header.colour_type == COLOUR_RGB || header.colour_type == COLOUR_RGBA {
            pixel.swap(0, 2);
        }
        if premultiplied {
            unpremultiply(pixel);
        }
    }
    Ok(image)
}

/// Undoes `c' = c * a / 255`, rounding to nearest and clamping.
fn unpremultiply(pixel: &mut [u8]) {
    let alpha = u32::from(pixel[3]);
    if alpha == 0 || alpha == 255 {
        return;
    }
    for channel in &mut pixel[..3] {
        let value = (u32::from(*channel) * 255 + alpha / 2) / alpha;
        *channel = value.min(255) as u8;
    }
}

const COLOUR_GREY: u8 = 0;
const COLOUR_RGB: u8 = 2;
const COLOUR_PALETTE: u8 = 3;
const COLOUR_GREY_ALPHA: u8 = 4;
const COLOUR_RGBA: u8 = 6;

/// Adam7: (x start, y start, x step, y step) of the seven passes.
const ADAM7: [(u32, u32, u32, u32); 7] =
    [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

#[derive(Debug, Clone, Copy)]
struct Header {
    width: u32,
    height: u32,
    bit_depth: u8,
    colour_type: u8,
    interlaced: bool,
}

impl Header {
    fn parse(data: &[u8], max_dimension: u32) -> Result<Self, PngError> {
        if data.len() != 13 {
            return Err(error("IHDR has the wrong length"));
        }
        let width = be32(data, 0).unwrap_or(0);
        let height = be32(data, 4).unwrap_or(0);
        if width == 0 || height == 0 {
            return Err(error("the image has no pixels"));
        }
        if width > max_dimension || height > max_dimension {
            return Err(error(format!("the image is {width}x{height}, larger than {max_dimension} pixels a side")));
        }
        let (bit_depth, colour_type) = (data[8], data[9]);
        let valid_depth = match colour_type {
            COLOUR_GREY => matches!(bit_depth, 1 | 2 | 4 | 8 | 16),
            COLOUR_PALETTE => matches!(bit_depth, 1 | 2 | 4 | 8),
            COLOUR_RGB | COLOUR_GREY_ALPHA | COLOUR_RGBA => matches!(bit_depth, 8 | 16),
            _ => false,
        };
        if !valid_depth {
            return Err(error(format!("colour type {colour_type} with bit depth {bit_depth} is not valid PNG")));
        }
        if data[10] != 0 || data[11] != 0 || data[12] > 1 {
            return Err(error("unknown compression, filter or interlace method"));
        }
        Ok(Header { width, height, bit_depth, colour_type, interlaced: data[12] == 1 })
    }

    fn channels(&self) -> usize {
        match self.colour_type {
            COLOUR_RGB => 3,
            COLOUR_GREY_ALPHA => 2,
            COLOUR_RGBA => 4,
            _ => 1,
        }
    }

    fn bits_per_pixel(&self) -> usize {
        self.channels() * usize::from(self.bit_depth)
    }

    /// Bytes of one filtered row of `width` pixels, without the filter byte.
    fn row_bytes(&self, width: u32) -> usize {
        (width as usize * self.bits_per_pixel()).div_ceil(8)
    }

    /// The passes as (x start, y start, x step, y step, width, height), empty ones skipped.
    fn passes(&self) -> Vec<(u32, u32, u32, u32, u32, u32)> {
        let table: &[(u32, u32, u32, u32)] = if self.interlaced { &ADAM7 } else { &[(0, 0, 1, 1)] };
        table
            .iter()
            .filter_map(|&(x0, y0, dx, dy)| {
                let width = (self.width.saturating_sub(x0)).div_ceil(dx);
                let height = (self.height.saturating_sub(y0)).div_ceil(dy);
                (width > 0 && height > 0).then_some((x0, y0, dx, dy, width, height))
            })
            .collect()
    }

    /// Exact size of the inflated image data.
    fn raw_size(&self) -> Result<usize, PngError> {
        self.passes().iter().try_fold(0usize, |total, pass| {
            let row = self.row_bytes(pass.4).checked_add(1);
            row.and_then(|row| row.checked_mul(pass.5 as usize))
                .and_then(|size| total.checked_add(size))
                .ok_or_else(|| error("the image is too large"))
        })
    }

    /// Unfilters every pass and expands the pixels to RGBA in place.
    fn expand(&self, raw: &[u8], palette: Option<&[u8]>, transparency: Option<&[u8]>) -> Result<RgbaImage, PngError> {
        let palette = match (self.colour_type, palette) {
            (COLOUR_PALETTE, None) => return Err(error("a palette image has no PLTE chunk")),
            (COLOUR_PALETTE, Some(entries)) => Some(Palette::new(entries, transparency)?),
            _ => None,
        };
        let pixel_count = self.width as usize * self.height as usize;
        let mut rgba = vec![0u8; pixel_count * 4];
        let filter_stride = self.bits_per_pixel().div_ceil(8).max(1);
        let mut at = 0usize;
        for (x0, y0, dx, dy, pass_width, pass_height) in self.passes() {
            let row_len = self.row_bytes(pass_width);
            let mut previous = vec![0u8; row_len];
            let mut current = vec![0u8; row_len];
            for row in 0..pass_height {
                let filter = raw[at];
                current.copy_from_slice(&raw[at + 1..at + 1 + row_len]);
                at += 1 + row_len;
                unfilter(filter, filter_stride, &previous, &mut current)?;
                let y = y0 + row * dy;
                for column in 0..pass_width {
                    let x = x0 + column * dx;
                    let out = (y as usize * self.width as usize + x as usize) * 4;
                    let pixel = self.pixel(&current, column as usize, palette.as_ref(), transparency);
                    rgba[out..out + 4].copy_from_slice(&pixel);
                }
                std::mem::swap(&mut previous, &mut current);
            }
        }
        Ok(RgbaImage { width: self.width, height: self.height, rgba })
    }

    /// Raw sample `index` (a channel of a pixel, or a whole sub-byte pixel) of a row.
    fn sample(&self, row: &[u8], index: usize) -> u16 {
        match self.bit_depth {
            16 => u16::from_be_bytes([row[index * 2], row[index * 2 + 1]]),
            8 => u16::from(row[index]),
            depth => {
                let depth = usize::from(depth);
                let bit = index * depth;
                let shift = 8 - depth - bit % 8;
                u16::from((row[bit / 8] >> shift) & ((1u8 << depth) - 1))
            }
        }
    }

    /// Scales a raw sample to 8 bits.
    fn scale_to_8bit(&self, value: u16) -> u8 {
        match self.bit_depth {
            16 => (value >> 8) as u8,
            8 => value as u8,
            depth => (u32::from(value) * 255 / ((1u32 << depth) - 1)) as u8,
        }
    }

    fn pixel(&self, row: &[u8], column: usize, palette: Option<&Palette>, transparency: Option<&[u8]>) -> [u8; 4] {
        let channels = self.channels();
        let sample = |channel: usize| self.sample(row, column * channels + channel);
        match self.colour_type {
            COLOUR_PALETTE => palette.map_or([0, 0, 0, 255], |palette| palette.get(usize::from(sample(0)))),
            COLOUR_GREY => {
                let grey = sample(0);
                let key = transparency.and_then(|key| be16(key, 0));
                let alpha = if key == Some(grey) { 0 } else { 255 };
                let value = self.scale_to_8bit(grey);
                [value, value, value, alpha]
            }
            COLOUR_GREY_ALPHA => {
                let value = self.scale_to_8bit(sample(0));
                [value, value, value, self.scale_to_8bit(sample(1))]
            }
            COLOUR_RGB => {
                let (a, b, c) = (sample(0), sample(1), sample(2));
                let key = transparency.and_then(|key| Some((be16(key, 0)?, be16(key, 2)?, be16(key, 4)?)));
                // The transparent key is written in the same (BGR) order as the samples.
                let alpha = if key == Some((a, b, c)) { 0 } else { 255 };
                [self.scale_to_8bit(a), self.scale_to_8bit(b), self.scale_to_8bit(c), alpha]
            }
            _ => [
                self.scale_to_8bit(sample(0)),
                self.scale_to_8bit(sample(1)),
                self.scale_to_8bit(sample(2)),
                self.scale_to_8bit(sample(3)),
            ],
        }
    }
}

/// A palette in RGBA, with crushed BGR entries swapped.
struct Palette(Vec<[u8; 4]>);

impl Palette {
    fn new(entries: &[u8], transparency: Option<&[u8]>) -> Result<Self, PngError> {
        if entries.is_empty() || !entries.len().is_multiple_of(3) || entries.len() > 256 * 3 {
            return Err(error("the PLTE chunk has a bad length"));
        }
        let alphas = transparency.unwrap_or(&[]);
        Ok(Palette(
            entries
                .chunks_exact(3)
                .enumerate()
                .map(|(index, bgr)| [bgr[2], bgr[1], bgr[0], alphas.get(index).copied().unwrap_or(255)])
                .collect(),
        ))
    }

    fn get(&self, index: usize) -> [u8; 4] {
        // An index past the palette is an error in the file; show it as transparent black
        // rather than refuse an otherwise good icon.
        self.0.get(index).copied().unwrap_or([0, 0, 0, 0])
    }
}

/// Reverses one PNG filter on `current`, given the unfiltered `previous` row.
fn unfilter(filter: u8, stride: usize, previous: &[u8], current: &mut [u8]) -> Result<(), PngError> {
    match filter {
        0 => {}
        1 => {
            for index in stride..current.len() {
                current[index] = current[index].wrapping_add(current[index - stride]);
            }
        }
        2 => {
            for (byte, above) in current.iter_mut().zip(previous) {
                *byte = byte.wrapping_add(*above);
            }
        }
        3 => {
            for index in 0..current.len() {
                let left = if index >= stride { u16::from(current[index - stride]) } else { 0 };
                let average = ((left + u16::from(previous[index])) / 2) as u8;
                current[index] = current[index].wrapping_add(average);
            }
        }
        4 => {
            for index in 0..current.len() {
                let left = if index >= stride { current[index - stride] } else { 0 };
                let upper_left = if index >= stride { previous[index - stride] } else { 0 };
                current[index] = current[index].wrapping_add(paeth(left, previous[index], upper_left));
            }
        }
        other => return Err(error(format!("unknown row filter {other}"))),
    }
    Ok(())
}

fn paeth(left: u8, above: u8, upper_left: u8) -> u8 {
    let estimate = i16::from(left) + i16::from(above) - i16::from(upper_left);
    let distance_left = (estimate - i16::from(left)).abs();
    let distance_above = (estimate - i16::from(above)).abs();
    let distance_upper_left = (estimate - i16::from(upper_left)).abs();
    if distance_left <= distance_above && distance_left <= distance_upper_left {
        left
    } else if distance_above <= distance_upper_left {
        above
    } else {
        upper_left
    }
}

/// Inflates raw DEFLATE (or zlib, when a valid zlib header is present) to exactly `expected`
/// bytes, refusing anything that would inflate further.
fn inflate(compressed: &[u8], expected: usize) -> Result<Vec<u8>, PngError> {
    let zlib = compressed.len() >= 2
        && compressed[0] & 0x0f == 8
        && (u16::from(compressed[0]) << 8 | u16::from(compressed[1])) % 31 == 0;
    let mut inflater = flate2::Decompress::new(zlib);
    // One spare byte reveals data that goes on past the image.
    let mut out = Vec::with_capacity(expected + 1);
    loop {
        let before_in = inflater.total_in();
        let before_out = inflater.total_out();
        let input = &compressed[before_in as usize..];
        let status = inflater
            .decompress_vec(input, &mut out, flate2::FlushDecompress::Finish)
            .map_err(|problem| error(format!("the image data does not inflate: {problem}")))?;
        if out.len() > expected {
            return Err(error("the image data is longer than its size"));
        }
        match status {
            flate2::Status::StreamEnd => break,
            _ if inflater.total_in() == before_in && inflater.total_out() == before_out => {
                // Apple's encoder sometimes stops without a final block; what matters is
                // whether the image is complete.
                break;
            }
            _ => {}
        }
    }
    if out.len() != expected {
        return Err(error("the image data is shorter than its size"));
    }
    Ok(out)
}

/// Encodes RGBA pixels as a standard PNG.
pub fn encode_rgba(width: u32, height: u32, rgba: &[u8]) -> Result<Vec<u8>, PngError> {
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, width, height);
    encoder.set_color(::png::ColorType::Rgba);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder.set_compression(::png::Compression::Balanced);
    let mut writer = encoder.write_header().map_err(|problem| error(format!("cannot encode PNG: {problem}")))?;
    writer.write_image_data(rgba).map_err(|problem| error(format!("cannot encode PNG: {problem}")))?;
    writer.finish().map_err(|problem| error(format!("cannot encode PNG: {problem}")))?;
    Ok(out)
}

/// Fully decodes a standard PNG to prove it is sound; returns its dimensions.
fn check_plain(bytes: &[u8], max_dimension: u32) -> Result<(u32, u32), PngError> {
    let limits = ::png::Limits { bytes: (max_dimension as usize).pow(2) * 8 };
    let decoder = ::png::Decoder::new_with_limits(std::io::Cursor::new(bytes), limits);
    let mut reader = decoder.read_info().map_err(|problem| error(format!("not a readable PNG: {problem}")))?;
    let (width, height) = (reader.info().width, reader.info().height);
    if width > max_dimension || height > max_dimension {
        return Err(error(format!("the image is {width}x{height}, larger than {max_dimension} pixels a side")));
    }
    let size = reader.output_buffer_size().ok_or_else(|| error("the image is too large"))?;
    let mut buffer = vec![0; size];
    reader.next_frame(&mut buffer).map_err(|problem| error(format!("not a readable PNG: {problem}")))?;
    Ok((width, height))
}

/// Iterates over (type, data) of a PNG's chunks, checking lengths but not CRCs (Apple's
/// crushed files are not always consistent, and the data is checked by decoding it).
struct Chunks<'a> {
    rest: &'a [u8],
}

impl<'a> Chunks<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, PngError> {
        let rest = bytes.strip_prefix(SIGNATURE).ok_or_else(|| error("not a PNG file"))?;
        Ok(Chunks { rest })
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<([u8; 4], &'a [u8]), PngError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let length = be32(self.rest, 0).ok_or_else(|| error("a chunk is cut short"))? as usize;
            let kind: [u8; 4] = self
                .rest
                .get(4..8)
                .and_then(|kind| kind.try_into().ok())
                .ok_or_else(|| error("a chunk is cut short"))?;
            let data = self.rest.get(8..8 + length).ok_or_else(|| error("a chunk is cut short"))?;
            let used = (12 + length).min(self.rest.len());
            Ok((kind, data, used))
        })();
        match parsed {
            Ok((kind, data, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok((kind, data)))
            }
            Err(problem) => {
                self.rest = &[];
                Some(Err(problem))
            }
        }
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}
