#!/usr/bin/python3
# A custom allocation webhook for the tests (dps-protocol.md §7.3), on 127.0.0.1 and a port the
# kernel picks (written to PORTFILE once listening).  The path selects the behaviour:
#   /ok        200 {"iotHubHostName": the last of linkedHubs, "initialTwin", "payload"}
#   /slow      like /ok after SLOW seconds (default 5)
#   /garbage   200 with a body that is not JSON
#   /500       500
#   /unlinked  200 {"iotHubHostName": "not-linked.example.test"}
# Every request body is appended as one line to LOG.
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

portfile, log = sys.argv[1], sys.argv[2]
slow = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        with open(log, "a") as f:
            f.write(json.dumps({"path": self.path, "contentType": self.headers.get("Content-Type"),
                                "body": json.loads(raw)}) + "\n")
        req = json.loads(raw)
        hubs = req.get("linkedHubs") or ["none.example.test"]
        ok = {"iotHubHostName": hubs[-1],
              "initialTwin": {"tags": {"allocatedBy": "webhook"}, "properties": {"desired": {"rate": 5}}},
              "payload": {"plant": "north", "echo": req["deviceRuntimeContext"].get("payload")}}
        if self.path == "/ok":
            self.answer(200, json.dumps(ok))
        elif self.path == "/slow":
            time.sleep(slow)
            self.answer(200, json.dumps(ok))
        elif self.path == "/garbage":
            self.answer(200, "this is not { json")
        elif self.path == "/500":
            self.answer(500, '{"error":"internal"}')
        elif self.path == "/unlinked":
            self.answer(200, json.dumps({"iotHubHostName": "not-linked.example.test"}))
        else:
            self.answer(404, "{}")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
