"""Browser tests: the static client in real Chromium against a real server."""
