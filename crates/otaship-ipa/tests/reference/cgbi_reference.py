#!/usr/bin/env python3
"""Independent reference decoder for Apple's crushed (CgBI) PNGs, used to produce the pixel
digests that tests/png.rs expects from the Rust decoder.

It shares no code with the Rust implementation: zlib from Python's standard library, its own
unfiltering, 8-bit RGBA and RGB only (all that the fixtures contain). Prints, for each crushed
icon in the given .ipa files: entry, width, height, and the SHA-256 of the straight-alpha RGBA
pixels.

    python3 cgbi_reference.py ../../../../../shared/fixtures/third-party/ipa/*.ipa
"""
import hashlib
import struct
import sys
import zipfile
import zlib


def chunks(data):
    at = 8
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind = data[at + 4:at + 8]
        yield kind, data[at + 8:at + 8 + length]
        at += 12 + length


def decode(data):
    idat = b""
    for kind, body in chunks(data):
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 4 if colour == 6 else 3
    raw = zlib.decompressobj(-15).decompress(idat)
    stride = width * channels
    rows, previous, at = [], bytearray(stride), 0
    for _ in range(height):
        kind, row = raw[at], bytearray(raw[at + 1:at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            a = row[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + a) & 255
            elif kind == 2:
                row[i] = (row[i] + b) & 255
            elif kind == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(row)
        previous = row
    out = bytearray()
    for row in rows:
        for x in range(width):
            px = row[x * channels:(x + 1) * channels]
            b, g, r = px[0], px[1], px[2]
            alpha = px[3] if channels == 4 else 255
            if 0 < alpha < 255:
                r, g, b = (min(255, (v * 255 + alpha // 2) // alpha) for v in (r, g, b))
            out += bytes((r, g, b, alpha))
    return width, height, hashlib.sha256(out).hexdigest()


for path in sys.argv[1:]:
    if not zipfile.is_zipfile(path):
        continue
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            if name.startswith("Payload/") and name.count("/") == 2 and "Icon" in name and name.endswith(".png"):
                data = archive.read(info)
                if data[12:16] == b"CgBI":
                    width, height, digest = decode(data)
                    print(f"{path.rsplit('/', 1)[-1]}\t{name}\t{width}\t{height}\t{digest}")
