"""moto's S3 server behind a fault-injecting proxy, both on 127.0.0.1.

    with FaultyS3() as s3:                 # moto (server mode) + the proxy in front of it
        s3.mode = "fail_puts"              # PutObject answers 500 InternalError, writes nothing
        s3.mode = "ack_lost"               # PutObject is written, then answered 500
        s3.objects(bucket)                 # what moto really holds

The proxy forwards everything else unchanged (moto runs with auth off, so SigV4 signatures
made for the proxy's host are not re-checked) and records every request.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import boto3
import httpx
from botocore.config import Config
from moto.server import ThreadedMotoServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes import LiveServer

REGION = "eu-central-1"
ACCESS_KEY = ("testing", "testing")
Mode = Literal["pass", "fail_puts", "ack_lost"]
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}
_INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


class FaultyS3:
    def __init__(self) -> None:
        self.mode: Mode = "pass"
        self.seen: list[Seen] = []
        self.stored_unacknowledged: list[str] = []  # ack_lost: keys moto really stored
        self.endpoint = ""  # the proxy: what creditgate is configured with
        self.moto_endpoint = ""
        self._lock = threading.Lock()
        self._moto: ThreadedMotoServer | None = None
        self._proxy: LiveServer | None = None
        self._werkzeug_level = logging.NOTSET

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FaultyS3:
        werkzeug = logging.getLogger("werkzeug")
        self._werkzeug_level = werkzeug.level
        werkzeug.setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_endpoint = f"http://{host}:{port}"
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._forward,
                    methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
                )
            ]
        )
        self._proxy = LiveServer(app)
        self.endpoint = self._proxy.start()
        return self

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
        if self._moto is not None:
            self._moto.stop()
        logging.getLogger("werkzeug").setLevel(self._werkzeug_level)

    def __enter__(self) -> FaultyS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- direct access to moto ------------------------------------------------------------

    def client(self) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.moto_endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY[0],
            aws_secret_access_key=ACCESS_KEY[1],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def bucket(self) -> str:
        name = f"media-{uuid.uuid4().hex[:12]}"
        client = self.client()
        try:
            client.create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        finally:
            client.close()
        return name

    def objects(self, bucket: str) -> list[str]:
        client = self.client()
        try:
            listing = client.list_objects_v2(Bucket=bucket)
        finally:
            client.close()
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def requests(self, method: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method]

    # --- the proxy ------------------------------------------------------------------------

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        is_put_object = request.method == "PUT" and path.strip("/").count("/") >= 1
        if is_put_object and self.mode == "fail_puts":
            return self._record(
                request, Response(_INTERNAL_ERROR, 500, media_type="application/xml")
            )
        async with httpx.AsyncClient(timeout=30) as http:
            upstream = await http.request(
                request.method,
                self.moto_endpoint + path,
                params=list(request.query_params.multi_items()),
                headers=[
                    (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS
                ],
                content=body,
            )
        if is_put_object and self.mode == "ack_lost" and upstream.status_code == 200:
            # Stored, but the client never learns it: it must assume nothing and clean up.
            with self._lock:
                self.stored_unacknowledged.append(path)
            return self._record(
                request, Response(_INTERNAL_ERROR, 500, media_type="application/xml")
            )
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        return self._record(request, Response(upstream.content, upstream.status_code, headers))

    def _record(self, request: Request, response: Response) -> Response:
        with self._lock:
            self.seen.append(Seen(request.method, request.url.path, response.status_code))
        return response
