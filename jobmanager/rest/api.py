"""The JobManager's REST API over its Dispatcher: JSON, with Flink's REST names where Flink has the resource.

Times are epoch milliseconds (-1 or null when there is none, as noted per field), durations milliseconds.
docs/rest-api.yaml documents every route. The two write routes (cancel, savepoint) need
``Authorization: Bearer <token>`` when the JobManager has a token; everything else is read-only and open.
``GET /`` and ``GET /static/{name}`` serve the web dashboard (jobmanager/rest/static/: plain HTML, JS and CSS over
this API, no build step).
"""

from __future__ import annotations

import hmac
import re
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from jobmanager.checkpoint.store import CheckpointMetadata, metadata_path
from jobmanager.metrics import JOB_STATES, TERMINAL_STATES, JobEvents, checkpoint_size
from jobmanager.rest.server import HTTPError, Request, Response, Router, json_response
from weir import __version__

if TYPE_CHECKING:
    from jobmanager.daemon import JobManager
    from jobmanager.dispatcher import Dispatcher, Job


STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# the dashboard loads nothing but its own files and this API, and runs no inline script
STATIC_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def _ms(t: float) -> int:
    """Epoch seconds to milliseconds; -1 for 'never' (0)."""
    return round(t * 1000) if t else -1


def _bp_level(ratio: float) -> str:
    """Flink's backpressure levels: ok up to 10 % of the time waiting for credit, low up to 50 %, high above."""
    return "high" if ratio > 0.5 else "low" if ratio > 0.1 else "ok"


def _ms_or_none(t: float | None) -> int | None:
    return round(t * 1000) if t else None


