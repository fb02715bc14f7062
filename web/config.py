"""Settings of the web layer (environment variables prefixed ``DIALER_WEB_``)."""

from __future__ import annotations

import functools
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dialer.services.accounts import LoginLimits, SessionPolicy

IpNetwork = IPv4Network | IPv6Network


@functools.cache
def networks(setting: str) -> tuple[IpNetwork, ...]:
    """The comma-separated IPs or CIDRs of ``setting``; raises ValueError naming a bad one."""
    found: list[IpNetwork] = []
    for item in (part.strip() for part in setting.split(",")):
        if item:
            try:
                found.append(ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or CIDR: {item!r}") from None
    return tuple(found)


def ice_urls(setting: str) -> list[str]:
    return [url.strip() for url in setting.split(",") if url.strip()]


class WebConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DIALER_WEB_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # The address people type; an https:// URL makes the cookies Secure.
    public_url: str = "http://localhost:8080"
    # Force Secure cookies on or off whatever public_url says (e.g. behind a proxy).
    cookie_secure: bool | None = None
    session_idle_minutes: float = Field(default=120, gt=0)
    session_max_hours: float = Field(default=12, gt=0)
    # Interface language when neither the user nor the browser says.
    default_language: str = "en"
    # Time zone for showing times when the browser has not told its own.
    default_timezone: str = "America/Toronto"
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=50, ge=1)
    login_window_minutes: float = Field(default=15, gt=0)
    # Reverse proxies whose X-Forwarded-For is believed: IPs or CIDRs, comma
    # separated.  Empty: the client is the TCP peer, whatever the header says.
    trusted_proxies: str = ""
    max_upload_mb: float = Field(default=20, gt=0)
    sse_keepalive_seconds: float = Field(default=15, gt=0)
    # Events a slow live-panel client may fall behind before it gets a fresh snapshot.
    sse_client_backlog: int = Field(default=500, ge=10)
    # Browser phones (WebRTC): Asterisk's SIP WebSocket, wss://<pbx host>:8089/ws
    # (asterisk-config/http.conf).  Empty: nobody can use the browser as a phone.
    phone_ws_url: str = ""
    # The SIP domain of the browser phones' addresses; default: the host of phone_ws_url.
    phone_sip_domain: str = ""
    # STUN and TURN servers for browsers behind NAT (comma-separated stun:/turn:/turns:
    # URLs), and the TURN credentials; docs/deploy.md says when they are needed.
    phone_ice_servers: str = ""
    phone_turn_username: str = ""
    phone_turn_password: SecretStr = SecretStr("")

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("phone_ws_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if value and (urlsplit(value).scheme not in ("ws", "wss") or not urlsplit(value).hostname):
            raise ValueError(f"not a WebSocket URL: {value!r}; e.g. wss://pbx.example.org:8089/ws")
        return value

    @field_validator("phone_ice_servers")
    @classmethod
    def _ice_urls(cls, value: str) -> str:
        for url in ice_urls(value):
            if url.split(":", 1)[0] not in ("stun", "stuns", "turn", "turns"):
                raise ValueError(f"not a STUN or TURN URL: {url!r}; e.g. stun:stun.example.org")
        return value

    @property
    def phone_websocket_origin(self) -> str | None:
        """The scheme://host:port the browser phones connect to (for the CSP), if any."""
        if not self.phone_ws_url:
            return None
        parts = urlsplit(self.phone_ws_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def phone_domain(self) -> str:
        return self.phone_sip_domain or (urlsplit(self.phone_ws_url).hostname or "")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        networks(value)
        return value

    @property
    def trusted_networks(self) -> tuple[IpNetwork, ...]:
        return networks(self.trusted_proxies)

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return urlsplit(self.public_url).scheme == "https"

    @property
    def session_policy(self) -> SessionPolicy:
        return SessionPolicy(
            idle=timedelta(minutes=self.session_idle_minutes),
            absolute=timedelta(hours=self.session_max_hours),
        )

    @property
    def login_limits(self) -> LoginLimits:
        return LoginLimits(
            max_failures_per_user=self.login_max_failures,
            max_failures_per_ip=self.login_max_failures_per_ip,
            window=timedelta(minutes=self.login_window_minutes),
        )
