"""``mf serve --web``'s settings and address policy (no heavy imports: the CLI checks them before loading)."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mfruntime.runtime.server.config import LOOPBACK_HOSTS

DEFAULT_WEB = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class WebConfig:
    address: str = DEFAULT_WEB  # http://HOST:PORT (port 0: a free one)
    token: str | None = None  # required from browsers when set; must be set beyond loopback

    def __post_init__(self) -> None:
        u = urlsplit(self.address)
        if u.scheme != "http" or not u.hostname or u.port is None:
            raise ValueError(f"--web takes an address like http://127.0.0.1:8080, got {self.address!r} (TLS goes in "
                             "front of it: docs/WEB.md)")
        if u.hostname not in (h.strip("[]") for h in LOOPBACK_HOSTS) and not self.token:
            raise ValueError(f"{self.address} is reachable from other machines: give browsers an access token with "
                             "--web-token (and put TLS in front: docs/WEB.md)")

    @property
    def host_port(self) -> tuple[str, int]:
        u = urlsplit(self.address)
        return u.hostname, u.port  # type: ignore[return-value]
