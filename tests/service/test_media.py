"""Output inspection (creditgate.media): types from bytes, bombs, dimensions, metadata.

Issue 18 items 3 (metadata), 4 (type from the bytes) and 6 (image bombs). The worker-level
tests in test_hostile_outputs.py run the same files through a real worker and database.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image, PngImagePlugin

from creditgate.media import Limits, OutputRejected, inspect_output, sniff, strip_metadata
from tests.fakes import FAKE_MP4, tiny_gif, tiny_png

SECRET = b"lora:/srv/private/loras/client-x.safetensors provider-model sdxl-internal"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height with a tiny IDAT: a bomb by its header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_with_metadata() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", SECRET.decode())
    info.add_itxt("Comment", SECRET.decode(), zip=False)
    info.add_text("Software", SECRET.decode(), zip=True)  # zTXt
    buf = io.BytesIO()
    image = Image.new("RGB", (16, 12), (10, 200, 30))
    exif = Image.Exif()
    exif[0x0131] = SECRET.decode()  # Software tag
    image.save(buf, "PNG", pnginfo=info, exif=exif)
    return buf.getvalue()


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGBA").tobytes()


# --- type from the bytes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"<html><script>alert(1)</script></html>",
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        b"AKIA-internal-credentials",
        b"",
    ],
)
def test_non_media_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(OutputRejected) as info:
        inspect_output(data, "image")
    assert info.value.code == "invalid_output"


def test_outputs_must_fit_the_job_kind() -> None:
    with pytest.raises(OutputRejected, match="image job returned video/mp4"):
        inspect_output(FAKE_MP4, "image")
    assert inspect_output(FAKE_MP4, "video").content_type == "video/mp4"
    assert inspect_output(tiny_gif(3), "video").content_type == "image/gif"


def test_a_png_header_over_broken_data_is_refused() -> None:
    broken = tiny_png()[:40] + b"\x00" * 40
    with pytest.raises(OutputRejected) as info:
        inspect_output(broken, "image")
    assert info.value.code == "invalid_output"


# --- bombs and limits ------------------------------------------------------------------------


def test_a_60000_square_png_is_refused_from_its_header() -> None:
    bomb = png_header_only(60000, 60000)
    started = time.monotonic()
    with pytest.raises(OutputRejected) as info:
        inspect_output(bomb, "image")
    assert info.value.code == "too_large"
    assert time.monotonic() - started < 1.0


def test_pillow_bomb_warning_is_an_error_too() -> None:
    """10000x10000 is between Pillow's warning (89 MP) and its error (179 MP): refused,
    and the warning never escapes (pytest turns warnings into errors here)."""
    bomb = png_header_only(10000, 10000)
    with pytest.raises(OutputRejected) as info:
        inspect_output(bomb, "image")
    assert info.value.code == "too_large"


def test_model_pixel_limit_is_checked_before_decoding() -> None:
    bomb = png_header_only(4000, 4000)  # would decode to 48 MB; its IDAT is 1 KB of zeros
    with pytest.raises(OutputRejected, match="exceeds the model's limits"):
        inspect_output(bomb, "image", Limits(max_pixels=2048 * 2048))


@pytest.mark.parametrize(
    ("limits", "ok"),
    [
        (Limits(max_width=64, max_height=64, max_pixels=64 * 64), True),
        (Limits(max_width=63), False),
        (Limits(max_height=47), False),
        (Limits(max_pixels=64 * 48 - 1), False),
    ],
)
def test_model_limits(limits: Limits, ok: bool) -> None:
    png = tiny_png("limits", (64, 48))
    if ok:
        assert inspect_output(png, "image", limits).info() == {
            "width": 64,
            "height": 48,
            "duration_seconds": None,
        }
    else:
        with pytest.raises(OutputRejected) as info:
            inspect_output(png, "image", limits)
        assert info.value.code == "too_large"


def many_frame_gif(frames: int, size: int = 4) -> bytes:
    images = [Image.new("RGB", (size, size), (i % 256, i // 256, 7)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=20, loop=0)
    return buf.getvalue()


def test_frames_are_counted_only_up_to_the_cap() -> None:
    gif = many_frame_gif(1500)
    started = time.monotonic()
    with pytest.raises(OutputRejected, match="more than 100 frames") as info:
        inspect_output(gif, "video", Limits(max_frames=100))
    assert info.value.code == "too_large"
    assert time.monotonic() - started < 1.0
    with pytest.raises(OutputRejected, match="more than 1000 frames"):
        inspect_output(gif, "video")


def test_decoded_pixels_over_all_frames_are_capped() -> None:
    gif = many_frame_gif(20, size=100)
    with pytest.raises(OutputRejected, match="too many pixels"):
        inspect_output(gif, "video", Limits(max_total_pixels=100 * 100 * 10))
    info = inspect_output(gif, "video", Limits(max_total_pixels=100 * 100 * 20))
    assert (info.width, info.height, info.duration_seconds) == (100, 100, 0.4)


def test_decode_time_is_capped() -> None:
    with pytest.raises(OutputRejected, match="too long") as info:
        inspect_output(many_frame_gif(50), "video", Limits(decode_seconds=0.0))
    assert info.value.code == "too_large"


# --- dimensions ------------------------------------------------------------------------------


def mp4_with_moov(width: int, height: int, seconds: int) -> bytes:
    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    mvhd = bytes(12) + struct.pack(">II", 1000, seconds * 1000) + bytes(80)
    tkhd = bytes(76) + struct.pack(">II", width << 16, height << 16)
    udta = box(b"\xa9too", SECRET)
    trak = box(b"trak", box(b"tkhd", tkhd) + box(b"udta", udta))
    moov = box(b"moov", box(b"mvhd", mvhd) + trak + box(b"udta", udta))
    return FAKE_MP4[:24] + moov


def test_mp4_dimensions_and_duration_are_recorded() -> None:
    video = mp4_with_moov(640, 360, 4)
    info = inspect_output(video, "video")
    assert (info.width, info.height, info.duration_seconds) == (640, 360, 4.0)
    assert b"udta" not in info.data and SECRET not in info.data
    assert len(info.data) == len(video)  # same size: chunk offsets still valid
    with pytest.raises(OutputRejected):
        inspect_output(video, "video", Limits(max_width=320))


def ebml(ident: int, payload: bytes) -> bytes:
    """One EBML element with an 8-byte size field."""
    id_bytes = ident.to_bytes((ident.bit_length() + 7) // 8, "big")
    return id_bytes + ((1 << 56) | len(payload)).to_bytes(8, "big") + payload


def webm(width: int, height: int, seconds: float) -> bytes:
    header = ebml(0x1A45DFA3, ebml(0x4282, b"webm"))
    info = ebml(
        0x1549A966,
        ebml(0x2AD7B1, (1_000_000).to_bytes(3, "big"))
        + ebml(0x4489, struct.pack(">d", seconds * 1000)),
    )
    video = ebml(0xE0, ebml(0xB0, width.to_bytes(2, "big")) + ebml(0xBA, height.to_bytes(2, "big")))
    tracks = ebml(0x1654AE6B, ebml(0xAE, ebml(0xD7, b"\x01") + video))
    tags = ebml(
        0x1254C367, ebml(0x7373, ebml(0x67C8, ebml(0x45A3, b"ENCODER") + ebml(0x4487, SECRET)))
    )
    return header + ebml(0x18538067, info + tracks + tags)


def test_webm_dimensions_are_recorded_and_tags_voided() -> None:
    video = webm(1280, 720, 2.5)
    info = inspect_output(video, "video")
    assert (info.content_type, info.width, info.height) == ("video/webm", 1280, 720)
    assert info.duration_seconds == 2.5
    assert SECRET not in info.data and len(info.data) == len(video)
    # Still well formed: the same walk finds the same track after the Void.
    assert inspect_output(info.data, "video").info() == info.info()
    with pytest.raises(OutputRejected):
        inspect_output(video, "video", Limits(max_pixels=1280 * 719))


def test_image_dimensions_are_recorded() -> None:
    assert inspect_output(tiny_png("d", (20, 10)), "image").info()["width"] == 20
    gif = inspect_output(tiny_gif(3), "video")
    assert (gif.width, gif.height, gif.duration_seconds) == (8, 8, 0.3)


# --- metadata --------------------------------------------------------------------------------


def test_png_text_and_exif_chunks_are_stripped() -> None:
    png = png_with_metadata()
    for kind in (b"tEXt", b"iTXt", b"zTXt", b"eXIf"):
        assert kind in png
    out = inspect_output(png, "image").data
    for kind in (b"tEXt", b"iTXt", b"zTXt", b"eXIf"):
        assert kind not in out
    assert b"safetensors" not in out
    assert pixels(out) == pixels(png)


def test_jpeg_exif_xmp_and_comments_are_stripped() -> None:
    buf = io.BytesIO()
    image = Image.new("RGB", (16, 16), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0131] = SECRET.decode()
    image.save(buf, "JPEG", exif=exif, comment=SECRET, xmp=b"<x:xmpmeta>" + SECRET + b"</x>")
    jpeg = buf.getvalue()
    assert jpeg.count(SECRET) == 3
    out = inspect_output(jpeg, "image").data
    assert b"safetensors" not in out
    assert b"Exif" not in out and b"http://ns.adobe.com/xap" not in out
    assert out.startswith(b"\xff\xd8\xff\xe0") and b"JFIF" in out  # JFIF kept
    assert pixels(out) == pixels(jpeg)


def test_gif_comments_and_foreign_app_blocks_are_stripped() -> None:
    frames = [Image.new("RGB", (8, 8), (60 * i, 20, 200)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(
        buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0, comment=SECRET
    )
    gif = buf.getvalue()
    # An XMP application extension, as image editors write it, before the trailer.
    xmp = b"\x21\xff\x0bXMP DataXMP" + bytes((len(SECRET),)) + SECRET + b"\x00"
    gif = gif[:-1] + xmp + b"\x3b"
    out = inspect_output(gif, "video").data
    assert b"safetensors" not in out
    assert b"NETSCAPE2.0" in out  # looping kept
    with Image.open(io.BytesIO(out)) as stripped, Image.open(io.BytesIO(gif)) as original:
        assert stripped.n_frames == original.n_frames == 3
        assert "comment" not in stripped.info
    assert pixels(out) == pixels(gif)


def test_webp_exif_and_xmp_are_stripped() -> None:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0131] = SECRET.decode()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(
        buf, "WEBP", lossless=True, exif=exif, xmp=b"<x>" + SECRET + b"</x>"
    )
    webp = buf.getvalue()
    out = inspect_output(webp, "image").data
    assert b"safetensors" not in out and b"EXIF" not in out and b"XMP " not in out
    assert struct.unpack_from("<I", out, 4)[0] == len(out) - 8
    with Image.open(io.BytesIO(out)) as image:
        assert "exif" not in image.info and "xmp" not in image.info
    assert pixels(out) == pixels(webp)


def test_bytes_after_the_end_marker_are_dropped() -> None:
    png = tiny_png() + SECRET
    assert SECRET not in strip_metadata(png, "image/png")
    assert sniff(png) == "image/png"
