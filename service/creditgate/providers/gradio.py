"""Adapter for a Gradio app (Hugging Face Space or self-hosted) through its HTTP API.

This is the documented "Use via API" / curl flow, spoken with httpx directly rather than
`gradio_client` (whose sync, thread-based client and extra dependencies buy nothing here):

1. POST {endpoint}/gradio_api/call/{fn} {"data": [...]} -> {"event_id"}
2. GET  {endpoint}/gradio_api/call/{fn}/{event_id} -> SSE: `generating` / `heartbeat`
   events, then `complete` with the output list (or `error`).
File outputs are FileData objects {"path", "url", "meta": {"_type": "gradio.FileData"}};
their `url` is downloaded. An input image (edit) is first uploaded to
{endpoint}/gradio_api/upload and passed as FileData by server path. Private Spaces take
`Authorization: Bearer <HF token>`.

Route options: `fn` (api_name, default "predict") and `inputs`, the ordered `data` list: a
string names a job param (prompt, negative_prompt, width, height, steps, seed, cfg_scale,
duration_seconds, fps, init_image, message = last user message), {"value": x} is a literal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

from creditgate.providers.base import (
    AdapterOutput,
    MediaBlob,
    ProviderError,
    last_user_text,
    loras,
    require_kind,
)
from creditgate.providers.call import Call

DEFAULT_INPUTS: Mapping[str, list[Any]] = {
    "image": ["prompt"],
    "video": ["prompt"],
    "edit": ["init_image", "prompt"],
    "chat": ["message"],
}
_FILE_DATA = "gradio.FileData"


def _is_file_data(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    meta = value.get("meta")
    if isinstance(meta, dict) and meta.get("_type") == _FILE_DATA:
        return True
    return bool(value.get("url") or value.get("path")) and "orig_name" in value


def _files(value: Any) -> list[dict[str, Any]]:
    """FileData objects anywhere in an output list, in order (images, galleries, videos)."""
    if _is_file_data(value):
        return [value]
    found: list[dict[str, Any]] = []
    if isinstance(value, list):
        for item in value:
            found.extend(_files(item))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(_files(item))
    return found


class GradioAdapter:
    name = "gradio"
    kinds = frozenset({"image", "edit", "video", "chat"})

    def auth_headers(self, api_key: str | None, runner_secret: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def run(self, call: Call) -> AdapterOutput:
        job = call.job
        require_kind(self, job.kind)
        if loras(job.params):
            raise ProviderError("not_configured", "Gradio routes cannot take LoRAs")
        fn = str(job.options.get("fn") or "predict").strip("/")
        if not fn:
            raise ProviderError("not_configured", "Gradio route has no fn (api_name)")
        fn_path = quote(fn, safe="")
        data = [await self._input(call, spec) for spec in self._input_specs(job.kind, call)]

        submitted = await call.send_json(
            "POST", call.url(f"/gradio_api/call/{fn_path}"), json_body={"data": data}
        )
        event_id = submitted.get("event_id") if isinstance(submitted, dict) else None
        if not isinstance(event_id, str) or not event_id:
            raise call.error("provider_failed", "Gradio returned no event_id")
        output = await self._result(call, call.url(f"/gradio_api/call/{fn_path}/{quote(event_id)}"))

        if job.kind == "chat":
            text = next((item for item in output if isinstance(item, str)), "")
            return AdapterOutput(text=text)
        media: list[MediaBlob] = []
        for file in _files(output):
            url = file.get("url")
            if not url and isinstance(file.get("path"), str):
                url = call.url(f"/gradio_api/file={quote(file['path'])}")
            media.append(await call.download(url, file.get("mime_type")))
        return AdapterOutput(media=media)

    @staticmethod
    def _input_specs(kind: str, call: Call) -> list[Any]:
        specs = call.job.options.get("inputs", DEFAULT_INPUTS[kind])
        if not isinstance(specs, list):
            raise ProviderError("not_configured", "Gradio route option inputs must be a list")
        return specs

    async def _input(self, call: Call, spec: Any) -> Any:
        if isinstance(spec, dict) and "value" in spec:
            return spec["value"]
        if not isinstance(spec, str):
            raise ProviderError("not_configured", "Gradio input spec must be a name or {value}")
        if spec == "message":
            return last_user_text(call.job.params)
        if spec == "init_image":
            if not call.job.init_image:
                raise ProviderError("bad_request", "edit needs an input image")
            return await self._upload(call, call.job.init_image)
        return call.job.params.get(spec)

    @staticmethod
    async def _upload(call: Call, data: bytes) -> dict[str, Any]:
        paths = await call.send_json(
            "POST",
            call.url("/gradio_api/upload"),
            files=[("files", ("input.png", data, "application/octet-stream"))],
        )
        if not isinstance(paths, list) or not paths or not isinstance(paths[0], str):
            raise call.error("provider_failed", "Gradio upload returned no path")
        return {"path": paths[0], "meta": {"_type": _FILE_DATA}}

    @staticmethod
    async def _result(call: Call, url: str) -> list[Any]:
        """Read the SSE stream until `complete` (output list) or `error`."""
        event, lines = "message", []
        async with aclosing(
            call.lines("GET", url, headers={"Accept": "text/event-stream"})
        ) as stream:
            async for line in stream:
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    lines.append(line[5:].removeprefix(" "))
                elif line == "":
                    output = _dispatch(call, event, lines)
                    if output is not None:
                        return output
                    event, lines = "message", []
            output = _dispatch(call, event, lines)  # stream closed without a blank line
            if output is not None:
                return output
        raise call.error("server_error", "Gradio stream ended without a result")


def _dispatch(call: Call, event: str, lines: list[str]) -> list[Any] | None:
    """The output list of a `complete` event; raise on `error`; None for anything else."""
    raw = "\n".join(lines)
    if event == "complete":
        try:
            output = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise call.error("provider_failed", "Gradio result is not JSON") from exc
        return output if isinstance(output, list) else [output]
    if event == "error":
        raise call.error("provider_failed", f"Gradio error: {raw or 'null'}")
    return None
