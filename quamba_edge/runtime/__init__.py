"""See README.md (placeholder package: arrives with its issue)."""
