"""autotune: measure and tune TensorFlow Serving on the machine it runs on."""

__version__ = "0.1.0"
