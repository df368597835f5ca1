"""The second step of a login, step-up checks and recovery codes, whatever the factor."""
