"""A TCP service for the tests: echoes each line back prefixed with its name, on $PORT."""

import os
import socketserver


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(f"{os.environ['MALLA_NAME']}: ".encode() + line)


socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(os.environ["PORT"])), Echo).serve_forever()
