"""A workload that does nothing until it is stopped: the benchmark's load generator dials its sidecar."""

import signal
import sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.pause()
