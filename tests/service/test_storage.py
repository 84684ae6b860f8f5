"""Storage: LocalStorage behind a real uvicorn server, S3Storage against moto's server mode."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import boto3
import httpx
import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from moto.server import ThreadedMotoServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from creditgate.storage import (
    LocalStorage,
    NotFound,
    S3Storage,
    Storage,
    StorageError,
    validate_key,
)
from tests.service.apiutil import ServerThread

T = TypeVar("T")
SIGNING_SECRET = b"0123456789abcdef0123456789abcdef-media"
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)

BAD_KEYS = [
    "",
    "/",
    "/etc/passwd",
    "media/../secret",
    "../media/x.png",
    "media/..",
    "..",
    ".",
    "media/./x.png",
    "media//x.png",
    "media/x.png/",
    "media\\x.png",
    "media/x\x00.png",
    "media/x .png",
    "media/x.png?sig=1",
    "media/%2e%2e/x",
    "media/é.png",
    "media/.hidden",
    "media/x.png~content-type",
    "a" * 1025,
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def media_key(n: int = 0, ext: str = "png") -> str:
    return f"media/{uuid.uuid4()}/{n}.{ext}"


# --- keys ------------------------------------------------------------------------------------


def test_validate_key_accepts_media_keys() -> None:
    for key in ("media/6f1f2a8e-3c1d-4b8e-9a55-0a3c9c1b7e21/0.png", "a", "A_b-c.d/e.tar.gz"):
        assert validate_key(key) == key


@pytest.mark.parametrize("key", BAD_KEYS)
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(StorageError):
        validate_key(key)


# --- LocalStorage ----------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media-root", "http://media.test", SIGNING_SECRET)


def test_local_satisfies_protocol(local: LocalStorage) -> None:
    assert isinstance(local, Storage)


def test_local_put_get_delete_exists(local: LocalStorage) -> None:
    key = media_key()

    async def go() -> None:
        assert not await local.exists(key)
        with pytest.raises(NotFound):
            await local.get(key)
        with pytest.raises(KeyError):  # NotFound is also a KeyError
            await local.get(key)
        await local.put(key, PNG, "image/png")
        assert await local.exists(key)
        assert await local.get(key) == PNG
        await local.put(key, b"second", "image/webp")  # overwrite
        assert await local.get(key) == b"second"
        await local.put(key.replace("0.png", "1.png"), b"", "image/png")  # empty is a file
        assert await local.get(key.replace("0.png", "1.png")) == b""
        await local.delete(key)
        assert not await local.exists(key)
        await local.delete(key)  # idempotent
        await local.delete(media_key())  # never existed
        with pytest.raises(NotFound):
            await local.get(key)
        await local.delete(key.replace("0.png", "1.png"))

    run(go())
    # no temp or side files left, and empty per-generation directories pruned
    assert list(local.root.rglob("*")) == []


def test_local_content_type_stored_beside_file(local: LocalStorage) -> None:
    key = media_key(ext="webp")
    webp = b"RIFF\x04\x00\x00\x00WEBPVP8 "
    run(local.put(key, webp, "image/webp"))
    data_path = local.root / key
    assert data_path.read_bytes() == webp
    assert data_path.with_name("0.webp~content-type").read_text() == "image/webp"
    # The type comes from the bytes, not from the caller's claim.
    run(local.put(key, b"RIFF", "image/webp"))
    assert data_path.with_name("0.webp~content-type").read_text() == "application/octet-stream"
    for bad in ("", "image", "text/html\r\nX-Evil: 1", "a/b\x00"):
        with pytest.raises(StorageError):
            run(local.put(key, b"x", bad))


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_rejects_bad_keys_everywhere(local: LocalStorage, key: str) -> None:
    async def go() -> None:
        for call in (
            local.put(key, b"x", "image/png"),
            local.get(key),
            local.delete(key),
            local.exists(key),
            local.signed_url(key, 60),
        ):
            with pytest.raises(StorageError):
                await call

    run(go())
    assert not local.verify(key, str(int(time.time()) + 60), "0" * 64)


def test_local_symlink_escape_rejected(local: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    (local.root / "media").mkdir()
    (local.root / "media" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError):
        run(local.get("media/link/secret.png"))
    with pytest.raises(StorageError):
        run(local.put("media/link/new.png", b"x", "image/png"))
    assert not (outside / "new.png").exists()


def test_local_write_is_atomic(local: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    key = media_key()
    run(local.put(key, b"old", "image/png"))

    def crash(src: Any, dst: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", crash)  # the rename step fails
    with pytest.raises(StorageError):
        run(local.put(key, b"new" * 1000, "image/png"))
    monkeypatch.undo()
    assert run(local.get(key)) == b"old"
    names = sorted(p.name for p in (local.root / key).parent.iterdir())
    assert names == ["0.png", "0.png~content-type"]  # no temp file left behind


def test_local_signature_checks(local: LocalStorage) -> None:
    key = media_key()
    now = 1_800_000_000.0
    query = parse_qs(urlsplit(local.sign(key, 300, now=now)).query)
    exp, sig = query["exp"][0], query["sig"][0]
    assert exp == str(int(now) + 300)
    assert local.verify(key, exp, sig, now=now)
    assert local.verify(key, exp, sig, now=now + 299)
    assert not local.verify(key, exp, sig, now=now + 300)  # expired
    assert not local.verify(media_key(), exp, sig, now=now)  # other key
    assert not local.verify(key, str(int(exp) + 1), sig, now=now)  # extended expiry
    assert not local.verify(key, exp, sig.upper(), now=now)
    assert not local.verify(key, exp, sig[:-1], now=now)
    assert not local.verify(key, exp, "", now=now)
    assert not local.verify(key, "", sig, now=now)
    assert not local.verify(key, f"{exp}.0", sig, now=now)
    assert not local.verify(key, "-1", sig, now=now)
    other = LocalStorage(local.root, "http://media.test", b"another-secret-that-is-32-bytes-long")
    assert not other.verify(key, exp, sig, now=now)
    with pytest.raises(StorageError):
        local.sign(key, 0)
    with pytest.raises(ValueError):
        LocalStorage(local.root, "http://media.test", b"short")


# a real server: uvicorn on 127.0.0.1 in a background thread (apiutil.ServerThread)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStorage]:
    store = LocalStorage(tmp_path_factory.mktemp("served"), "http://unset", SIGNING_SECRET)
    with ServerThread(Starlette(routes=[store.route()]), lifespan="off") as server:
        store.public_base_url = server.url
        yield store


def test_signed_url_served_by_real_server(served: LocalStorage) -> None:
    key, text_key = media_key(), media_key(ext="txt")

    async def go() -> None:
        await served.put(key, PNG, "image/png")
        await served.put(text_key, b"<script>alert(1)</script>", "text/html; charset=utf-8")
        url = await served.signed_url(key, 60)
        assert url.startswith(f"{served.public_base_url}/media-files/{key}?exp=")
        async with httpx.AsyncClient() as http:
            r = await http.get(url)
            assert r.status_code == 200
            assert r.content == PNG
            assert r.headers["content-type"] == "image/png"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["cache-control"].startswith("private, max-age=")
            head = await http.head(url)
            assert head.status_code == 200 and head.content == b""
            r = await http.get(url, headers={"Range": "bytes=0-7"})
            assert r.status_code == 206 and r.content == PNG[:8]
            r = await http.get(await served.signed_url(text_key, 60))
            assert r.status_code == 200
            assert "sandbox" in r.headers["content-security-policy"]
            # a valid signature for an object that is gone
            await served.delete(key)
            assert (await http.get(url)).status_code == 404

    run(go())


SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
HTML = b"<!doctype html><script>alert(document.cookie)</script>"


@pytest.mark.parametrize(
    ("data", "declared", "served_as", "disposition"),
    [
        (SVG, "image/svg+xml", "application/octet-stream", "attachment"),
        (HTML, "text/html", "application/octet-stream", "attachment"),
        (HTML, "image/png", "application/octet-stream", "attachment"),
        (PNG, "text/html", "image/png", "inline"),
    ],
)
def test_local_serves_the_type_of_the_bytes(
    served: LocalStorage, data: bytes, declared: str, served_as: str, disposition: str
) -> None:
    key = media_key()

    async def go() -> httpx.Response:
        await served.put(key, data, declared)
        async with httpx.AsyncClient() as http:
            return await http.get(await served.signed_url(key, 60))

    r = run(go())
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == served_as
    assert r.headers["content-disposition"] == f'{disposition}; filename="{key.rsplit("/")[-1]}"'


def test_local_side_file_cannot_make_html(served: LocalStorage) -> None:
    """A side file saying text/html (old or edited) does not decide the served type."""
    key = media_key()
    run(served.put(key, HTML, "text/html"))
    (served.root / key).with_name("0.png~content-type").write_text("text/html")
    r = httpx.get(run(served.signed_url(key, 60)))
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment")


def test_signed_url_rejections(served: LocalStorage) -> None:
    key, other = media_key(), media_key()
    base = served.public_base_url

    async def go() -> None:
        await served.put(key, PNG, "image/png")
        await served.put(other, b"other", "image/png")
        url = await served.signed_url(key, 60)
        parts = urlsplit(url)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        exp, sig = q["exp"], q["sig"]
        flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
        expired = served.sign(key, 60, now=time.time() - 120)
        forbidden = [
            expired,
            f"{base}/media-files/{key}?exp={exp}&sig={flipped}",  # tampered signature
            f"{base}/media-files/{other}?exp={exp}&sig={sig}",  # tampered key
            f"{base}/media-files/{key}?exp={int(exp) + 3600}&sig={sig}",  # tampered expiry
            f"{base}/media-files/{key}",  # no parameters
            f"{base}/media-files/{key}?exp={exp}",  # no signature
            f"{base}/media-files/{key}?sig={sig}",  # no expiry
            f"{base}/media-files/{key}?exp=&sig=",
            f"{base}/media-files/{key}?exp={exp}&sig={sig}x",
            f"{base}/media-files/media/%2e%2e/%2e%2e/etc/passwd?exp={exp}&sig={sig}",
            f"{base}/media-files/media%2F..%2F..%2Fetc%2Fpasswd?exp={exp}&sig={sig}",
            f"{base}/media-files/%2Fetc%2Fpasswd?exp={exp}&sig={sig}",
            f"{base}/media-files/media/x%5C..%5Cy?exp={exp}&sig={sig}",
            f"{base}/media-files/media/x%00.png?exp={exp}&sig={sig}",
        ]
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).status_code == 200
            for bad in forbidden:
                r = await http.get(bad)
                assert r.status_code == 403, bad
                assert r.content == b"forbidden"

    run(go())


# --- S3Storage against moto's server mode ------------------------------------------------------

REGION = "eu-central-1"
ROOT_KEY = ("testing", "testing")


@dataclass(frozen=True)
class Moto:
    endpoint: str

    def client(self, service: str, key: tuple[str, str] = ROOT_KEY) -> Any:
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def bucket(self) -> str:
        return self.bucket_for(ROOT_KEY)

    def bucket_for(self, key: tuple[str, str]) -> str:
        name = f"media-{uuid.uuid4().hex[:12]}"
        self.client("s3", key).create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        return name

    def storage(self, bucket: str, key: tuple[str, str] = ROOT_KEY, **kw: Any) -> S3Storage:
        return S3Storage(
            bucket=bucket,
            endpoint_url=self.endpoint,
            region=REGION,
            access_key_id=key[0],
            secret_access_key=key[1],
            **kw,
        )

    def set_auth(self, enforce: bool) -> None:
        # moto's documented switch (also what @set_initial_no_auth_action_count does in
        # server mode): after N unauthenticated actions, every request is checked against IAM.
        body = b"0" if enforce else b"inf"
        httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=body).raise_for_status()


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    m = Moto(f"http://{host}:{port}")
    try:
        yield m
    finally:
        m.set_auth(False)
        httpx.post(f"{m.endpoint}/moto-api/reset").raise_for_status()
        server.stop()
        werkzeug_log.setLevel(level)


@pytest.fixture
def iam_user(moto: Moto) -> Iterator[tuple[str, str]]:
    """Access key of an IAM user allowed s3:* -- and auth enforcement on while the test runs."""
    iam = moto.client("iam")
    name = f"creditgate-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
    ak = iam.create_access_key(UserName=name)["AccessKey"]
    moto.set_auth(True)
    try:
        yield ak["AccessKeyId"], ak["SecretAccessKey"]
    finally:
        moto.set_auth(False)


def presigned_signature_valid(url: str, key: tuple[str, str], now: dt.datetime) -> bool:
    """Recompute a SigV4 query signature the way S3 does (botocore's signer), check expiry."""
    parts = urlsplit(url)
    pairs = [p for p in parts.query.split("&") if not p.startswith("X-Amz-Signature=")]
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    signed_at = dt.datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    if now >= signed_at + dt.timedelta(seconds=int(q["X-Amz-Expires"])):
        return False
    scope = q["X-Amz-Credential"].split("/")
    if scope[0] != key[0]:
        return False
    request = AWSRequest(method="GET", url=urlunsplit(parts._replace(query="&".join(pairs))))
    request.context["timestamp"] = q["X-Amz-Date"]
    auth = S3SigV4QueryAuth(Credentials(*key), "s3", scope[2], expires=int(q["X-Amz-Expires"]))
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    return bool(expected == q.get("X-Amz-Signature"))


def test_s3_put_get_delete_exists(moto: Moto) -> None:
    bucket = moto.bucket()
    store = moto.storage(bucket)
    assert isinstance(store, Storage)
    key = media_key()

    async def go() -> None:
        assert not await store.exists(key)
        with pytest.raises(NotFound):
            await store.get(key)
        await store.put(key, PNG, "image/png")
        assert await store.exists(key)
        assert await store.get(key) == PNG
        await store.delete(key)
        assert not await store.exists(key)
        await store.delete(key)  # idempotent
        with pytest.raises(NotFound):
            await store.get(key)
        for bad in ("../x", "/abs", "a//b"):
            with pytest.raises(StorageError):
                await store.put(bad, b"x", "image/png")

    run(go())
    store.close()


def test_s3_prefix_and_content_type(moto: Moto) -> None:
    bucket = moto.bucket()
    store = moto.storage(bucket, prefix="/tenant-a/")
    key = media_key()
    run(store.put(key, PNG, "image/png"))
    head = moto.client("s3").head_object(Bucket=bucket, Key=f"tenant-a/{key}")
    assert head["ContentType"] == "image/png"
    assert head["ContentLength"] == len(PNG)
    assert run(moto.storage(bucket).exists(key)) is False  # unprefixed store doesn't see it
    with pytest.raises(StorageError):
        moto.storage(bucket, prefix="../up")


@pytest.mark.parametrize(
    ("data", "declared", "stored_as", "disposition"),
    [
        (SVG, "image/svg+xml", "application/octet-stream", "attachment"),
        (HTML, "text/html", "application/octet-stream", "attachment"),
        (HTML, "image/png", "application/octet-stream", "attachment"),
        (PNG, "application/octet-stream", "image/png", "inline"),
    ],
)
def test_s3_objects_take_their_type_from_the_bytes(
    moto: Moto, data: bytes, declared: str, stored_as: str, disposition: str
) -> None:
    bucket = moto.bucket()
    store = moto.storage(bucket)
    key = media_key()
    run(store.put(key, data, declared))
    head = moto.client("s3").head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == stored_as
    assert head["ContentDisposition"].startswith(disposition)


def test_s3_presigned_urls_pin_type_and_disposition(moto: Moto) -> None:
    """An object stored with a browser-renderable type (before this rule, or by another
    writer) is still served by the presigned URL as its key's media type, or downloaded."""
    bucket = moto.bucket()
    store = moto.storage(bucket)
    client = moto.client("s3")
    png_key, bin_key = media_key(), media_key(ext="bin")
    for key in (png_key, bin_key):
        client.put_object(Bucket=bucket, Key=key, Body=HTML, ContentType="text/html")
    r = httpx.get(run(store.signed_url(png_key, 60)))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"].startswith("inline")
    r = httpx.get(run(store.signed_url(bin_key, 60)))
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment")


def test_s3_presigned_url_downloads(moto: Moto) -> None:
    bucket = moto.bucket()
    store = moto.storage(bucket)
    key = media_key()
    run(store.put(key, PNG, "image/png"))
    url = run(store.signed_url(key, 120))
    parts, q = urlsplit(url), parse_qs(urlsplit(url).query)
    assert parts.path == f"/{bucket}/{key}"  # path style
    assert q["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]  # s3v4
    assert q["X-Amz-Expires"] == ["120"]
    assert q["X-Amz-Credential"][0].split("/")[2] == REGION
    r = httpx.get(url)
    assert r.status_code == 200
    assert r.content == PNG
    assert r.headers["content-type"] == "image/png"
    # the object itself is private
    assert httpx.get(f"{moto.endpoint}/{bucket}/{key}").status_code == 403
    with pytest.raises(StorageError):
        run(store.signed_url(key, 0))
    with pytest.raises(StorageError):
        run(store.signed_url(key, 8 * 24 * 3600))


def test_s3_virtual_host_style_url() -> None:
    store = S3Storage(
        bucket="media-bucket",
        endpoint_url=None,
        region="eu-west-2",
        access_key_id="AKIAEXAMPLE",
        secret_access_key="secret",
        path_style=False,
    )
    url = run(store.signed_url("media/x/0.png", 60))
    parts = urlsplit(url)
    assert parts.netloc == "media-bucket.s3.eu-west-2.amazonaws.com"
    assert parts.path == "/media/x/0.png"
    assert "eu-west-2%2Fs3%2Faws4_request" in parts.query


def test_s3_presigned_url_signature(moto: Moto) -> None:
    """Tampered or expired presigned URLs fail SigV4 verification.

    moto 5.2.5 does not check presigned URLs (any signature and expiry is accepted), so the signature is
    recomputed here with botocore's signer, as S3 does server-side.
    """
    store = moto.storage("media-bucket")
    key = media_key()
    url = run(store.signed_url(key, 60))
    now = dt.datetime.now(dt.UTC)
    assert presigned_signature_valid(url, ROOT_KEY, now)
    assert not presigned_signature_valid(url, ROOT_KEY, now + dt.timedelta(seconds=61))
    assert not presigned_signature_valid(url, ("testing", "other-secret"), now)
    assert not presigned_signature_valid(url.replace(key, media_key()), ROOT_KEY, now)
    assert not presigned_signature_valid(
        url.replace("X-Amz-Expires=60", "X-Amz-Expires=6000"), ROOT_KEY, now
    )
    sig = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert not presigned_signature_valid(url.replace(sig, flipped), ROOT_KEY, now)


def test_s3_with_iam_auth_enforced(moto: Moto, iam_user: tuple[str, str]) -> None:
    bucket = moto.bucket_for(iam_user)
    key = media_key()
    store = moto.storage(bucket, iam_user)

    async def go() -> None:
        await store.put(key, PNG, "image/png")
        assert await store.exists(key)
        assert await store.get(key) == PNG
        for creds in ((iam_user[0], "wrong-secret"), ("AKIAUNKNOWNKEY000000", "x")):
            bad = moto.storage(bucket, creds, max_attempts=1)
            with pytest.raises(StorageError) as info:
                await bad.get(key)
            assert not isinstance(info.value, NotFound)
            with pytest.raises(StorageError):
                await bad.put(key, b"evil", "image/png")
            with pytest.raises(StorageError):
                await bad.exists(key)
        assert await store.get(key) == PNG
        await store.delete(key)
        assert not await store.exists(key)

    run(go())


# --- presigned URLs checked by a server ---------------------------------------------------------
#
# moto accepts any presigned signature and expiry, so a real-HTTP check needs a server that
# enforces them: a gateway in front of moto that does what S3 does with a presigned GET
# (SigV4 query authentication: recompute the signature for the request it received, refuse
# an expired one, both with S3's 403 error documents) and forwards the rest.

_S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message></Error>"
)


def presigned_gateway(upstream: str, key: tuple[str, str]) -> Starlette:
    async def handle(request: Request) -> Response:
        url = str(request.url)
        if "X-Amz-Signature=" in request.url.query:
            q = {k: v[0] for k, v in parse_qs(request.url.query).items()}
            signed_at = dt.datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=dt.UTC
            )
            now = dt.datetime.now(dt.UTC)
            if now >= signed_at + dt.timedelta(seconds=int(q["X-Amz-Expires"])):
                body = _S3_ERROR.format(code="AccessDenied", message="Request has expired")
                return Response(body, 403, media_type="application/xml")
            if not presigned_signature_valid(url, key, now):
                body = _S3_ERROR.format(
                    code="SignatureDoesNotMatch",
                    message="The request signature we calculated does not match the signature you provided.",
                )
                return Response(body, 403, media_type="application/xml")
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with httpx.AsyncClient() as client:
            upstream_response = await client.request(
                request.method,
                upstream + request.url.path,
                params=request.url.query or None,
                headers=headers,
                content=await request.body(),
            )
        drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        return Response(
            upstream_response.content,
            upstream_response.status_code,
            {k: v for k, v in upstream_response.headers.items() if k.lower() not in drop},
        )

    methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", handle, methods=methods)])


