"""Output inspection: what the worker checks and removes before an output is stored.

A provider's bytes are untrusted (docs/security.md, "Hostile providers"). Before upload the
worker runs :func:`inspect_output` on each output, in a thread:

1. **Type from the bytes.** Only PNG, JPEG, GIF, WebP, MP4/QuickTime and WebM are stored,
   and only those a job of its kind may return (images for image and edit; videos and
   animated images for video). Anything else (HTML, SVG, text) fails the job.
2. **Metadata stripped** at the container level, leaving the pixels untouched: PNG text and
   EXIF chunks (tEXt, iTXt, zTXt, eXIf, tIME, private chunks), JPEG APPn segments other than
   JFIF, ICC and Adobe (so EXIF, XMP, IPTC) and comments, GIF comment, plain-text and
   application extensions other than the looping ones, WebP EXIF and XMP chunks, and MP4
   `udta`/`meta` boxes (turned into zeroed `free` boxes of the same size, so chunk
   offsets stay valid). Written
   here rather than by re-encoding with Pillow because a re-encode changes JPEG pixels and
   GIF palettes, and would have to decode every frame of an animation. WebM `Tags` become
   zeroed `Void` elements of the same length.
3. **Bombs refused before decoding:** the header's dimensions are checked against the
   model's limits (`max_width`, `max_height`, `max_pixels` of ``creditgate.models``) and a
   hard cap, Pillow's decompression-bomb check is an error, frames are counted only up to a
   cap (never every frame of a GIF), the pixels decoded over all frames are capped, and
   decoding stops at a deadline.
4. **Dimensions recorded** for every output: width and height (images from Pillow, MP4 from
   its track header, WebM from its video track), and the duration of animations and videos.

A failure raises :class:`OutputRejected` with code ``invalid_output`` (not the media it
claims, undecodable) or ``too_large`` (over a limit); the worker settles the job failed,
not retryable, and SQL refunds the user in full.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

__all__ = [
    "IMAGE_TYPES",
    "STORABLE_TYPES",
    "VIDEO_TYPES",
    "Inspected",
    "Limits",
    "OutputRejected",
    "inspect_output",
    "sniff",
    "strip_metadata",
]

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
VIDEO_TYPES = frozenset({"video/mp4", "video/webm", "video/quicktime"})
STORABLE_TYPES = IMAGE_TYPES | VIDEO_TYPES
KIND_TYPES = {
    "image": IMAGE_TYPES,
    "edit": IMAGE_TYPES,
    "video": VIDEO_TYPES | {"image/gif", "image/webp", "image/png"},  # GIF, WebP, APNG
}

# Hard caps, whatever the model allows. 65535 is also the largest width/height settle takes.
MAX_SIDE = 65535
MAX_PIXELS = 8192 * 8192  # one frame (67 MP: 268 MB decoded as RGBA)
MAX_FRAMES = 1000
MAX_TOTAL_PIXELS = 400_000_000  # decoded over all frames of an animation
DECODE_SECONDS = 10.0


class OutputRejected(Exception):
    """An output the worker refuses to store; `code` goes to the settle outcome."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """The model's output limits (None: no model limit) and the decode budget."""

    max_width: int | None = None
    max_height: int | None = None
    max_pixels: int | None = None
    max_frames: int = MAX_FRAMES
    max_total_pixels: int = MAX_TOTAL_PIXELS
    decode_seconds: float = DECODE_SECONDS

    @classmethod
    def from_model(cls, row: Any, **overrides: Any) -> Limits:
        """From ``creditgate.models`` columns (a mapping; missing or null: no limit)."""
        row = row if isinstance(row, dict) else {}

        def positive(key: str) -> int | None:
            value = row.get(key)
            return int(value) if isinstance(value, int) and value > 0 else None

        return cls(
            max_width=positive("max_width"),
            max_height=positive("max_height"),
            max_pixels=positive("max_pixels"),
            **overrides,
        )


@dataclass(frozen=True)
class Inspected:
    data: bytes
    content_type: str
    width: int | None
    height: int | None
    duration_seconds: float | None

    def info(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "duration_seconds": self.duration_seconds,
        }


