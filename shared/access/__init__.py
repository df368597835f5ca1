"""Who may call: bearer dependencies, revocation list and its feed."""
