"""Sub-commands of the ``fusion-edge`` CLI, one module each (see ``fusion_edge.cli``)."""
