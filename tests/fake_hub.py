#!/usr/bin/python3
"""A local stand-in for the Hugging Face Hub and its CDN, for the tests of
`alignd pull` and of the daemon's models by name (tests/test_hub.c).

It speaks the part of the Hub's protocol that huggingface_hub's
snapshot_download uses (and daemon/hub.c implements):

  GET  /api/models/{org}/{name}/revision/{rev}[?blobs=true]
       -> {"id", "sha", "gated", "siblings": [{"rfilename", "size", "blobId",
          "lfs": {"sha256", "size", "pointerSize"}}]}
  HEAD|GET /{org}/{name}/resolve/{rev}/{path}
       -> plain git files: 200 with ETag "<git blob sha1>", X-Repo-Commit;
          LFS files (*.safetensors, or over 64 kB): 302 to the CDN (another
          port: another host to the client) with X-Linked-Etag "<sha256>",
          X-Linked-Size, X-Repo-Commit.
  the CDN: GET|HEAD /{sha256}?sig=... with Range support (206).

Errors carry the Hub's X-Error-Code / X-Error-Message headers (RepoNotFound,
RevisionNotFound, EntryNotFound, GatedRepo).

Repositories are folders <root>/<org>/<name>/ holding the files; an optional
<root>/<org>/<name>.hub.json beside each sets its behaviour:
  "revisions": ["main", "v1"]        branches and tags (all at one commit)
  "gated_token": "hf_..."            gated: only this token may read it
  "bad_sha256": ["model.safetensors"]  the file list announces a wrong SHA-256
  "break_after": {"file": N}         the first GET of the file closes the
                                     connection after N bytes
  "pause_after": {"file": N}         the first GET of the file sends N bytes
                                     and then stalls (the client gets killed)
  "hold": {"file": "FLAG"}           a GET of the file sends half of it and
                                     waits until <root>/FLAG exists (a slow
                                     download the test ends when it chooses)
  "extra_siblings": [{...}]          listed but absent (hostile names)
  "weak_etag": true                  ETags as W/"..."

Every request is appended to --log as one JSON line:
  {"server": "hub"|"cdn", "method", "path", "range", "auth"}.
The two ports are written to --port-file as "HUB CDN". Standard library only.
"""
import argparse
import hashlib
import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
FIRST_GET_DONE = set()          # (sha256, kind) for break_after / pause_after


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, root, org, name):
        self.id = f"{org}/{name}"
        self.dir = os.path.join(root, org, name)
        cfg_path = os.path.join(root, org, name + ".hub.json")
        self.cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
        self.files = {}
        for dirpath, _, names in os.walk(self.dir):
            for n in names:
                full = os.path.join(dirpath, n)
                rel = os.path.relpath(full, self.dir).replace(os.sep, "/")
                data = open(full, "rb").read()
                lfs = rel.endswith(".safetensors") or len(data) > 65536
                self.files[rel] = {"data": data, "sha256": hashlib.sha256(data).hexdigest(),
                                   "git": git_sha1(data), "lfs": lfs}
        listing = "".join(f"{k}:{v['sha256']}\n" for k, v in sorted(self.files.items()))
        self.commit = hashlib.sha1(listing.encode()).hexdigest()

    def revision_ok(self, rev):
        return rev == self.commit or rev in self.cfg.get("revisions", ["main"])

    def siblings(self):
        out = []
        for k, v in sorted(self.files.items()):
            s = {"rfilename": k, "size": len(v["data"]), "blobId": v["git"]}
            if v["lfs"]:
                sha = v["sha256"]
                if k in self.cfg.get("bad_sha256", []):
                    sha = hashlib.sha256(b"not the content" + v["data"]).hexdigest()
                s["lfs"] = {"sha256": sha, "size": len(v["data"]), "pointerSize": 134}
            out.append(s)
        return out + self.cfg.get("extra_siblings", [])


class State:
    root = None
    log = None
    cdn_port = None
    blobs = {}                  # sha256 -> (repo cfg, file name, bytes)
    repos = {}                  # folder -> Repo


