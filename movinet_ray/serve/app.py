"""The Serve application: HTTP and WebSocket routes over a :class:`Predictor`.

Routes (FastAPI ingress of one deployment, see ``docs/serve.md``)::

    GET  /                 the live demo page (static HTML/JS in this package)
    GET  /v1/health        liveness + which model
    GET  /v1/model         classes, input size, fps the model expects
    GET  /v1/stats         this replica's counters (sessions, batch sizes of model calls)
    POST /v1/classify      multipart upload (field "video") -> top-k for the whole video
    WS   /v1/stream        a live session (protocol in :mod:`.protocol`)

This module only parses requests and writes answers; the model work is the predictor's.
Each session holds one stream-engine slot for its lifetime; ``_step_batch`` is the
``@serve.batch`` point where the frames of concurrent sessions meet in one model call.
"""

# No `from __future__ import annotations` here: FastAPI must see the route parameters' real
# types (Request, WebSocket). Serve's ingress pickles the routes when the class is decorated,
# so everything they use is defined above the deployment class.
import asyncio
import dataclasses
import itertools
import logging
import tempfile
import time
from importlib import resources
from typing import Any

import torch
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from ray.serve import Application
from starlette.requests import ClientDisconnect

from ..data import VideoDecodeError
from ..streaming import EngineFull
from .config import ServeConfig, load_serve_config
from .predictor import Predictor
from .protocol import (
    CLOSE_FULL,
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    ProtocolError,
    StartMessage,
    close_reason,
    decode_frame,
    parse_control,
    parse_start,
)
from .upload import UploadError, receive_upload

log = logging.getLogger("movinet_ray.serve")

UPLOAD_FIELD = "video"
STATIC = {"app.js": "text/javascript"}

# Frames a session may have received but not yet stepped; a client that sends faster waits
# in the socket (back-pressure) instead of growing the replica's memory.
INBOX_FRAMES = 32
_STOP = object()


class _Session:
    """One connection: start, frames (answered every N), stop.

    A reader task receives and prepares frames while the stepper runs the model, so frames
    that arrive during a model call join the next one: a session that fell behind catches up
    in one step instead of one model call per queued frame.
    """

    def __init__(self, key: int, ws: WebSocket, predictor: Predictor, cfg: ServeConfig,
                 step):
        self.key, self.ws, self.predictor, self.cfg, self.step = key, ws, predictor, cfg, step
        self.frames = 0
        self.logits: torch.Tensor | None = None

    async def run(self) -> tuple[int, str]:
        msg = await self._receive()
        if msg.get("text") is None:
            raise ProtocolError(CLOSE_PROTOCOL, "send a start message (JSON text) before "
                                                "frames")
        info = self.predictor.info
        start = parse_start(msg["text"], self.cfg.top_k, info.num_classes,
                            self.cfg.max_frame_side)
        await self.ws.send_json({
            "type": "ready", "session": self.key, "input_size": [self.predictor.size] * 2,
            "fps": info.fps, "every": start.every, "top_k": start.top_k,
            "idle_timeout_s": self.cfg.idle_timeout_s})
        inbox: asyncio.Queue = asyncio.Queue(maxsize=INBOX_FRAMES)
        reader = asyncio.create_task(self._read(start, inbox))
        try:
            return await self._answer(start, inbox)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, start: StartMessage, inbox: asyncio.Queue) -> None:
        """Prepared frames, then _STOP or the exception that ends the session, in order."""
        try:
            while True:
                msg = await self._receive()
                if msg.get("bytes") is None:
                    parse_control(msg.get("text") or "")
                    await inbox.put(_STOP)
                    return
                received = time.perf_counter()
                frame = await asyncio.to_thread(self._prepare, msg["bytes"], start)
                await inbox.put((frame, received))
        except Exception as e:  # a bad message or a disconnect ends the session after the
            await inbox.put(e)  # frames before it are answered

    async def _answer(self, start: StartMessage, inbox: asyncio.Queue) -> tuple[int, str]:
        group: list[tuple[torch.Tensor, float]] = []  # received, fewer than `every`
        while True:
            items = [await inbox.get()]
            while not inbox.empty():
                items.append(inbox.get_nowait())
            end = items.pop() if items[-1] is _STOP or isinstance(items[-1], Exception) else None
            chunks, answers = [], []
            for frame, received in items:
                group.append((frame, received))
                self.frames += 1
                if len(group) == start.every:
                    chunks.append(torch.cat([f for f, _ in group], dim=1))
                    answers.append((self.frames - 1, received))
                    group = []
            if end is _STOP and group:  # stop flushes an incomplete group
                chunks.append(torch.cat([f for f, _ in group], dim=1))
                answers.append((self.frames - 1, None))
            if chunks:
                await self._advance(chunks, answers, start)
            if end is _STOP:
                top = [] if self.logits is None else self.predictor.top_k(self.logits,
                                                                          start.top_k)
                await self.ws.send_json({"type": "end", "frames": self.frames, "top_k": top})
                return CLOSE_NORMAL, "stop"
            if end is not None:
                raise end

    def _prepare(self, data: bytes, start: StartMessage) -> torch.Tensor:
        return self.predictor.prepare(decode_frame(data, start))

    async def _advance(self, chunks: list[torch.Tensor], answers: list[tuple[int, float | None]],
                       start: StartMessage) -> None:
        results = await self.step((self.key, chunks))
        if results is None:
            raise RuntimeError(f"session {self.key} lost its slot")
        for logits, (frame, received) in zip(results, answers):
            self.logits = logits
            if received is not None:  # None: the stop flush, answered by "end"
                await self.ws.send_json({
                    "type": "prediction", "frame": frame, "frames": frame + 1,
                    "top_k": self.predictor.top_k(logits, start.top_k),
                    "latency_ms": (time.perf_counter() - received) * 1000.0})

    async def _receive(self) -> dict[str, Any]:
        timeout = self.cfg.idle_timeout_s
        try:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
        except asyncio.TimeoutError:
            raise ProtocolError(CLOSE_IDLE, f"idle for {timeout:g} s: session closed") from None
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        return msg


