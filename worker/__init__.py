"""apelier-worker: the GPU worker daemon behind the Apelier photographer platform."""

__version__ = "0.1.0"
