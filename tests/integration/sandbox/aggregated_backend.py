"""
A tiny aggregated API server for the aggregation tests (run as a process):
HTTPS that requires a client certificate of the given CA, serves discovery for
demo.example.com/v1, echoes what it received at .../echo, and answers an
Upgrade at .../ws with 101 and then echoes raw bytes.

    python aggregated_backend.py CERT KEY CLIENT_CA PORT_FILE
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "demo.example.com/v1",
    "resources": [
        {
            "name": "widgets",
            "singularName": "widget",
            "namespaced": False,
            "kind": "Widget",
            "verbs": ["get", "list"],
            "shortNames": ["wd"],
        },
        {
            "name": "widgets/proxy",
            "singularName": "",
            "namespaced": False,
            "kind": "Widget",
            "verbs": ["get"],
        },
    ],
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/apis/demo.example.com/v1":
            self._send(200, RESOURCES)
        elif path.startswith("/apis/demo.example.com/v1/ws"):
            self.send_response_only(101)
            self.send_header("Upgrade", self.headers.get("Upgrade", "websocket"))
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            conn: socket.socket = self.connection
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data.upper())
        elif path.startswith("/apis/demo.example.com/v1/echo"):
            cert = self.connection.getpeercert()  # type: ignore[attr-defined]
            subject = dict(x[0] for x in cert["subject"]) if cert else {}
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            self._send(
                200,
                {
                    "path": self.path,
                    "headers": headers,
                    "peer": subject.get("commonName"),
                },
            )
        else:
            self._send(404, {"kind": "Status", "code": 404})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self._send(200, {"received": len(body)})

    def _any_method(self) -> None:
        self._send(200, {"method": self.command, "path": self.path})

    def __getattr__(self, name: str) -> Any:
        # Any other method (as sent: methods are case-sensitive) is echoed.
        if name.startswith("do_"):
            return self._any_method
        raise AttributeError(name)


def main() -> None:
    cert, key, client_ca, port_file = sys.argv[1:5]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.rename(port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