def sniff(data: bytes) -> str | None:
    """MIME type from the file's magic bytes (the only source of an output's type)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/quicktime" if data[8:12] == b"qt  " else "video/mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def inspect_output(data: bytes, kind: str, limits: Limits | None = None) -> Inspected:
    """Check, strip and measure one output; raise OutputRejected if it cannot be stored."""
    limits = limits or Limits()
    content_type = sniff(data)
    if content_type is None:
        raise OutputRejected("invalid_output", "output is not a known image or video format")
    if content_type not in KIND_TYPES.get(kind, STORABLE_TYPES):
        raise OutputRejected("invalid_output", f"a {kind} job returned {content_type}")
    stripped = strip_metadata(data, content_type)
    width: int | None
    height: int | None
    if content_type in IMAGE_TYPES:
        width, height, duration = _image_info(stripped, content_type, limits)
    else:
        width, height, duration = _video_info(stripped, content_type)
        if width is not None and height is not None:
            _check_size(width, height, limits)
    return Inspected(stripped, content_type, width, height, duration)


# --- images ----------------------------------------------------------------------------------


def _check_size(width: int, height: int, limits: Limits) -> None:
    if width < 1 or height < 1:
        raise OutputRejected("invalid_output", f"output is {width}x{height}")
    over = (
        width > MAX_SIDE
        or height > MAX_SIDE
        or width * height > MAX_PIXELS
        or (limits.max_width is not None and width > limits.max_width)
        or (limits.max_height is not None and height > limits.max_height)
        or (limits.max_pixels is not None and width * height > limits.max_pixels)
    )
    if over:
        raise OutputRejected("too_large", f"output of {width}x{height} exceeds the model's limits")


def _image_info(data: bytes, content_type: str, limits: Limits) -> tuple[int, int, float | None]:
    deadline = time.monotonic() + limits.decode_seconds
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check: its warning is an error here too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[content_type.split("/")[1].upper()]) as im:
                width, height = im.size
                _check_size(width, height, limits)
                im.load()  # the first frame decodes: a real image of the size it claims
                frames, total_ms = 1, int(im.info.get("duration", 0) or 0)
                if getattr(im, "is_animated", False):
                    frames, total_ms = _frames(im, width * height, limits, deadline)
    except OutputRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise OutputRejected("too_large", f"decompression bomb: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise OutputRejected("invalid_output", f"undecodable {content_type}: {exc}") from exc
    if time.monotonic() > deadline:
        raise OutputRejected("too_large", "output took too long to decode")
    duration = total_ms / 1000 if frames > 1 and total_ms > 0 else None
    return width, height, duration


def _frames(im: Image.Image, pixels: int, limits: Limits, deadline: float) -> tuple[int, int]:
    """Count frames and sum their durations, one seek at a time, within every budget.

    `n_frames` would seek through the whole file first; here the walk stops at the first
    budget exceeded (frames, decoded pixels, time).
    """
    frames, total_ms = 0, 0
    while True:
        frames += 1
        if frames > limits.max_frames:
            raise OutputRejected("too_large", f"more than {limits.max_frames} frames")
        if frames * pixels > limits.max_total_pixels:
            raise OutputRejected("too_large", "animation decodes to too many pixels")
        if time.monotonic() > deadline:
            raise OutputRejected("too_large", "output took too long to decode")
        total_ms += int(im.info.get("duration", 0) or 0)
        try:
            im.seek(frames)
        except EOFError:
            return frames, total_ms


# --- videos ----------------------------------------------------------------------------------


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """ISO BMFF boxes in data[start:end]: (type, box start, payload start, box end)."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos, pos + header, pos + size
        pos += size


