"""Local fakes of the nine providers' APIs: real HTTP servers on loopback.

Shipped with the distribution on purpose, as dramatiq ships its stub broker and
structlog its `testing` module: `syncworker demo` runs against them, and an
application embedding the worker can point connectors at them in its own tests.
Only the standard library and project code are imported here.
"""