def log_request(server, h):
    rec = {"server": server, "method": h.command, "path": h.path,
           "range": h.headers.get("Range"), "auth": h.headers.get("Authorization") is not None}
    with LOCK:
        with open(State.log, "a") as f:
            f.write(json.dumps(rec) + "\n")


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def error(self, status, code, message):
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def repo(self, org, name):
        d = os.path.join(State.root, org, name)
        if not os.path.isdir(d):
            return None
        with LOCK:                      # hashed once: the files do not change
            if d not in State.repos:
                State.repos[d] = Repo(State.root, org, name)
            return State.repos[d]

    def gate(self, repo):
        tok = repo.cfg.get("gated_token")
        if not tok:
            return True
        auth = self.headers.get("Authorization")
        if auth is None:
            self.error(401, "GatedRepo", f"Access to model {repo.id} is restricted. You must have access to "
                       "it and be authenticated to access it. Please log in.")
            return False
        if auth != "Bearer " + tok:
            self.error(403, "GatedRepo", f"Access to model {repo.id} is restricted and you are not in the "
                       "authorized list. Visit https://huggingface.co/" + repo.id + " to ask for access.")
            return False
        return True

    def do_GET(self):
        self.handle_any()

    def do_HEAD(self):
        self.handle_any()

    def handle_any(self):
        log_request("hub", self)
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] == "revision":
            org, name, rev = parts[2], parts[3], "/".join(parts[5:])
            repo = self.repo(org, name)
            if repo is None:
                return self.error(401, "RepoNotFound", "Repository not found")
            if not self.gate(repo):
                return
            if not repo.revision_ok(rev):
                return self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            body = json.dumps({"_id": "x", "id": repo.id, "modelId": repo.id, "sha": repo.commit,
                               "gated": "manual" if repo.cfg.get("gated_token") else False,
                               "private": False, "siblings": repo.siblings()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        if len(parts) >= 5 and parts[2] == "resolve":
            org, name, rev, path = parts[0], parts[1], parts[3], "/".join(parts[4:])
            repo = self.repo(org, name)
            if repo is None:
                return self.error(401, "RepoNotFound", "Repository not found")
            if not self.gate(repo):
                return
            if not repo.revision_ok(rev):
                return self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            f = repo.files.get(path)
            if f is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", repo.commit)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            weak = "W/" if repo.cfg.get("weak_etag") else ""
            if f["lfs"]:
                State.blobs[f["sha256"]] = (repo.cfg, path, f["data"])
                loc = f"http://127.0.0.1:{State.cdn_port}/{f['sha256']}?sig=abc&expires=1"
                self.send_response(302)
                self.send_header("Location", loc)
                self.send_header("X-Repo-Commit", repo.commit)
                self.send_header("X-Linked-Etag", f'{weak}"{f["sha256"]}"')
                self.send_header("X-Linked-Size", str(len(f["data"])))
                self.send_header("ETag", f'"{f["git"]}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("ETag", f'{weak}"{f["git"]}"')
            self.send_header("Content-Length", str(len(f["data"])))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(f["data"])
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Cdn(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        log_request("cdn", self)
        sha = urllib.parse.urlsplit(self.path).path.lstrip("/")
        if sha not in State.blobs:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        cfg, name, data = State.blobs[sha]
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("ETag", f'"{sha}"')
        self.end_headers()
        if self.command == "HEAD":
            return
        body = data[start:]
        with LOCK:
            first = rng is None and (sha, "first") not in FIRST_GET_DONE
            if first:
                FIRST_GET_DONE.add((sha, "first"))
        if first and name in cfg.get("break_after", {}):
            self.wfile.write(body[:cfg["break_after"][name]])
            self.wfile.flush()
            return                      # HTTP/1.0: the connection closes short
        if name in cfg.get("hold", {}):
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            flag = os.path.join(State.root, cfg["hold"][name])
            end = time.time() + 120
            while not os.path.exists(flag) and time.time() < end:
                time.sleep(0.05)
            body = body[half:]
        if first and name in cfg.get("pause_after", {}):
            self.wfile.write(body[:cfg["pause_after"][name]])
            self.wfile.flush()
            time.sleep(30)              # the client is killed meanwhile
            return
        self.wfile.write(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    State.root = a.root
    State.log = a.log
    hub = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), Cdn)
    hub.daemon_threads = cdn.daemon_threads = True
    State.cdn_port = cdn.server_address[1]
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{hub.server_address[1]} {cdn.server_address[1]}\n")
    os.replace(tmp, a.port_file)
    hub.serve_forever()


if __name__ == "__main__":
    main()
