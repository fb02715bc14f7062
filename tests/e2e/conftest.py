"""Fixtures for the web tests: the world, the app served on a port, signed-in clients."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.e2e.webworld import PASSWORD, Served, WebWorld, build_web_world, serve


@pytest.fixture
async def world(sessions: async_sessionmaker[AsyncSession]) -> WebWorld:
    return await build_web_world(sessions)


@pytest.fixture
async def served(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url) as running:
        yield running


@dataclass
class Browser:
    """An HTTP client with its own cookies, signed in (or not)."""

    http: aiohttp.ClientSession
    base: str
    csrf: str = ""

    async def request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        kwargs.setdefault("allow_redirects", False)
        return await self.http.request(method, self.base + path, **kwargs)

    async def api(
        self, method: str, path: str, body: Any = None, *, csrf: bool = True, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if csrf and method != "GET":
            headers.setdefault("X-CSRF-Token", self.csrf)
        response = await self.request(
            method, path, json=body if body is not None else None, headers=headers, **kwargs
        )
        async with response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = await response.text()
            return response.status, data

    async def page(self, path: str, **kwargs: Any) -> tuple[int, str]:
        response = await self.request("GET", path, **kwargs)
        async with response:
            return response.status, await response.text()

    async def form(
        self, path: str, data: dict[str, Any] | list[tuple[str, Any]], *, token: bool = True
    ) -> aiohttp.ClientResponse:
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        if token:
            fields.append(("csrf_token", self.csrf))
        return await self.request("POST", path, data=fields)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


ClientFactory = Callable[..., Awaitable[Browser]]


@pytest.fixture
async def client(served: Served) -> AsyncIterator[ClientFactory]:
    opened: list[aiohttp.ClientSession] = []

    async def make(
        username: str | None = None, *, language: str = "en", password: str = PASSWORD
    ) -> Browser:
        http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Accept-Language": language},
        )
        opened.append(http)
        browser = Browser(http, served.url)
        if username is not None:
            status, body = await browser.api(
                "POST", "/api/session", {"username": username, "password": password}, csrf=False
            )
            assert status == 200, body
            browser.csrf = body["csrf_token"]
        else:
            status, html = await browser.page("/login")
            browser.csrf = form_token(html)
        return browser

    yield make
    for http in opened:
        await http.close()
