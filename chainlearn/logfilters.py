"""Logging filters for the service's console (``LOGGING`` in settings)."""

from __future__ import annotations

import logging


class ClientErrorsAsInfo(logging.Filter):
    """Log a 4xx response as one INFO line instead of a WARNING.

    Django logs every 4xx on ``django.request`` as a WARNING, and a ``PermissionDenied``
    (the admin's add page of a read-only model) with its whole traceback. A client's
    mistake is not the operator's: it stays one line, below the console's default level.
    5xx records pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True
