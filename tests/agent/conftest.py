from tests.controlplane.harness import mesh, running  # noqa: F401  (fixtures)
