"""Every error memori raises, under one root.

::

    MemoriError
    ├── ConfigurationError   bad argument, missing optional dependency, model mismatch
    │   └── AuthenticationError  a memori server refused the API key (remote mode)
    ├── StorageError         the database refused or failed a read or write
    ├── AugmentationError    a background augmentation job could not be processed
    ├── RecallError          a recall could not be answered
    └── ProviderError        an LLM provider call made by memori failed

Errors raised because of another exception chain it with ``from``; context is kept as
attributes (``argument`` on ``ConfigurationError``, ``job_id`` on ``AugmentationError``).
"""

from __future__ import annotations

__all__ = [
    "AugmentationError",
    "AuthenticationError",
    "ConfigurationError",
    "MemoriError",
    "ProviderError",
    "RecallError",
    "StorageError",
]


class MemoriError(Exception):
    """Root of every error raised by memori."""


class ConfigurationError(MemoriError, ValueError):
    """An argument, setting or installed dependency is wrong.

    Attributes:
        argument: name of the offending argument or setting, when there is one.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class AuthenticationError(ConfigurationError):
    """A memori server (``Memori(url=...)``) refused the API key: unknown or revoked (401),
    or its scope or entities do not cover the call (403). The message says which key to use
    instead; ``argument`` is ``"api_key"``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, argument="api_key")


class StorageError(MemoriError):
    """The database refused or failed an operation (connection, constraint, schema)."""


class AugmentationError(MemoriError):
    """A background augmentation job failed.

    Attributes:
        job_id: row id in ``memori_augmentation_job``, when known.
    """

    def __init__(self, message: str, *, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class RecallError(MemoriError):
    """A recall could not be answered (embedding or index failure)."""


class ProviderError(MemoriError):
    """An LLM or embeddings provider call made by memori itself failed."""
