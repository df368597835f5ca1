"""Settings helpers and start-up checks."""
