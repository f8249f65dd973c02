"""The API's only request parser: JSON, with failures that reveal nothing internal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, but any malformed body (bad bytes, absurd nesting that overflows
    the decoder's recursion, oversized integers) is one plain 400 message."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except (exceptions.ParseError, RecursionError, ValueError):
            raise exceptions.ParseError("Malformed JSON body") from None
