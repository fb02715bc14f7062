"""Settings, logging, metrics, the composition root, the command line and the demo.

The only layer that imports `web` and `ami_bridge`.
"""
