"""The aiohttp web app: pages, JSON API, live stream."""
