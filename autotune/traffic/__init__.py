"""What is sent to a server: request files and the payloads built from a model's signature.

Below both `load/` (which sends them) and `models/` users such as variants and exports (which read them), so
that neither reaches into the other.
"""
