"""Object storage for generation outputs.

Outputs are uploaded server-side; clients only ever see keys and expiring signed URLs.

* :class:`LocalStorage` -- the embedded default: files under a root directory, served by the
  service itself at ``GET /media-files/{key}`` behind HMAC-SHA256 signed, expiring URLs.
* :class:`S3Storage` -- any S3-compatible store through boto3 (Supabase Storage's S3 endpoint,
  AWS S3, Cloudflare R2, MinIO), with SigV4 (``s3v4``) presigned GET URLs. boto3 is blocking,
  so every call runs in a worker thread.

Keys are validated by :func:`validate_key` before they touch a path or a request.

Objects are untrusted content served to browsers. Whatever type a caller declares, an object
is stored and served with the type its bytes show (:func:`served_type`): a raster image or a
video the worker stores, otherwise ``application/octet-stream``; never ``text/html`` or
``image/svg+xml``. Every object carries a ``Content-Disposition``: ``inline`` for those
media types, ``attachment`` for anything else, so a browser downloads rather than renders
it. S3 presigned URLs also pin ``response-content-type`` and
``response-content-disposition`` from the key's extension, which covers objects written
before this rule.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio.to_thread
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from creditgate.media import STORABLE_TYPES, sniff

__all__ = [
    "MAX_KEY_LENGTH",
    "LocalStorage",
    "NotFound",
    "S3Storage",
    "Storage",
    "StorageError",
    "validate_key",
]

T = TypeVar("T")

MAX_KEY_LENGTH = 1024  # S3's limit, in bytes; keys are ASCII
#: SigV4 presigned URLs cannot outlive 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(;[ -~]*)?")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_DEFAULT_CONTENT_TYPE = "application/octet-stream"
_EXTENSION_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mov": "video/quicktime",
}
_SNIFF_BYTES = 16


def served_type(data: bytes) -> str:
    """The content type an object is stored and served with, from its first bytes only."""
    sniffed = sniff(data[:_SNIFF_BYTES])
    return sniffed if sniffed in STORABLE_TYPES else _DEFAULT_CONTENT_TYPE


def content_disposition(key: str, content_type: str) -> str:
    """``inline`` for the media types a browser shows as media, else ``attachment``.

    The file name is the key's last segment, which validate_key limits to [A-Za-z0-9._-].
    """
    mode = "inline" if content_type in STORABLE_TYPES else "attachment"
    return f'{mode}; filename="{key.rsplit("/", 1)[-1]}"'


def key_type(key: str) -> str:
    """The type the worker's key extension stands for (media/<id>/<n>-<k>.<ext>)."""
    return _EXTENSION_TYPES.get(key.rsplit(".", 1)[-1].lower(), _DEFAULT_CONTENT_TYPE)


class StorageError(Exception):
    """A storage operation failed (bad key, backend error, I/O error)."""


