"""shoal: Docker swarm mode with its routing mesh, in Python."""

__version__ = "0.1.0"
