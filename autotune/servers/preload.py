"""What the fork server (servers/prefork.py) imports once, so that no stand-in forked from it imports it again."""

from autotune.tfimport import import_tensorflow

import_tensorflow(keras=False)

import setproctitle  # noqa: E402, F401

import autotune.servers.local.__main__  # noqa: E402  (and through it the flags)
import autotune.servers.local.grpc_api  # noqa: E402
import autotune.servers.local.metrics  # noqa: E402
import autotune.servers.local.rest  # noqa: E402
import autotune.servers.local.servable  # noqa: E402, F401
