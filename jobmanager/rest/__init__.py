"""The JobManager's REST endpoint: the JSON API over its Dispatcher and its Prometheus ``/metrics``, served by a
small HTTP/1.1 server on asyncio streams (``jobmanager/rest/server.py``). Routes: ``jobmanager/rest/api.py`` and
docs/rest-api.yaml."""

from __future__ import annotations

from ssl import SSLContext
from typing import TYPE_CHECKING

from jobmanager.metrics import JobEvents, jobmanager_registry
from jobmanager.rest.api import RestApi
from jobmanager.rest.server import RestServer
from weir import __version__

if TYPE_CHECKING:
    from jobmanager.daemon import JobManager

__all__ = ["JobManagerRest"]


class JobManagerRest:
    """The REST API and metrics of one JobManager, on ``host:port`` (port 0: any free one)."""

    def __init__(self, jm: JobManager, host: str, port: int, token: str | None = None, *,
                 read_without_token: bool = False, ssl: SSLContext | None = None) -> None:
        if jm.dispatcher is None:
            raise RuntimeError("the JobManager's Dispatcher must exist before its REST endpoint")
        self.events = JobEvents()
        self.events.attach(jm.dispatcher)
        self.registry = jobmanager_registry(jm.dispatcher, self.events)
        self.api = RestApi(jm, jm.dispatcher, self.events, self.registry, token,
                           read_without_token=read_without_token, https=ssl is not None)
        self.server = RestServer(self.api.router(), host, port, server_name=f"weir/{__version__}", ssl=ssl)

    async def start(self) -> None:
        await self.server.start()
        self.api.rest_port = self.server.port

    async def close(self) -> None:
        await self.server.close()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> str:
        """``host:port`` it listens on."""
        return self.server.address
