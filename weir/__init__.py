"""weir: a distributed, stateful stream processing engine with PyFlink's API.

A PyFlink job ports by changing its import prefix from ``pyflink`` to ``weir``.
"""

__version__ = "0.1.0"
