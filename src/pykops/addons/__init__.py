"""Cluster add-ons: registry, rendering, the bootstrap channel, and the applier (issue 5)."""
