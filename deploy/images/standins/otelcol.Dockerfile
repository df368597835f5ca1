# Stand-in for otel/opentelemetry-collector-contrib:0.120.0, which Debian does
# not package. It honours only what the services rely on: an OTLP/HTTP
# receiver on :4318 (/v1/traces, /v1/logs, /v1/metrics) answering as the
# collector does, so exports succeed, and the health_check extension's :13133.
# It logs one line per batch (like the `debug` exporter at `basic`) and
# forwards nothing: deploy/otel/collector.yaml's pipelines need the real
# collector (docs/OPERATIONS.md, "Images without a registry").
FROM python:3.11.13-slim-bookworm
COPY otlp_receiver.py /otlp_receiver.py
USER 10001:10001
EXPOSE 4318 13133
ENTRYPOINT ["python3", "/otlp_receiver.py"]
