"""Pure vocabulary and rules: call states, compliance, numbers, surveys, outcomes, ports.

No I/O: nothing here imports asyncio, SQLAlchemy, aiohttp, aiomqtt or
panoramisk (an import-linter contract in CI keeps it so).
"""