def _log_through_serve() -> None:
    """Send this package's logs (INFO and up) to Serve's replica log, beside its request lines;
    unconfigured, Python would drop them."""
    ours, serve_logger = logging.getLogger("movinet_ray"), logging.getLogger("ray.serve")
    for handler in serve_logger.handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def _static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text()


api = FastAPI(title="movinet-ray", description="MoViNet video classification: whole videos "
              "and live streaming sessions")


@serve.deployment(name="MoViNet")
@serve.ingress(api)
class MoViNetServer:
    """One replica: the model, its session slots, and the routes."""

    def __init__(self, cfg: ServeConfig):
        # first, so that __del__ finds it even when loading the model fails
        self._uploads = tempfile.TemporaryDirectory(prefix="movinet-uploads-")
        _log_through_serve()
        self.cfg = cfg
        self.predictor = Predictor.load(cfg)
        self._ids = itertools.count(1)
        self._step_batch.set_max_batch_size(cfg.max_sessions)
        self._step_batch.set_batch_wait_timeout_s(cfg.batch_wait_ms / 1000.0)

    def __del__(self) -> None:
        # Serve calls this when it stops a replica; the finalizer would not run at exit
        self._uploads.cleanup()

    # ------------------------------------------------------------------ HTTP

    @api.get("/", response_class=HTMLResponse)
    async def index(self) -> HTMLResponse:
        return HTMLResponse(_static_text("index.html"))

    @api.get("/static/{name}")
    async def static(self, name: str) -> Response:
        if name not in STATIC:
            return JSONResponse({"detail": f"no static file {name!r}"}, status_code=404)
        return Response(_static_text(name), media_type=STATIC[name])

    @api.get("/v1/health")
    async def health(self) -> dict[str, Any]:
        card = self.predictor.card
        return {"status": "ok", "model": card.name, "version": card.version,
                "sessions_active": self.predictor.engine.active}

    @api.get("/v1/model")
    async def model(self) -> dict[str, Any]:
        return self.predictor.describe()

    @api.get("/v1/stats")
    async def stats(self) -> dict[str, Any]:
        return self.predictor.stats()

    @api.post("/v1/classify")
    async def classify(self, request: Request,
                       top_k: int | None = Query(None, ge=1)) -> Response:
        """Whole-video classification of a multipart upload (field ``video``)."""
        started = time.perf_counter()
        k = min(top_k or self.cfg.top_k, self.predictor.info.num_classes)
        try:
            path, filename = await receive_upload(
                request.stream(), request.headers.get("content-type"),
                request.headers.get("content-length"), self.cfg.max_upload_bytes,
                UPLOAD_FIELD, self._uploads.name)
        except UploadError as e:
            log.info("classify refused (%d): %s", e.status, e.detail)
            return JSONResponse({"detail": e.detail}, status_code=e.status)
        except ClientDisconnect:
            log.info("classify: the client went away during the upload")
            return JSONResponse({"detail": "upload interrupted"}, status_code=400)
        size = path.stat().st_size
        try:
            result = await self.predictor.classify_file(path)
        except VideoDecodeError as e:
            reason = e.reason.replace(str(path), filename)  # the temp file means nothing to them
            log.info("classify: %s (%d bytes) is not a readable video: %s", filename, size,
                     reason)
            return JSONResponse({"detail": f"{filename} is not a readable video: {reason}"},
                                status_code=422)
        finally:
            path.unlink(missing_ok=True)
        seconds = time.perf_counter() - started
        log.info("classified %s (%d bytes): %d frames in %.2f s", filename, size, result.frames,
                 seconds)
        card = self.predictor.card
        return JSONResponse({
            "top_k": self.predictor.top_k(result.logits, k),
            "duration_s": result.duration_s, "frames": result.frames,
            "fps": self.predictor.info.fps, "input_size": self.predictor.size,
            "model": {"name": card.name, "version": card.version, "uri": card.uri},
            "seconds": seconds,
        })

    # ------------------------------------------------------------------ live sessions

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _step_batch(self, items: list[tuple[int, list[torch.Tensor]]]) -> list:
        """Frames of many sessions -> one batched engine step (sizes set in __init__)."""
        return await self.predictor.step(items)

    @api.websocket("/v1/stream")
    async def stream(self, ws: WebSocket) -> None:
        """A live session: one engine slot from connect to close."""
        await ws.accept()
        key = next(self._ids)
        try:
            await self.predictor.open_session(key)
        except EngineFull:
            slots = self.predictor.engine.capacity
            log.info("session %d refused: all %d slots in use", key, slots)
            await ws.close(CLOSE_FULL, f"replica full: all {slots} session slots in use; "
                                       "try again later")
            return
        log.info("session %d opened (%d/%d slots in use)", key, self.predictor.engine.active,
                 self.predictor.engine.capacity)
        session = _Session(key, ws, self.predictor, self.cfg, self._step_batch)
        try:
            code, reason = await session.run()
        except WebSocketDisconnect:
            code, reason = None, "client went away"
        except ProtocolError as e:
            code, reason = e.code, e.reason
        except Exception:
            log.exception("session %d failed", key)
            code, reason = CLOSE_INTERNAL, "server error (see the replica log)"
        finally:
            await self.predictor.close_session(key)
        log.info("session %d closed after %d frames: %s%s", key, session.frames, reason,
                 "" if code is None else f" (code {code})")
        if code is not None:
            try:
                await ws.close(code, close_reason(reason))
            except (RuntimeError, WebSocketDisconnect):  # the client closed first
                pass


def make_app(cfg: ServeConfig) -> Application:
    """The Serve application for ``cfg`` (replicas, resources, autoscaling from it)."""
    replicas = cfg.replicas
    options: dict[str, Any] = {
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": replicas.num_cpus, "num_gpus": replicas.num_gpus},
    }
    if replicas.autoscaling is not None:
        options["autoscaling_config"] = dataclasses.asdict(replicas.autoscaling)
    else:
        options["num_replicas"] = replicas.num_replicas
    return MoViNetServer.options(**options).bind(cfg)


def build_app(args: dict[str, Any]) -> Application:
    """Application builder for Serve config files: ``import_path:
    movinet_ray.serve.app:build_app`` with the :class:`ServeConfig` fields as ``args``."""
    return make_app(load_serve_config(args))
