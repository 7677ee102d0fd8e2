"""Image files and JPEG bytes: decoding that refuses a truncated file, and the one JPEG encoder.

OpenCV's ``imread`` decodes a JPEG that lost its tail (a copy cut short, a camera that died
mid-write) and fills the missing rows with grey; it only prints "Premature end of JPEG file" on
stderr, which Python cannot see (``imdecode`` refuses such a JPEG in OpenCV 5, not in every
version, nor every format). Such an image would be labeled and exported as if whole, so each file is
checked for its format's end first: JPEG's end-of-image marker after the first scan, PNG's
IEND chunk, WebP's RIFF length. Other formats are left to the decoder.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG markers without a length field: TEM, RST0..RST7, SOI
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})


class ImageError(ValueError):
    """An image that cannot be used whole; the message says why."""


def _jpeg_is_complete(data: bytes) -> bool:
    """Walk the segments to the first scan (SOS), then look for EOI after it.

    Walking by segment lengths skips an EXIF thumbnail, whose own EOI would otherwise pass for
    the image's; inside entropy-coded data ``FF D9`` cannot occur (``FF`` is stuffed).
    """
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:  # stray bytes between segments (libjpeg skips them): search on
            return data.find(b"\xff\xd9", i) != -1
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _STANDALONE:
            i += 2
        elif marker == 0xD9:  # EOI before any scan
            return False
        else:
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker == 0xDA:
                return data.find(b"\xff\xd9", i + 2 + length) != -1
            i += 2 + length
    return False


def _png_is_complete(data: bytes) -> bool:
    """Every chunk whole (length, type, data, CRC) up to IEND."""
    i, n = len(PNG_SIGNATURE), len(data)
    while i + 12 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        end = i + 12 + length
        if end > n:
            return False
        if data[i + 4 : i + 8] == b"IEND":
            return True
        i = end
    return False


def truncation(data: bytes) -> str | None:
    """Why ``data`` is a JPEG, PNG or WebP file cut short; None when whole or another format."""
    if data[:2] == b"\xff\xd8":
        return None if _jpeg_is_complete(data) else "truncated JPEG (no end-of-image marker)"
    if data[:8] == PNG_SIGNATURE:
        return None if _png_is_complete(data) else "truncated PNG (no IEND chunk)"
    webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if webp and len(data) < 8 + int.from_bytes(data[4:8], "little"):
        return "truncated WebP (shorter than its RIFF length)"
    return None


def decode_image(data: bytes) -> np.ndarray:
    """``data`` decoded as BGR; :class:`ImageError` when it is cut short or not an image."""
    if not data:
        raise ImageError("empty file")
    reason = truncation(data)
    if reason is not None:
        raise ImageError(reason)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise ImageError("cannot decode image")
    return image


def read_image(path: Path) -> np.ndarray:
    """The image file at ``path`` as BGR; :class:`ImageError` when unreadable or not whole."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(f"cannot read: {err.strerror}") from None
    return decode_image(data)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """A frame as the JPEG stored in Redis (``ingest.jpeg_quality``): the ingester's and
    ``client.submit``'s frames are encoded alike."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError(f"cannot encode an image of shape {image.shape} as JPEG")
    return buf.tobytes()
