"""Galley's part: loading, validating and storing Istio configuration.

What comes in: YAML text from files, directories, standard input or
``malla apply``. What goes out: typed ``Config`` resources in a
``ConfigStore``, Kubernetes objects kept aside, and ``Diagnostic``s that
name file, document, resource and field. ``parse`` and ``validation`` are
pure; ``files`` and ``source`` do the reading and watching.
"""
