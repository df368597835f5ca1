"""The operator's command line for OAuth clients: `python -m auth_service.clients`."""
