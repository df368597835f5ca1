# Stand-in for ghcr.io/astral-sh/uv:0.13.9: the same uv release, from its
# PyPI wheel (checked against the index's sha256), at /uv as in the original.
FROM python:3.11.13-slim-bookworm AS fetch
COPY fetch_uv.py /fetch_uv.py
RUN python3 /fetch_uv.py 0.13.9 /uv

FROM scratch
COPY --from=fetch /uv /uv
ENTRYPOINT ["/uv"]