class RestApi:
    def __init__(self, jm: JobManager, dispatcher: Dispatcher, events: JobEvents, registry: CollectorRegistry,
                 token: str | None = None, *, read_without_token: bool = False, https: bool = False) -> None:
        self.jm = jm
        self.d = dispatcher
        self.events = events
        self.registry = registry
        self._token = token.encode() if token else None
        self._read_without_token = read_without_token
        self._https = https
        self.rest_port = 0  # the bound port, set once the server listens

    def router(self) -> Router:
        r = Router()
        read = self._read
        r.add("GET", "/overview", read(self.overview))
        r.add("GET", "/jobs", read(self.jobs))
        r.add("GET", "/jobs/{id}", read(self.job))
        r.add("GET", "/jobs/{id}/checkpoints", read(self.checkpoints))
        r.add("GET", "/jobs/{id}/exceptions", read(self.exceptions))
        r.add("POST", "/jobs/{id}/cancel", self.cancel)
        r.add("POST", "/jobs/{id}/savepoints", self.savepoint)
        r.add("GET", "/taskmanagers", read(self.taskmanagers))
        r.add("GET", "/config", read(self.config))
        # /metrics stays open, as Flink's Prometheus reporter is: series carry ids and counts, no job data;
        # the dashboard's own files hold no data either (it asks for the token when a read is refused)
        r.add("GET", "/metrics", self.metrics)
        r.add("GET", "/", self.dashboard)
        r.add("GET", "/static/{name}", self.static)
        return r

    # ---- helpers ----
    def _job(self, request: Request) -> Job:
        job = self.d.jobs.get(request.params["id"])
        if job is None:
            raise HTTPError(404, f"no job with id {request.params['id']!r}: see GET /jobs")
        return job

    def _read(self, handler: Any) -> Any:
        """``handler`` behind the token, unless reads are configured open (``weir.rest.read-without-token``)."""
        if self._read_without_token:
            return handler

        async def guarded(request: Request) -> Response:
            self._authorize(request)
            return cast(Response, await handler(request))

        return guarded

    def _authorize(self, request: Request) -> None:
        if self._token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HTTPError(401, "this JobManager requires a token for this request: send 'Authorization: Bearer "
                                 "<token>' with the token the JobManager was started with (weir.rest.token, "
                                 "else weir.auth.token)", {"WWW-Authenticate": 'Bearer realm="weir"'})
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise HTTPError(401, "the token is not valid",
                            {"WWW-Authenticate": 'Bearer realm="weir", error="invalid_token"'})

    @staticmethod
    def _summary(job: Job, now: float) -> dict[str, Any]:
        start = job.start_time or job.submitted_at
        return {
            "jid": job.job_id,
            "name": job.name,
            "state": job.state,
            "start-time": _ms(start),
            "end-time": _ms(job.end_time),
            # from the rounded ends, so duration == end-time - start-time exactly
            "duration": _ms(job.end_time or now) - _ms(start),
            "restarts": job.restarts,
        }

    # ---- routes ----
    async def overview(self, request: Request) -> Response:
        reg = self.d.registry
        by_state = Counter(j.state for j in self.d.jobs.values())
        return json_response({
            "jobmanager-id": self.jm.id,
            "weir-version": __version__,
            "taskmanagers": len(reg.taskmanagers),
            "slots-total": reg.total_slots,
            "slots-available": len(reg.free_slots()),
            "jobs-running": sum(n for s, n in by_state.items() if s not in TERMINAL_STATES),
            "jobs-finished": by_state["FINISHED"],
            "jobs-cancelled": by_state["CANCELED"],
            "jobs-failed": by_state["FAILED"],
            "jobs": {s: by_state[s] for s in (*JOB_STATES, *sorted(set(by_state) - set(JOB_STATES)))},
        })

    async def jobs(self, request: Request) -> Response:
        now = time.time()
        jobs = sorted(self.d.jobs.values(), key=lambda j: j.start_time or j.submitted_at)
        return json_response({"jobs": [self._summary(j, now) for j in jobs]})

    async def job(self, request: Request) -> Response:
        job = self._job(request)
        now = time.time()
        info = job.info()
        vertices = []
        for v in info.vertices:
            tasks = Counter(s for (vid, _), s in job.task_states.items() if vid == v.vertex_id)
            loads = [job.load[(v.vertex_id, i)] for i in range(v.parallelism) if (v.vertex_id, i) in job.load]
            bp = [x.backpressured_ratio for x in loads if x.backpressured_ratio is not None]
            busy = [x.busy_ratio for x in loads if x.busy_ratio is not None]
            vertices.append({
                "id": v.vertex_id,
                "name": v.name,
                "parallelism": v.parallelism,
                "metrics": {"read-records": v.records_in, "write-records": v.records_out},
                "running": v.running,
                "finished": v.finished,
                "tasks": dict(sorted(tasks.items())),
                # the busiest subtask speaks for the vertex, as in Flink's backpressure view
                "backpressure": {"ratio": round(max(bp), 4), "level": _bp_level(max(bp))} if bp else None,
                "busy-ratio": round(max(busy), 4) if busy else None,
            })
        return json_response({
            **self._summary(job, now),
            "now": _ms(now),
            "failure-cause": job.failure_cause or None,
            "last-failure": job.last_failure or None,
            "slots-needed": info.slots_needed,
            "checkpoints": {"completed": job.checkpoints_completed, "failed": job.checkpoints_failed,
                            "latest-id": info.last_checkpoint_id or None},
            "status-counts": dict(sorted(Counter(job.task_states.values()).items())),
            "vertices": vertices,
            "edges": [{"source": e.source, "target": e.target, "partitioner": e.partitioner.kind.upper()}
                      for e in job.topology.edges],
        })

    def _checkpoint(self, job: Job, md: CheckpointMetadata) -> dict[str, Any]:
        took = self.events.duration(job.job_id, md.checkpoint_id)
        took_ms = round(took * 1000) if took is not None else None
        path = metadata_path(job.job_id, md.checkpoint_id).rsplit("/", 1)[0]
        return {
            "id": md.checkpoint_id,
            "status": "COMPLETED",
            "is_savepoint": md.savepoint,
            "trigger_timestamp": _ms(md.timestamp) - took_ms if took_ms is not None else None,
            "latest_ack_timestamp": _ms(md.timestamp),
            "end_to_end_duration": took_ms,
            "state_size": checkpoint_size(md),
            "alignment_duration": round(md.alignment_seconds * 1000),
            "external_path": f"{md.storage_uri.rstrip('/')}/{path}",
        }

    async def checkpoints(self, request: Request) -> Response:
        job = self._job(request)
        c = job.checkpoint_config
        co = job.coordinator
        in_progress = (sum(1 for p in co.pending.values() if p.savepoint is None)
                       if co is not None and job.state == "RUNNING" else 0)
        retained = [self._checkpoint(job, md) for md in reversed(job.completed)]
        return json_response({
            "counts": {"completed": job.checkpoints_completed, "failed": job.checkpoints_failed,
                       "in_progress": in_progress,
                       "total": job.checkpoints_completed + job.checkpoints_failed + in_progress},
            "latest": {"completed": retained[0] if retained else None},
            "retained": retained,
            "config": {
                "enabled": c.enabled,
                "mode": c.mode.lower(),
                "interval": c.interval_ms,
                "timeout": c.timeout_ms,
                "min_pause": c.min_pause_ms,
                "max_concurrent": c.max_concurrent,
                "tolerable_failed_checkpoints": c.tolerable_failures,
                "retained": c.retained,
                "checkpoint_storage": job.storage_uri,
            },
        })

    async def exceptions(self, request: Request) -> Response:
        job = self._job(request)
        history = self.events.history(job.job_id)
        failure: dict[str, Any] | None = None
        if job.failure_cause:
            last = history[-1] if history else None
            at = last.timestamp if last and not last.restarted and last.cause == job.failure_cause else job.end_time
            failure = {"exception": job.failure_cause, "timestamp": _ms_or_none(at)}
        restarts = [f for f in history if f.restarted]
        restart: dict[str, Any] | None = None
        if restarts:
            restart = {"exception": restarts[-1].cause, "timestamp": _ms(restarts[-1].timestamp)}
        elif job.restarts and job.last_failure and job.state != "FAILED":
            restart = {"exception": job.last_failure, "timestamp": None}  # before this JobManager saw it
        return json_response({
            "root-exception": failure["exception"] if failure else None,
            "timestamp": failure["timestamp"] if failure else None,
            "failure-cause": failure,
            "last-restart-cause": restart,
            "restarts": job.restarts,
            "exceptionHistory": {
                "entries": [{"exception": f.cause, "timestamp": _ms(f.timestamp), "restarted": f.restarted}
                            for f in reversed(history)],
                "truncated": job.restarts > len(restarts),
            },
        })

    async def cancel(self, request: Request) -> Response:
        self._authorize(request)
        job = self._job(request)
        await self.d.cancel(job.job_id)
        return json_response({"jid": job.job_id, "state": job.state})

    async def savepoint(self, request: Request) -> Response:
        self._authorize(request)
        body = request.json()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise HTTPError(400, 'the body must be a JSON object like {"target": "file:///savepoints"}')
        unknown = sorted(set(body) - {"target", "cancel-job"})
        if unknown:
            raise HTTPError(400, f"unknown field(s) {unknown}: the body takes 'target' (a directory URI, or null "
                                 "for the JobManager's savepoint directory) and 'cancel-job' (true/false)")
        target = body.get("target")
        if target is not None and (not isinstance(target, str) or not target.strip()):
            raise HTTPError(400, "'target' must be a directory URI (a non-empty string) or null")
        stop = body.get("cancel-job", False)
        if not isinstance(stop, bool):
            raise HTTPError(400, "'cancel-job' must be true or false")
        job = self._job(request)
        try:
            location = await self.d.trigger_savepoint(job.job_id, target, stop)
        except TimeoutError:
            raise HTTPError(504, f"the savepoint of job {job.job_id} did not complete within the checkpoint "
                                 f"timeout ({job.checkpoint_config.timeout_ms} ms)") from None
        except RuntimeError as e:
            raise HTTPError(409, str(e)) from None
        return json_response({"jid": job.job_id, "location": location, "state": job.state})

    async def taskmanagers(self, request: Request) -> Response:
        now = time.time()
        tms = sorted(self.d.registry.taskmanagers.values(), key=lambda t: t.registered_at)
        return json_response({"taskmanagers": [
            {
                "id": tm.id,
                "address": tm.address,
                "pid": tm.pid,
                "slotsNumber": len(tm.slots),
                "freeSlots": len(tm.slots) - len(tm.allocated),
                "dataAddresses": [s.data_address for s in tm.slots],
                "registeredAt": _ms(tm.registered_at),
                "lastHeartbeat": _ms(tm.last_heartbeat),
                "timeSinceLastHeartbeat": max(0, round((now - tm.last_heartbeat) * 1000)),
            }
            for tm in tms
        ]})

    async def config(self, request: Request) -> Response:
        jm = self.jm
        rpc_host, _, rpc_port = jm.address.rpartition(":")
        return json_response({
            "jobmanager-id": jm.id,
            "weir-version": __version__,
            "settings": {
                "jobmanager.rpc.address": rpc_host,
                "jobmanager.rpc.port": int(rpc_port) if rpc_port.isdigit() else None,
                "jobmanager.bind-host": jm.host,
                "rest.bind-address": jm.host,
                "rest.port": self.rest_port,
                "rest.token-required": self._token is not None,
                "weir.rest.read-without-token": self._read_without_token or self._token is None,
                "security.ssl.rest.enabled": self._https,
                "heartbeat.timeout": round(jm.heartbeat_timeout * 1000),
                "slot.request.timeout": round(jm.slot_request_timeout * 1000),
                "state.checkpoints.dir": self.d.checkpoints_dir,
                "state.savepoints.dir": self.d.savepoints_dir,
                "high-availability.storageDir": jm.ha_dir,
            },
        })

    async def metrics(self, request: Request) -> Response:
        # in the event loop thread, as the collector requires
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    # ---- the web dashboard ----
    @staticmethod
    def _static_file(name: str) -> Response:
        """One file of jobmanager/rest/static/ by its bare name (no directories, no dot files), with its type."""
        content_type = STATIC_TYPES.get(Path(name).suffix)
        if content_type is None or not _STATIC_NAME.fullmatch(name):
            raise HTTPError(404, f"no such dashboard file: {name!r}")
        try:
            body = (STATIC_DIR / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise HTTPError(404, f"no such dashboard file: {name!r}") from None
        return Response(200, body, content_type, dict(STATIC_HEADERS))

    async def dashboard(self, request: Request) -> Response:
        return self._static_file("index.html")

    async def static(self, request: Request) -> Response:
        return self._static_file(request.params["name"])
