"""Registration and image quality, verdicts and reports (not built yet: see the open issues)."""