class NotFound(StorageError, KeyError):
    """No object under that key."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"


@runtime_checkable
class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes:
        """Return the object's bytes; raise :class:`NotFound` if absent."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting an absent key is not an error."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def signed_url(self, key: str, expires_in: int) -> str:
        """A URL that serves the object to anyone holding it, for ``expires_in`` seconds."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise :class:`StorageError`.

    Keys look like ``media/<uuid>/<n>.png``: ``/``-separated segments of ``[A-Za-z0-9._-]``.
    Rejected: empty keys and segments (``a//b``, leading or trailing ``/``, so no absolute
    paths), segments starting with ``.`` (``.``, ``..``, hidden files), backslashes, NUL and
    any other character, keys longer than :data:`MAX_KEY_LENGTH`.
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise StorageError(f"invalid storage key: {key!r}")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise StorageError(f"invalid storage key: {key!r}")
    return key


def _check_content_type(content_type: str) -> str:
    if len(content_type) > 255 or not _CONTENT_TYPE.fullmatch(content_type):
        raise StorageError(f"invalid content type: {content_type!r}")
    return content_type


def _check_expiry(expires_in: int) -> int:
    if not 0 < expires_in <= MAX_PRESIGN_SECONDS:
        raise StorageError(f"expires_in must be in 1..{MAX_PRESIGN_SECONDS}")
    return expires_in


async def _in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


# --- local filesystem -------------------------------------------------------------------------

# Side files carry a "~", which no valid key contains, so they can never collide with an object.
_META_SUFFIX = "~content-type"
_TMP_MARK = "~tmp-"


class LocalStorage:
    """Files under ``root``; each object's content type sits next to it in ``<name>~content-type``.

    Writes go to a temporary file in the same directory, are fsynced, then renamed over the
    target, so a reader (or a crash) never sees half a file. Signed URLs are
    ``{public_base_url}/media-files/{key}?exp=<unix seconds>&sig=<hex HMAC-SHA256>``; mount
    :meth:`route` in the app (at the root, so the path matches) to serve them.
    """

    def __init__(self, root: Path, public_base_url: str, signing_secret: bytes) -> None:
        if len(signing_secret) < 32:
            raise ValueError("signing_secret must be at least 32 bytes")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve(strict=True)
        self.public_base_url = public_base_url.rstrip("/")
        self._secret = signing_secret

    # paths

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if path == self.root or not path.is_relative_to(self.root):
            raise StorageError(f"storage key escapes the root: {key!r}")
        return path

    @staticmethod
    def _meta(path: Path) -> Path:
        return path.with_name(path.name + _META_SUFFIX)

    # Storage protocol

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        meta = self._meta(path)
        _check_content_type(content_type)  # the caller's claim is checked, then not used
        try:
            await _in_thread(self._put_sync, path, meta, data, served_type(data).encode())
        except OSError as exc:
            raise StorageError(f"cannot store {key!r}: {exc}") from exc

    def _put_sync(self, path: Path, meta: Path, data: bytes, content_type: bytes) -> None:
        # Content type first: a crash in between leaves a side file without an object, which
        # reads as absent, never an object served with a missing type.
        _atomic_write(meta, content_type)
        _atomic_write(path, data)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await _in_thread(path.read_bytes)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r}: {exc}") from exc

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await _in_thread(self._delete_sync, path)
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r}: {exc}") from exc

    def _delete_sync(self, path: Path) -> None:
        for p in (path, self._meta(path)):
            try:
                p.unlink()
            except (FileNotFoundError, NotADirectoryError):
                pass
        # Prune now-empty directories (media/<uuid>/) up to the root; a concurrent put
        # recreates them (see _atomic_write).
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        return await _in_thread(path.is_file)

    async def signed_url(self, key: str, expires_in: int) -> str:
        return self.sign(key, expires_in)

    # signing

    def sign(self, key: str, expires_in: int, now: float | None = None) -> str:
        validate_key(key)
        _check_expiry(expires_in)
        exp = str(int(time.time() if now is None else now) + expires_in)
        return f"{self.public_base_url}/media-files/{key}?exp={exp}&sig={self._mac(key, exp)}"

    def _mac(self, key: str, exp: str) -> str:
        # Domain-separated and unambiguous: neither a key nor exp can contain "\n".
        message = f"creditgate-media-v1\n{key}\n{exp}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def verify(self, key: str, exp: str, sig: str, now: float | None = None) -> bool:
        """True if ``sig`` is this store's signature of ``key`` until ``exp``, not yet expired."""
        try:
            validate_key(key)
        except StorageError:
            return False
        if not (exp.isascii() and exp.isdigit() and len(exp) <= 12):
            return False
        if not _HEX_SHA256.fullmatch(sig):
            return False
        if int(exp) <= (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._mac(key, exp), sig)

    # serving

    def route(self) -> Route:
        """``GET``/``HEAD /media-files/{key:path}``: 403 unless the signature is valid."""
        return Route("/media-files/{key:path}", self._serve, methods=["GET"], name="media-files")

    async def _serve(self, request: Request) -> Response:
        key = request.path_params["key"]
        exp = request.query_params.get("exp", "")
        sig = request.query_params.get("sig", "")
        if not self.verify(key, exp, sig):
            return PlainTextResponse("forbidden", status_code=403)
        try:
            path = self._path(key)
        except StorageError:  # e.g. a symlink pointing out of the root
            return PlainTextResponse("forbidden", status_code=403)
        try:
            stat, content_type = await _in_thread(self._stat_sync, path)
        except (FileNotFoundError, NotADirectoryError):
            return PlainTextResponse("not found", status_code=404)
        remaining = max(0, int(exp) - int(time.time()))
        return FileResponse(
            path,
            media_type=content_type,
            stat_result=stat,
            headers={
                "Cache-Control": f"private, max-age={remaining}",
                "Content-Disposition": content_disposition(key, content_type),
                "X-Content-Type-Options": "nosniff",
                # Outputs are untrusted content served from the API's origin.
                "Content-Security-Policy": "default-src 'none'; sandbox",
            },
        )

    def _stat_sync(self, path: Path) -> tuple[os.stat_result, str]:
        stat = path.stat()
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "not a file", str(path))
        # The type comes from the file's own first bytes, whatever its side file says
        # (files written before types came from bytes, or edited on disk).
        with path.open("rb") as f:
            return stat, served_type(f.read(_SNIFF_BYTES))


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync and rename."""
    for attempt in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}{_TMP_MARK}{secrets.token_hex(8)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            if attempt == 2:
                raise
            continue  # the directory was pruned by a concurrent delete: recreate it
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- S3-compatible ----------------------------------------------------------------------------

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Storage:
    """Objects in an S3-compatible bucket, optionally under ``prefix``.

    ``endpoint_url`` is None for AWS, or for example:

    * Supabase: ``https://<ref>.storage.supabase.co/storage/v1/s3``, path style, region = the
      project's region, S3 access keys from the dashboard;
    * R2: ``https://<account>.r2.cloudflarestorage.com``, region ``auto``;
    * MinIO: ``http://minio:9000``, path style.
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        path_style: bool = True,
        prefix: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        self.bucket = bucket
        self.prefix = validate_key(prefix.strip("/")) + "/" if prefix.strip("/") else ""
        config = Config(
            signature_version="s3v4",
            region_name=region,
            s3={"addressing_style": "path" if path_style else "virtual"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    def close(self) -> None:
        self._client.close()

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    async def _call(self, key: str, operation: str, **params: Any) -> Any:
        try:
            return await _in_thread(getattr(self._client, operation), **params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND_CODES:
                raise NotFound(key) from None
            raise StorageError(f"s3 {operation} {key!r} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"s3 {operation} {key!r} failed: {exc}") from exc

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        _check_content_type(content_type)  # the caller's claim is checked, then not used
        await self._call(
            key,
            "put_object",
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=served_type(data),
            ContentDisposition=content_disposition(key, served_type(data)),
        )

    async def get(self, key: str) -> bytes:
        response = await self._call(key, "get_object", Bucket=self.bucket, Key=self._key(key))
        body = response["Body"]
        try:
            data: bytes = await _in_thread(body.read)
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"s3 read {key!r} failed: {exc}") from exc
        finally:
            body.close()
        return data

    async def delete(self, key: str) -> None:
        # DeleteObject is idempotent on S3: an absent key answers 204 too.
        try:
            await self._call(key, "delete_object", Bucket=self.bucket, Key=self._key(key))
        except NotFound:
            pass

    async def exists(self, key: str) -> bool:
        try:
            await self._call(key, "head_object", Bucket=self.bucket, Key=self._key(key))
        except NotFound:
            return False
        return True

    async def signed_url(self, key: str, expires_in: int) -> str:
        url: str = await _in_thread(
            self._client.generate_presigned_url,
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(key),
                "ResponseContentType": key_type(key),
                "ResponseContentDisposition": content_disposition(key, key_type(key)),
            },
            ExpiresIn=_check_expiry(expires_in),
            HttpMethod="GET",
        )
        return url
