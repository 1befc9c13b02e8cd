"""A tiny HTTP service on Debian's python3-minimal, which has sockets but
not http.server: it answers every GET with one line of text."""

import os
import socket

PORT = int(os.environ.get("PORT", "8080"))
BODY = b"hello from Debian's python3\n"

with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", PORT))
    server.listen(16)
    print(f"serving on port {PORT}", flush=True)
    while True:
        connection, _ = server.accept()
        with connection:
            request = connection.recv(4096)
            if not request:
                continue
            status = b"200 OK" if request.startswith(b"GET ") else b"405 Method Not Allowed"
            connection.sendall(
                b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
            )
