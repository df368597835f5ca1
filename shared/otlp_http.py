"""requests sessions for the OTLP/HTTP exporters that read the environment once.

Why (bench/README.md, optimisation 24): with `trust_env` on, requests'
default, every export reads the environment again. `getproxies_environment`
walks all of `os.environ`, twice a POST; `no_proxy` is matched again; and
`~/.netrc` is looked up on disk. On the bench machine that was a third of a
512-span POST's CPU with its 35 variables (775 -> 520 µs) and almost two
thirds with 236 (1322 -> 482 µs), a Kubernetes pod's count, since every
service in the namespace adds its `*_SERVICE_HOST`/`_PORT` variables. The
batch thread pays it on the server's own cores.

An exporter's endpoint is fixed for its life, so the answers are too: this
module asks requests' own functions once, at start-up, and gives the
exporter a session with `trust_env` off that carries them. The outcome is
what requests decides per request (`tests/observability/test_otlp_http.py`
compares both): the proxy the environment names for the endpoint, unless
`no_proxy` excludes it; `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE` over the
configured certificate, as requests gives them precedence; netrc
credentials for the endpoint's host. Variables changed after start-up are
not seen, as for every other setting of the services.

A credential-provider session (`OTEL_PYTHON_EXPORTER_OTLP_HTTP_*CREDENTIAL_PROVIDER`)
is the deployment's own choice: then no session is made here, and the
exporter loads that one as before.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import requests
from requests.utils import get_netrc_auth

if TYPE_CHECKING:  # the stubs' own names for the override's signature
    from requests.sessions import _Cert, _Settings, _TextMapping, _Verify

__all__ = ["pinned_session"]

# The SDK's names (opentelemetry.sdk.environment_variables, private there).
_CREDENTIAL_PROVIDER = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER"
_SIGNAL_CREDENTIAL_PROVIDER = {
    "traces": "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
    "logs": "OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER",
}


class _PinnedSession(requests.Session):
    """A session whose environment settings were read once, for one endpoint."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()  # trust_env is on: read what each request would read
        self._ca_bundle: str | None = None
        settings = self.merge_environment_settings(endpoint, {}, None, None, None)
        # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE; True (the session's) when neither is set.
        bundle = settings["verify"]
        self._ca_bundle = bundle if isinstance(bundle, str) else None
        self.proxies.update(settings["proxies"])
        self.auth = get_netrc_auth(endpoint)
        self.trust_env = False

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: _TextMapping | None,
        stream: bool | None,
        verify: _Verify | None,
        cert: _Cert | None,
    ) -> _Settings:
        # requests lets the environment's bundle win over `session.verify`
        # (which the exporter sets from OTEL_EXPORTER_OTLP_CERTIFICATE) when
        # the request names none: so does this session, from the pinned value.
        if self._ca_bundle and (verify is True or verify is None):
            verify = self._ca_bundle
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


def pinned_session(endpoint: str, signal: str) -> requests.Session | None:
    """A session for an exporter posting to `endpoint`, or None to let it load its own.

    Args:
        endpoint: the full export URL (`.../v1/traces`).
        signal: "traces" or "logs", for the signal's credential-provider variable.
    """
    if os.environ.get(_CREDENTIAL_PROVIDER) or os.environ.get(_SIGNAL_CREDENTIAL_PROVIDER[signal]):
        return None
    return _PinnedSession(endpoint)
