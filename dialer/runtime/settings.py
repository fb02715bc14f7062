"""Configuration from the environment (prefix ``DIALER_``) and ``.env``."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import phonenumbers
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dialer.domain.compliance import DialingPolicy

DEFAULT_SQLITE_PATH = Path("dialer.sqlite3")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DIALER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    database_url: SecretStr = Field(
        default=SecretStr(f"sqlite+aiosqlite:///{DEFAULT_SQLITE_PATH}"),
        description="SQLAlchemy async URL; sqlite+aiosqlite:///file or postgresql+asyncpg://...",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(default=5038, ge=1, le=65535)
    ami_username: str = "dialer"
    ami_secret: SecretStr = SecretStr("")
    ami_action_timeout: float = Field(default=10.0, gt=0)
    ami_ping_interval: float = Field(default=10.0, gt=0)
    ami_ping_timeout: float = Field(default=5.0, gt=0)
    ami_reconnect_max_delay: float = Field(default=30.0, gt=0)
    ami_max_actions_in_flight: int = Field(default=64, ge=1)
    # Raw AMI wire trace for debugging a PBX (docs/ami-trace.md): each AMI
    # connection writes its own file named after this path; empty is off.
    ami_trace_file: str = ""
    mqtt_url: SecretStr = SecretStr("mqtt://127.0.0.1:1883")
    mqtt_topic_prefix: str = "dialer"
    # A private CA to trust for mqtts:// (a self-hosted broker's certificate).
    mqtt_ca_file: str = ""
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    # `dialer worker` alone serves /healthz and /metrics on this port
    # (on web_host); 0 picks a free one.
    worker_http: bool = True
    worker_http_port: int = Field(default=8081, ge=0, le=65535)
    volunteer_channel: str = "PJSIP/{extension}"
    outbound_context: str = "dialer-outbound"
    # Where an organizer's phone is sent to listen, whisper or barge
    # (asterisk-config/extensions.conf, [dialer-supervise]).
    supervision_context: str = "dialer-supervise"
    # Let ChanSpy play its beep when an organizer starts listening.  Asterisk
    # plays it to the organizer, not to the volunteer, and needs the `beep`
    # sound installed (without it ChanSpy hangs up at once): docs/security.md.
    supervision_beep: bool = False
    # Tell the volunteer when an organizer joins their call: two short tones
    # only they hear ([dialer-spy-notice]).  Some jurisdictions require it.
    supervision_notice: bool = False
    # Power mode (asterisk-config/extensions.conf): where a volunteer's phone
    # waits in their conference, and where each contact joins it.
    power_context: str = "dialer-power"
    power_join_context: str = "dialer-power-join"
    default_region: str = "CA"
    originate_timeout_ms: int = Field(default=30000, ge=5000)
    # Dialing policy: ISO regions (CA) or calling codes (+33); empty means
    # the default region only.  Deny by default beyond these.
    allowed_destinations: str = ""
    blocked_prefixes: str = "+1900,+1976"
    default_caller_id: str = ""
    pbx_name: str = "default"
    # A click not dialed within this many seconds (worker down) is dropped
    # rather than ringing a volunteer who has long moved on.
    request_expiry_seconds: float = Field(default=60.0, gt=0)
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    # Notification emails: off while smtp_host is empty.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = ""
    # Require STARTTLS (the usual on port 587); false only for a local relay.
    smtp_starttls: bool = True
    # CSV imports of files this large (bytes) or larger take the bulk path on
    # PostgreSQL (worker processes, COPY; dialer.services.bulk_import): below
    # about 1 MB (10,000-20,000 rows) starting its processes costs more than
    # it saves (bench/import_contacts.py compares the two paths by size).
    import_bulk_min_bytes: int = Field(default=1024 * 1024, ge=0)

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}; use an ISO 3166 code such as CA or FR")
        return region

    @field_validator("pbx_name")
    @classmethod
    def _pbx_name(cls, value: str) -> str:
        # A NOTIFY payload, an MQTT topic level and users' "pbx" value.
        if not re.fullmatch(r"[0-9A-Za-z._-]{1,100}", value):
            raise ValueError("may only use letters, digits, '.', '_' and '-'")
        return value

    @field_validator("volunteer_channel")
    @classmethod
    def _channel_template(cls, value: str) -> str:
        if "{extension}" not in value:
            raise ValueError("must contain the placeholder {extension}, e.g. PJSIP/{extension}")
        return value

    @property
    def dialing_policy(self) -> DialingPolicy:
        allowed = self.allowed_destinations.split(",") if self.allowed_destinations else []
        return DialingPolicy.parse(
            allowed or [self.default_region], self.blocked_prefixes.split(",")
        )

    @field_validator("allowed_destinations", "blocked_prefixes")
    @classmethod
    def _policy_parses(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "allowed_destinations":
            DialingPolicy.parse(value.split(","), [])
        else:
            DialingPolicy.parse([], value.split(","))
        return value

    @field_validator("smtp_from")
    @classmethod
    def _one_address(cls, value: str) -> str:
        # A header value: CR or LF would let it add headers of its own.
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError("must be one line")
        return value.strip()

    @property
    def database_url_value(self) -> str:
        return self.database_url.get_secret_value()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
