"""The ``malla`` command line: istioctl's verbs, tables for people, ``-o json|yaml`` for scripts."""
