"""The injected block, for code that imported it from here: it lives in
``memori_core.context`` (the one framing every wrapper, plugin and the CLI use)."""

from memori_core.context._framing import (
    BLOCK_END,
    BLOCK_HEADER,
    BLOCK_START,
    quote,
    render_block,
    strip_block,
)

__all__ = ["BLOCK_END", "BLOCK_HEADER", "BLOCK_START", "quote", "render_block", "strip_block"]