def _vint(data: bytes, pos: int, *, marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at pos: (value, length). With `marker` the length
    bits stay in (element IDs); without, an all-ones value means unknown (-1)."""
    first = data[pos]
    length = 8 - first.bit_length() + 1
    if length > 8:
        raise OutputRejected("invalid_output", "malformed WebM element")
    value = int.from_bytes(data[pos : pos + length], "big")
    if len(data) < pos + length:
        raise OutputRejected("invalid_output", "truncated WebM element")
    if marker:
        return value, length
    bits = 7 * length
    value &= (1 << bits) - 1
    return (-1 if value == (1 << bits) - 1 else value), length


def _ebml(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """EBML elements in data[start:end]: (id, element start, data start, data end)."""
    pos = start
    while pos < end:
        ident, id_len = _vint(data, pos, marker=True)
        size, size_len = _vint(data, pos + id_len, marker=False)
        body = pos + id_len + size_len
        stop = end if size < 0 else min(body + size, end)
        yield ident, pos, body, stop
        pos = stop


_SEGMENT, _INFO, _TRACKS, _TRACK, _VIDEO, _TAGS = (
    0x18538067,
    0x1549A966,
    0x1654AE6B,
    0xAE,
    0xE0,
    0x1254C367,
)


def _webm_info(data: bytes) -> tuple[int | None, int | None, float | None]:
    """PixelWidth/PixelHeight of the first video track and Info's Duration."""
    width = height = None
    duration = None
    for ident, _, body, end in _ebml(data, 0, len(data)):
        if ident != _SEGMENT:
            continue
        for sub, _, sub_body, sub_end in _ebml(data, body, end):
            if sub == _INFO:
                scale, ticks = 1_000_000, None
                for leaf, _, leaf_body, leaf_end in _ebml(data, sub_body, sub_end):
                    raw = data[leaf_body:leaf_end]
                    if leaf == 0x2AD7B1 and raw:
                        scale = int.from_bytes(raw, "big")
                    elif leaf == 0x4489 and len(raw) in (4, 8):
                        ticks = struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0]
                if ticks is not None and ticks == ticks:  # not NaN
                    duration = round(ticks * scale / 1e9, 3)
            elif sub == _TRACKS and width is None:
                for track, _, track_body, track_end in _ebml(data, sub_body, sub_end):
                    if track != _TRACK or width is not None:
                        continue
                    for leaf, _, leaf_body, leaf_end in _ebml(data, track_body, track_end):
                        if leaf != _VIDEO:
                            continue
                        for px, _, px_body, px_end in _ebml(data, leaf_body, leaf_end):
                            value = int.from_bytes(data[px_body:px_end], "big")
                            if px == 0xB0:
                                width = value
                            elif px == 0xBA:
                                height = value
    if duration is not None and not 0 <= duration <= 86400:
        duration = None
    return width or None, height or None, duration


def _video_info(data: bytes, content_type: str) -> tuple[int | None, int | None, float | None]:
    """Width, height and duration: MP4/QuickTime from moov, WebM from its Segment."""
    if content_type == "video/webm":
        try:
            return _webm_info(data)
        except (IndexError, struct.error) as exc:
            raise OutputRejected("invalid_output", "malformed WebM") from exc
    width = height = None
    duration = None
    for kind, _, body, end in _boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for sub, _, sub_body, sub_end in _boxes(data, body, end):
            if sub == b"mvhd" and sub_end - sub_body >= 20:
                version = data[sub_body]
                if version == 1 and sub_end - sub_body >= 32:
                    scale, length = struct.unpack_from(">IQ", data, sub_body + 20)
                else:
                    scale, length = struct.unpack_from(">II", data, sub_body + 12)
                if scale:
                    duration = round(length / scale, 3)
            elif sub == b"trak" and width is None:
                for leaf, _, leaf_body, leaf_end in _boxes(data, sub_body, sub_end):
                    if leaf == b"tkhd" and leaf_end - leaf_body >= 84:
                        w, h = struct.unpack_from(">II", data, leaf_end - 8)
                        if w >> 16 and h >> 16:
                            width, height = w >> 16, h >> 16
    if duration is not None and not 0 <= duration <= 86400:
        duration = None
    return width, height, duration


# --- metadata --------------------------------------------------------------------------------

_PNG_KEEP = frozenset(
    {
        b"IHDR",
        b"PLTE",
        b"IDAT",
        b"IEND",
        b"tRNS",
        b"cHRM",
        b"gAMA",
        b"iCCP",
        b"sBIT",
        b"sRGB",
        b"cICP",
        b"pHYs",
        b"bKGD",
        b"acTL",
        b"fcTL",
        b"fdAT",
    }
)


def strip_metadata(data: bytes, content_type: str) -> bytes:
    """The file without its metadata (see the module docstring); pixels unchanged."""
    strip = {
        "image/png": _strip_png,
        "image/jpeg": _strip_jpeg,
        "image/gif": _strip_gif,
        "image/webp": _strip_webp,
        "video/mp4": _strip_mp4,
        "video/quicktime": _strip_mp4,
        "video/webm": _strip_webm,
    }.get(content_type)
    if strip is None:
        return data
    try:
        return strip(data)
    except (IndexError, ValueError, struct.error) as exc:
        raise OutputRejected("invalid_output", f"malformed {content_type}") from exc


