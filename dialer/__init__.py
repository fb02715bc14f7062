"""The phone bank service: domain, persistence and the click-to-call service."""

__version__ = "0.1.0"
