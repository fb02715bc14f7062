"""A fake Asterisk that speaks AMI over TCP, for tests, benches and `dialer demo`."""

from ami_bridge.simulator.server import *  # noqa: F403
