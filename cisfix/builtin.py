"""Built-in plugin: the report formats of `cisfix.reports`. Registered like any other plugin."""
from __future__ import annotations

from typing import List

from . import hookimpl
from .types import ReportFormat


@hookimpl
def cisfix_register_report_formats() -> List[ReportFormat]:
    from .reports import FORMATS

    return FORMATS
