//! A minimal reader of ASN.1 BER/DER, enough for CMS SignedData.
//!
//! Apple writes profiles and device replies in BER with indefinite lengths and constructed
//! OCTET STRINGs, which DER-only crates refuse. This reader handles both forms, never
//! allocates from a declared length, and bounds its recursion.

use std::fmt;

/// An error in the encoding (the caller adds which file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerError(pub &'static str);

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// INTEGER.
pub const TAG_INTEGER: u8 = 0x02;
/// OCTET STRING (primitive form).
pub const TAG_OCTET_STRING: u8 = 0x04;
/// OBJECT IDENTIFIER.
pub const TAG_OID: u8 = 0x06;
/// SEQUENCE (always constructed).
pub const TAG_SEQUENCE: u8 = 0x30;
/// SET (always constructed).
pub const TAG_SET: u8 = 0x31;
/// Context-specific, constructed, tag number 0 (`[0]`).
pub const TAG_CONTEXT_0: u8 = 0xa0;
/// Context-specific, constructed, tag number 1 (`[1]`).
pub const TAG_CONTEXT_1: u8 = 0xa1;

const MAX_DEPTH: usize = 32;

/// One element: its tag byte, its content, and the whole encoding it came from.
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    /// The identifier octet (only single-byte tags are accepted).
    pub tag: u8,
    /// For definite lengths, the content octets; for indefinite ones, the content up to but
    /// not including the end-of-contents marker.
    pub content: &'a [u8],
    /// The complete encoding, header included.
    pub raw: &'a [u8],
}

impl<'a> Element<'a> {
    /// Whether the constructed bit is set.
    pub fn is_constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// The child elements of a constructed element.
    pub fn children(&self) -> Children<'a> {
        Children { rest: self.content, depth: 0 }
    }

    /// The bytes of an OCTET STRING, joining the segments of a constructed one.
    pub fn octets(&self) -> Result<Vec<u8>, DerError> {
        let mut out = Vec::new();
        collect_octets(self, &mut out, 0)?;
        Ok(out)
    }
}

fn collect_octets(element: &Element<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), DerError> {
    if depth > MAX_DEPTH {
        return Err(DerError("OCTET STRING nested too deeply"));
    }
    if element.tag & 0x1f != TAG_OCTET_STRING & 0x1f {
        return Err(DerError("expected an OCTET STRING"));
    }
    if !element.is_constructed() {
        out.extend_from_slice(element.content);
        return Ok(());
    }
    for child in element.children() {
        collect_octets(&child?, out, depth + 1)?;
    }
    Ok(())
}

/// Iterates over consecutive elements.
pub struct Children<'a> {
    rest: &'a [u8],
    depth: usize,
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Element<'a>, DerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match parse_one(self.rest, self.depth) {
            Ok((element, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok(element))
            }
            Err(error) => {
                self.rest = &[];
                Some(Err(error))
            }
        }
    }
}

/// Parses the single element at the start of `input`; returns it and the bytes it used.
pub fn parse(input: &[u8]) -> Result<(Element<'_>, usize), DerError> {
    parse_one(input, 0)
}

fn parse_one(input: &[u8], depth: usize) -> Result<(Element<'_>, usize), DerError> {
    if depth > MAX_DEPTH {
        return Err(DerError("nested too deeply"));
    }
    let tag = *input.first().ok_or(DerError("unexpected end of data"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError("multi-byte tags are not used in CMS"));
    }
    let first = *input.get(1).ok_or(DerError("unexpected end of data"))?;
    let mut header = 2usize;
    if first == 0x80 {
        // Indefinite length: content runs until an end-of-contents marker at this level.
        if tag & 0x20 == 0 {
            return Err(DerError("indefinite length on a primitive element"));
        }
        let mut at = header;
        loop {
            let rest = input.get(at..).ok_or(DerError("unexpected end of data"))?;
            if rest.starts_with(&[0, 0]) {
                let content = &input[header..at];
                let used = at + 2;
                return Ok((Element { tag, content, raw: &input[..used] }, used));
            }
            let (_, used) = parse_one(rest, depth + 1)?;
            at += used;
        }
    }
    let length = if first & 0x80 == 0 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count > 4 {
            return Err(DerError("length too large"));
        }
        let bytes = input.get(2..2 + count).ok_or(DerError("unexpected end of data"))?;
        header += count;
        bytes.iter().fold(0usize, |acc, &byte| (acc << 8) | usize::from(byte))
    };
    let end = header.checked_add(length).ok_or(DerError("length too large"))?;
    let content = input.get(header..end).ok_or(DerError("unexpected end of data"))?;
    Ok((Element { tag, content, raw: &input[..end] }, end))
}

/// Well-known object identifiers, as their DER content bytes.
pub mod oid {
    /// pkcs7-signedData 1.2.840.113549.1.7.2
    pub const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    /// pkcs9-messageDigest 1.2.840.113549.1.9.4
    pub const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
    /// sha1 1.3.14.3.2.26
    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    /// sha256 2.16.840.1.101.3.4.2.1
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// sha384 2.16.840.1.101.3.4.2.2
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    /// sha512 2.16.840.1.101.3.4.2.3
    pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
}
