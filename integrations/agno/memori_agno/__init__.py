"""memori-agno: memori for agno. Imports only memori_core's public API.

The framework adapters land with their own issue; this package pins the distribution, its
framework range and its place in the workspace.
"""

__version__ = "0.1.0"

__all__: list[str] = ["__version__"]