@pytest.fixture(scope="module")
def checked_s3(moto: Moto) -> Iterator[tuple[Moto, str]]:
    """A gateway that enforces presigned URLs in front of moto; yields (moto, gateway url)."""
    with ServerThread(presigned_gateway(moto.endpoint, ROOT_KEY), lifespan="off") as server:
        yield moto, server.url


def test_s3_presigned_urls_are_enforced_over_http(checked_s3: tuple[Moto, str]) -> None:
    moto, gateway = checked_s3
    bucket = moto.bucket()
    store = S3Storage(
        bucket=bucket,
        endpoint_url=gateway,
        region=REGION,
        access_key_id=ROOT_KEY[0],
        secret_access_key=ROOT_KEY[1],
    )
    key = media_key()
    run(store.put(key, PNG, "image/png"))  # header-signed calls pass through the gateway

    url = run(store.signed_url(key, 60))
    assert url.startswith(gateway)
    ok = httpx.get(url)
    assert ok.status_code == 200 and ok.content == PNG

    sig = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    tampered = [
        url.replace(sig, flipped),  # signature
        url.replace(key, media_key()),  # object key
        url.replace("X-Amz-Expires=60", "X-Amz-Expires=6000"),  # lifetime
    ]
    for bad in tampered:
        response = httpx.get(bad)
        assert response.status_code == 403, bad
        assert b"SignatureDoesNotMatch" in response.content

    # X-Amz-Date has whole seconds, so a 2 s URL is good for at least 1 s after signing,
    # and gone 3.1 s after it.
    short = run(store.signed_url(key, 2))
    assert httpx.get(short).status_code == 200
    time.sleep(3.1)
    expired = httpx.get(short)
    assert expired.status_code == 403
    assert b"Request has expired" in expired.content
