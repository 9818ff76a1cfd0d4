#!/usr/bin/python3
"""The daemon runs data-parallel jobs through a launcher line (issue 19), ctest
label mpi.

A daemon configured with `launcher = mpirun ... -np {processes}` and a
shared_dir:

  refuse    a job asking for 2 processes of a daemon without a launcher
            is refused with 422 no_launcher
  retries   a launcher that never starts a rank: the job is requeued
            launcher_retries times, then fails; the daemon lives on
  param     the ranks' result line names the job's field at fault: the
            job's error has it as param
  stream    a 2-process SFT job: its metrics arrive over the job's event
            stream while it runs, the job object says 2 processes, it
            succeeds and registers its model
  pause     a long 2-process job pauses (a checkpoint, no process left),
            resumes from that checkpoint, and is cancelled: cancelled, no
            process left
  rank      one rank of a running job is killed: the attempt is lost, the job
            goes back to the queue, resumes from its last checkpoint on a
            second attempt and succeeds
  stop      SIGTERM to the daemon while a launched job runs: the job
            checkpoints and is queued again; nothing of it stays running

usage: check_daemon_launch.py ALIGND_BIN WORKDIR
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

ALIGND, WORK = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
MPIRUN = shutil.which("mpirun") or "mpirun"
# the ranks of a sanitizer build run without LeakSanitizer (tests/CMakeLists.txt)
LAUNCHER = (f"{MPIRUN} --allow-run-as-root --oversubscribe -x ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "
            "-np {processes}")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def start_daemon(name, extra):
    state = os.path.join(WORK, name)
    log = open(os.path.join(WORK, name + ".log"), "w")
    p = subprocess.Popen([ALIGND, "serve", "--listen", "127.0.0.1:0", "--models-dir", os.path.join(WORK, "models"),
                          "--state-dir", state, "--workers", "2"] + extra, stderr=log, stdout=log)
    addr = os.path.join(state, "alignd.addr")
    for _ in range(400):
        if os.path.exists(addr) and os.path.getsize(addr) > 0:
            break
        if p.poll() is not None:
            break
        time.sleep(0.05)
    with open(addr) as f:
        return p, "http://" + f.read().strip()


def call(base, path, body=None, method=None):
    req = urllib.request.Request(base + path, method=method or ("POST" if body is not None else "GET"))
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def job(base, jid):
    return call(base, f"/v1/fine_tuning/jobs/{jid}")[1]


def wait(base, jid, cond, timeout=300, what=""):
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = job(base, jid)
        if cond(j):
            return j
        if j["status"] in ("failed", "succeeded", "cancelled") and not cond(j):
            break
        time.sleep(0.1)
    j = job(base, jid)
    print(f"     {jid} {what}: gave up at status {j['status']} step {j['progress']['step']} error {j.get('error')}")
    return None


def ranks_of(jid):
    """pids of processes running this job's description (the ranks; mpirun's
    command line holds it too)."""
    needle = os.path.join(WORK, "shared", jid, "job.json").encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in args:
            out.append((int(d), os.path.basename(args[0]).decode(errors="replace")))
    return out


def events(base, jid):
    return [e["message"] for e in call(base, f"/v1/fine_tuning/jobs/{jid}/events?limit=100")[1]["data"]]


def sft(steps, save=0, processes=2):
    return {"method": "sft", "model": "tiny", "task": {"name": "addition", "rows": 400},
            "resources": {"processes": processes, "threads_per_process": 1},
            "hyperparameters": {"max_steps": steps, "batch_size": 4, "logging_steps": 2, "eval_steps": 0,
                                "save_steps": save}}


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
subprocess.run([ALIGND, "init-model", "--arch", "gpt2", "--layers", "2", "--hidden", "32", "--heads", "2", "--vocab",
                "260", "--context", "64", "--out", os.path.join(WORK, "models", "tiny")], check=True,
               capture_output=True)

# a daemon without a launcher refuses such jobs
plain, base0 = start_daemon("plain", [])
code, body = call(base0, "/v1/fine_tuning/jobs", sft(10))
check(code == 422 and body["error"]["code"] == "no_launcher" and body["error"]["param"] == "resources.processes",
      f"no launcher: 422 no_launcher naming resources.processes ({code} {body.get('error')})")
plain.send_signal(signal.SIGTERM)
plain.wait(60)

# a launcher that never starts a rank (exits 1 at once): every attempt is
# lost, the job is requeued launcher_retries times, then fails; the daemon
# lives on. The same stand-in launcher answers a job of seed 424242 as
# ranks that failed on a field of the job: the result line's
# "param" (as `alignd train --events json` writes it) becomes the job
# error's param
fake_rank = os.path.join(WORK, "fake_rank.sh")
with open(fake_rank, "w") as f:
    f.write("for a; do case $a in *.json) job=$a;; esac; done\n"
            "grep -q 424242 \"$job\" || exit 1\necho '" + json.dumps(
                {"event": "result", "status": "failed", "code": "invalid argument",
                 "message": "reward.judge.model: cannot tell the answers A and B apart",
                 "param": "reward.judge.model", "steps": 0, "total_steps": 0, "trained_tokens": 0,
                 "output_dir": "", "output_is_model": False, "files": []}) + "'\n")
bad, base1 = start_daemon("bad", ["--launcher", "/bin/sh " + fake_rank + " -np {processes}", "--shared-dir",
                                  os.path.join(WORK, "shared_bad"), "--launcher-retries", "1"])
code, jb = call(base1, "/v1/fine_tuning/jobs", sft(10))
j = wait(base1, jb["id"], lambda x: x["status"] == "failed", timeout=120, what="to fail") if code == 200 else None
msg = (j or {}).get("error") or {}
check(j is not None and "after 2 attempts" in (msg.get("message") or ""),
      f"a launch that never runs: failed after 2 attempts ({msg.get('message')})")
ev = events(base1, jb["id"]) if code == 200 else []
check(sum(e.startswith("Attempt 1 was lost") and "restarts from step 0" in e for e in ev) == 1,
      "a launch that never runs: its first lost attempt was requeued, from step 0")
check(call(base1, "/v1/fine_tuning/jobs")[0] == 200 and bad.poll() is None, "the daemon lives on")
code, jf = call(base1, "/v1/fine_tuning/jobs", dict(sft(10), seed=424242))
j = wait(base1, jf["id"], lambda x: x["status"] == "failed", timeout=120, what="to fail") if code == 200 else None
e = (j or {}).get("error") or {}
check(e.get("param") == "reward.judge.model" and e.get("code") == "invalid_job" and
      e.get("message") == "reward.judge.model: cannot tell the answers A and B apart",
      f"the ranks' failure: its field is the error's param ({code} {e})")
bad.send_signal(signal.SIGTERM)
bad.wait(60)

daemon, base = start_daemon("state", ["--launcher", LAUNCHER, "--shared-dir", os.path.join(WORK, "shared"),
                                      "--launcher-retries", "2"])
try:
    # ---- stream: metrics while it runs, then success
    code, j1 = call(base, "/v1/fine_tuning/jobs", sft(60))
    check(code == 200 and j1["resources"]["processes"] == 2, f"a 2-process job is queued ({code})")
    jid = j1["id"]
    req = urllib.request.Request(base + f"/v1/fine_tuning/jobs/{jid}/events", headers={"Accept": "text/event-stream"})
    seen_metrics, running_then = 0, False
    with urllib.request.urlopen(req, timeout=300) as stream:
        kind = None
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "metrics":
                seen_metrics += 1
                if seen_metrics == 2:
                    running_then = job(base, jid)["status"] == "running"
            elif line.startswith("data: ") and kind == "end":
                break
    check(seen_metrics >= 10 and running_then,
          f"{jid}: metrics streamed while it ran ({seen_metrics} metrics items)")
    j = wait(base, jid, lambda x: x["status"] == "succeeded", what="to succeed")
    check(j is not None and j["progress"]["step"] == 60 and j["fine_tuned_model"],
          f"{jid}: succeeded at step 60 with a model")
    m = call(base, f"/v1/fine_tuning/jobs/{jid}/metrics?keys=loss")[1]["data"]
    check(len(m) >= 30 and m[-1]["step"] == 60, f"{jid}: the loss of every logged step is stored ({len(m)} rows)")
    ev = events(base, jid)
    check(any("Starting 2 processes through the launcher" in e for e in ev), f"{jid}: the launch is an event")
    check(any(e.startswith("distributed: 2 ranks") for e in ev), f"{jid}: rank 0's events arrive")
    check(os.path.exists(os.path.join(WORK, "shared", jid, "model.safetensors")), f"{jid}: its output is in shared_dir")
    check(not ranks_of(jid), f"{jid}: no process left")

    # ---- pause, resume, cancel
    code, j2 = call(base, "/v1/fine_tuning/jobs", sft(100000, save=0))
    jid = j2["id"]
    check(wait(base, jid, lambda x: x["progress"]["step"] >= 4, what="to run") is not None, f"{jid}: runs")
    call(base, f"/v1/fine_tuning/jobs/{jid}/pause", {})
    j = wait(base, jid, lambda x: x["status"] == "paused", timeout=120, what="to pause")
    check(j is not None, f"{jid}: paused")
    ck = call(base, f"/v1/fine_tuning/jobs/{jid}/checkpoints")[1]["data"]
    check(len(ck) == 1 and j and ck[0]["step_number"] == j["progress"]["step"] if ck and j else False,
          f"{jid}: the pause wrote a checkpoint at its step")
    check(not ranks_of(jid), f"{jid}: no process left while paused")
    paused_at = j["progress"]["step"] if j else 0
    call(base, f"/v1/fine_tuning/jobs/{jid}/resume", {})
    j = wait(base, jid, lambda x: x["status"] == "running" and x["progress"]["step"] > paused_at + 2,
             what="to resume")
    check(j is not None, f"{jid}: resumed and runs on")
    check(any(f"at step {paused_at}" in e and e.startswith("resumed from") for e in events(base, jid)),
          f"{jid}: the ranks resumed from the pause's checkpoint (step {paused_at})")
    call(base, f"/v1/fine_tuning/jobs/{jid}/cancel", {})
    j = wait(base, jid, lambda x: x["status"] == "cancelled", timeout=120, what="to cancel")
    check(j is not None, f"{jid}: cancelled")
    check(not ranks_of(jid), f"{jid}: no process left after the cancel")

    # ---- a rank dies: requeued from the last checkpoint
    code, j3 = call(base, "/v1/fine_tuning/jobs", sft(160, save=10))
    jid = j3["id"]
    j = wait(base, jid, lambda x: x["status"] == "running" and x["progress"]["step"] >= 12, what="to checkpoint")
    victims = [p for p, name in ranks_of(jid) if name not in ("mpirun", "orterun", "mpiexec")]
    check(len(victims) == 2, f"{jid}: its 2 ranks are found ({victims})")
    if victims:
        os.kill(max(victims), signal.SIGKILL)
    j = wait(base, jid, lambda x: any("Attempt 1 was lost" in e for e in events(base, jid)), timeout=120,
             what="to lose the attempt")
    check(j is not None, f"{jid}: the attempt is lost when a rank is killed")
    lost = [e for e in events(base, jid) if "Attempt 1 was lost" in e]
    resumed = [e for e in events(base, jid) if e.startswith("resumed from")]
    j = wait(base, jid, lambda x: x["status"] == "succeeded", what="to succeed after the requeue")
    resumed = [e for e in events(base, jid) if e.startswith("resumed from")]
    check(j is not None and j["progress"]["step"] == 160, f"{jid}: succeeded on the second attempt")
    check(bool(lost) and "resumes from the checkpoint at step" in lost[0], f"{jid}: requeued from its checkpoint "
          f"({lost[0] if lost else '-'})")
    check(len(resumed) == 1 and "checkpoint-" in resumed[0], f"{jid}: the second attempt resumed ({resumed})")
    check(any("attempt 2" in e for e in events(base, jid)), f"{jid}: attempt 2 was started")
    check(not ranks_of(jid), f"{jid}: no process left")

    # ---- the daemon stops while a launched job runs
    code, j4 = call(base, "/v1/fine_tuning/jobs", sft(100000))
    jid = j4["id"]
    wait(base, jid, lambda x: x["progress"]["step"] >= 4, what="to run")
finally:
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(120)
    except subprocess.TimeoutExpired:
        daemon.kill()
        check(False, "the daemon stopped within 120 s")
left = ranks_of(jid)
check(not left, f"after the daemon stopped, nothing of {jid} runs ({left})")
out = subprocess.run(["sqlite3", os.path.join(WORK, "state", "alignd.db"),
                      f"SELECT status, resume_dir IS NOT NULL FROM jobs WHERE id = {jid.split('-')[1]}"],
                     capture_output=True, text=True).stdout.strip()
check(out == "queued|1", f"{jid}: queued again with a checkpoint to resume from ({out})")
print(f"{len(failures)} failed")
if failures:
    with open(os.path.join(WORK, "state.log")) as f:
        print("---- daemon log (tail)\n" + "".join(f.readlines()[-30:]))
sys.exit(1 if failures else 0)
