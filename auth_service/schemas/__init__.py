"""Request and response bodies of the auth service's API."""
