"""A stand-in for the OpenTelemetry Collector's OTLP/HTTP receiver (see otelcol.Dockerfile)."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGNALS = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}
MAX_BODY = 16 * 1024 * 1024


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        signal = SIGNALS.get(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if signal is None or length > MAX_BODY:
            self.send_error(404 if signal is None else 413)
            return
        self.rfile.read(length)
        print(f"otlp {signal}: received {length} bytes", flush=True)
        # An empty Export*ServiceResponse: full success, in either encoding.
        json_body = self.headers.get("Content-Type", "").startswith("application/json")
        body = b"{}" if json_body else b""
        self.send_response(200)
        content_type = "application/json" if json_body else "application/x-protobuf"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "Server available"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    print(f"OTLP receiver stand-in (arguments not interpreted: {sys.argv[1:]})", flush=True)
    # All interfaces of the container: the services reach it by its compose name.
    health = ThreadingHTTPServer(("0.0.0.0", 13133), Health)  # noqa: S104
    threading.Thread(target=health.serve_forever, daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", 4318), Receiver).serve_forever()  # noqa: S104
