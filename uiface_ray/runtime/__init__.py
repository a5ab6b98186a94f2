"""The runtime layer: the only package module (besides jobs/) that imports Ray."""
