"""The backend names the CLI offers, without importing the backends (a read-only command needs only the names)."""

# "auto" picks one of the others (servers/backends.py: resolve_auto); tests/test_output.py checks the list
# against the backend classes.
BACKEND_NAMES = ("auto", "local", "tfserving", "docker")
