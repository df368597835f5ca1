"""The service scaffold both services build on: app, lifespan, backends, migrate CLI."""