def _strip_png(data: bytes) -> bytes:
    out = [data[:8]]
    pos = 8
    while pos < len(data):
        if pos + 12 > len(data):
            raise OutputRejected("invalid_output", "truncated PNG chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise OutputRejected("invalid_output", "truncated PNG chunk")
        if kind in _PNG_KEEP:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break  # nothing after the end: no trailing payloads
    return b"".join(out)


_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _keep_jpeg_segment(marker: int, payload: bytes) -> bool:
    if marker == 0xFE:  # COM
        return False
    if 0xE0 <= marker <= 0xEF:  # APPn: keep JFIF, ICC profile and Adobe colour transform
        return (
            (marker == 0xE0 and payload.startswith((b"JFIF\x00", b"JFXX\x00")))
            or (marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"))
            or (marker == 0xEE and payload.startswith(b"Adobe"))
        )
    return True


def _strip_jpeg(data: bytes) -> bytes:
    out = [b"\xff\xd8"]
    pos = 2
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise OutputRejected("invalid_output", "malformed JPEG segment")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI: drop anything after it
            out.append(b"\xff\xd9")
            return b"".join(out)
        if marker in _JPEG_STANDALONE:
            out.append(bytes((0xFF, marker)))
            continue
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > n:
            raise OutputRejected("invalid_output", "truncated JPEG segment")
        payload = data[pos + 2 : pos + length]
        segment_end = pos + length
        if _keep_jpeg_segment(marker, payload):
            out.append(bytes((0xFF, marker)) + data[pos:segment_end])
        pos = segment_end
        if marker == 0xDA:  # SOS: entropy-coded data up to the next real marker
            scan = pos
            while True:
                pos = data.index(b"\xff", pos)
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos += 1 if following == 0xFF else 2
                    continue
                break
            out.append(data[scan:pos])
    raise OutputRejected("invalid_output", "JPEG without an end marker")


def _gif_sub_blocks(data: bytes, pos: int) -> int:
    """End of a run of GIF data sub-blocks (after the zero terminator)."""
    while True:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


_GIF_LOOP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def _strip_gif(data: bytes) -> bytes:
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    out = [data[:pos]]
    while True:
        block = data[pos]
        if block == 0x3B:  # trailer: drop anything after it
            out.append(b"\x3b")
            return b"".join(out)
        if block == 0x21:
            label = data[pos + 1]
            end = _gif_sub_blocks(data, pos + 2)
            keep = label == 0xF9 or (
                label == 0xFF and data[pos + 3 : pos + 14] in _GIF_LOOP_APPS
            )  # graphic control, looping; not comments, plain text or other app data (XMP)
            if keep:
                out.append(data[pos:end])
            pos = end
        elif block == 0x2C:
            local = data[pos + 9]
            body = pos + 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0)
            end = _gif_sub_blocks(data, body + 1)  # after the LZW minimum code size
            out.append(data[pos:end])
            pos = end
        else:
            raise OutputRejected("invalid_output", "malformed GIF block")


def _strip_webp(data: bytes) -> bytes:
    chunks = []
    pos = 12
    end = min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])
    while pos + 8 <= end:
        kind, size = struct.unpack_from("<4sI", data, pos)
        stop = pos + 8 + size + (size & 1)
        if pos + 8 + size > end:
            raise OutputRejected("invalid_output", "truncated WebP chunk")
        chunk = data[pos:stop]
        if kind == b"VP8X" and size >= 10:
            # Flags: clear "has EXIF" (0x08) and "has XMP" (0x04) with their chunks gone.
            chunk = chunk[:8] + bytes((chunk[8] & ~0x0C,)) + chunk[9:]
        if kind not in (b"EXIF", b"XMP "):
            chunks.append(chunk)
        pos = stop
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


_MP4_METADATA = frozenset({b"udta", b"meta"})
_MP4_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf"})


def _strip_mp4(data: bytes) -> bytes:
    out = bytearray(data)

    def walk(start: int, end: int) -> None:
        for kind, box, body, box_end in _boxes(data, start, end):
            if kind in _MP4_METADATA:
                out[box + 4 : box + 8] = b"free"
                out[body:box_end] = bytes(box_end - body)
            elif kind in _MP4_CONTAINERS:
                walk(body, box_end)

    walk(0, len(data))
    return bytes(out)


def _strip_webm(data: bytes) -> bytes:
    """Segment-level Tags elements become Void elements of the same length, zeroed."""
    out = bytearray(data)
    for ident, _, body, end in _ebml(data, 0, len(data)):
        if ident != _SEGMENT:
            continue
        for sub, start, sub_body, sub_end in _ebml(data, body, end):
            if sub != _TAGS:
                continue
            # A Void element (ID 0xEC) over exactly the same span, zero-filled.
            length = min(8, sub_body - start - 1)  # Void's size field
            size = (1 << (7 * length)) | (sub_end - start - 1 - length)
            out[start:sub_end] = b"\xec" + size.to_bytes(length, "big") + bytes(
                sub_end - start - 1 - length
            )
    return bytes(out)
