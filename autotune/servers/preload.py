"""What the fork server (servers/prefork.py) imports once, so that no stand-in forked from it imports it again."""

from autotune.tfimport import import_tensorflow

import_tensorflow(keras=False)

import setproctitle  # noqa: E402, F401

import autotune.servers.local.__main__  # noqa: E402  (and through it the flags)
import autotune.servers.local.grpc_api  # noqa: E402
import autotune.servers.local.metrics  # noqa: E402
import autotune.servers.local.rest  # noqa: E402
import autotune.servers.local.servable  # noqa: E402
import autotune.servers.prefork  # noqa: E402

# Last, once everything is imported: what the import left in memory, for every server forked from here to map in.
autotune.servers.prefork.resident_file_runs = autotune.servers.prefork.file_runs_in_memory()
