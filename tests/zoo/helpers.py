"""Helpers of the zoo tests."""


def stable(rows):
    """Rows without the fields that vary between runs (times, memory)."""
    return [{k: v for k, v in r.items() if k not in ("build_s", "analysis_s", "peak_rss_mb")} for r in rows]
