"""Sample applications that run inside a malla mesh.

Each sample is a plain program: it listens on ``$PORT`` and reaches other
services by name over plain HTTP, honouring the standard proxy variables that
``malla run`` sets, so the same program runs with a sidecar or without one.
Nothing here imports the control plane.
"""
