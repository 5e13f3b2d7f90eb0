"""Remote mode: ``Memori(url="http://host:8765", api_key=...)`` is the ``Memori`` API against a
``memori serve`` (``RemoteMemori``, a subclass of ``Memori``). Needs the ``remote`` extra
(httpx, tenacity)::

    pip install "memori-core[remote]"

See ``memori_core.remote._client`` for what differs from local mode and
``memori_core.remote._http`` for retries and error mapping.
"""

from __future__ import annotations

from memori_core.remote._client import RemoteAugmentation, RemoteMemori

__all__ = ["RemoteAugmentation", "RemoteMemori"]
