#!/usr/bin/python3
"""A reward verifier for tests/test_reward_http.c, on the standard library.

Binds 127.0.0.1:0, prints its port on the first line of stdout, and answers
POST {"prompts", "completions", "rows"} by path:

  /ok         {"rewards": [1.0 if the row's answer is in the completion else 0.0]}
  /len        {"rewards": [len(completion)]}
  /slow       sleeps 3 s first (the client's timeout fires)
  /malformed  a body that is not JSON
  /count      one reward too few
  /null       a null reward
  /norewards  {"scores": [...]}
  /e400       400 {"error": "bad request shape"} (not retried)
  /e500       500 every time
  /flaky/K    500 for the first request with key K, then as /len
  /seen       {"requests": N, "max_batch": B, "last": the last body} (GET)
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
state = {"requests": 0, "max_batch": 0, "last": None, "flaky": set()}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, code, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.send(200, json.dumps({k: state[k] for k in ("requests", "max_batch", "last")}))

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n))
        comps = req["completions"]
        with lock:
            state["requests"] += 1
            state["max_batch"] = max(state["max_batch"], len(comps))
            state["last"] = req
        path = self.path
        if path == "/slow":
            time.sleep(3)
            path = "/len"
        if path.startswith("/flaky/"):
            with lock:
                first = path not in state["flaky"]
                state["flaky"].add(path)
            if first:
                return self.send(500, '{"error": "warming up"}')
            path = "/len"
        if path == "/ok":
            rewards = [1.0 if (r or {}).get("answer") and str(r["answer"]) in c else 0.0
                       for c, r in zip(comps, req["rows"])]
        elif path == "/len":
            rewards = [float(len(c)) for c in comps]
        elif path == "/malformed":
            return self.send(200, "{rewards: oops")
        elif path == "/count":
            rewards = [0.0] * (len(comps) - 1)
        elif path == "/null":
            rewards = [0.0] * len(comps)
            rewards[-1] = None
        elif path == "/norewards":
            return self.send(200, json.dumps({"scores": [0.0] * len(comps)}))
        elif path == "/e400":
            return self.send(400, '{"error": "bad request shape"}')
        elif path == "/e500":
            return self.send(500, '{"error": "verifier crashed"}')
        else:
            return self.send(404, '{"error": "no such path"}')
        self.send(200, json.dumps({"rewards": rewards}))


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
