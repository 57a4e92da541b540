#!/usr/bin/env python3
"""soak.py: long runs of the real server under load (bench/soak.sh,
bench/crash.sh, tests/integration/test_crash.py).

Two modes, both against the real binary (./keystone-k8s-auth, or
K8SAUTH_BIN) and the test cluster (tests/k8s/fake-k8s, or FAKE_K8S_BIN),
set up with the integration fixtures (tests/integration/harness.py,
k8s_fixture.py):

soak  (SOAK_MINUTES, default 30)  two workers under a steady mixed load
      (SOAK_RATE requests/s, default 150): logins on an instance without a
      review cache (every login is a TokenReview) and, when the server has
      the instance field review_cache_ttl, on one with it (else plain
      logins again); validations of issued tokens; admin creates, updates
      and deletes of restrictions and roles.  SIGHUP every minute.  The
      cluster answers 1 % of reviews with 503, resets 1 % and delays 1 %
      by SOAK_SPIKE_MS (1500 ms, under [k8s_auth] review_timeout).
      Every minute: RSS, open fds, threads, database size (with -wal),
      p99 latency, answers per status and reason.  Pass:
        - no answer other than the expected ones (login 200, or 503
          cluster_unavailable / 504 cluster_timeout; validation 200; admin
          201/200/204) and no transport error;
        - every login 5xx traced to an injected fault of the cluster for the
          same JWT while that login was in flight (the cluster's log names
          the token id of each fault, with its time): a 503 to an error
          Status or a reset, a 504 to a latency spike, each fault used
          once;
        - no token issued on a faulted review: for each JWT, the audit
          trail's successful logins (instance without cache) are at most the
          cluster's authenticated reviews of it;
        - RSS drift <= SOAK_RSS_DRIFT (5 %) between minute 5 (or the first
          quarter, on short runs) and the end; fds flat (the last
          samples' maximum at most 2 above the maximum up to the
          reference sample: the count moves with the connections open at
          the instant) and the thread count unchanged;
        - no sanitizer report in the logs, and a clean exit on SIGTERM.
crash (CRASH_MINUTES, default 10; CRASH_EVERY seconds, default 120)
      write load (admin creates, updates and deletes of restrictions, each
      object owned by one driver thread so its last acknowledged state is
      known; back to back in the second before a kill, so that writes are
      in flight when it comes); kill -9 of the server every CRASH_EVERY seconds, then
      PRAGMA integrity_check on the database, a restart, and a check that
      every acknowledged write is there (a create present, the last
      acknowledged update's value, a delete absent); a write whose answer
      was lost in the kill may have happened or not, either is accepted.

Exit status 0 when every check passed, 1 on a violation (listed), 2 on a
set-up error.  The table of the samples is printed as Markdown.
Python 3 standard library only.
"""
import calendar
import collections
import hashlib
import http.client
import json
import os
import random
import re
import signal
import sqlite3
import ssl
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests",
                                "integration"))
import harness  # noqa: E402
from harness import Server, TestFailure  # noqa: E402
from k8s_fixture import FakeK8s, Login  # noqa: E402

LOGIN_5XX_REASONS = {"cluster_unavailable", "cluster_timeout"}


def env_num(name, default, conv=float):
    v = os.environ.get(name, "")
    return conv(v) if v else default


def jwt_id(jwt):
    """The server's and the cluster's log id of a secret (log_secret_id)."""
    return hashlib.sha256(jwt.encode()).hexdigest()[:8]


def percentile(values, p):
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


# -- process sampling -------------------------------------------------------
def proc_sample(pid):
    """RSS (KiB), open fds and threads of pid from /proc."""
    rss = threads = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return rss, fds, threads


def db_size(path):
    n = 0
    for suffix in ("", "-wal"):
        try:
            n += os.path.getsize(path + suffix)
        except OSError:
            pass
    return n


# -- the load ---------------------------------------------------------------
class Stats:
    """Answers of the current minute and of the whole run (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.minute = collections.Counter()
        self.total = collections.Counter()
        self.lat = []
        self.violations = []
        self.login_5xx = []     # (jwt id, status, wall start, wall end)
        self.login_ok = collections.Counter()      # jwt id -> count

    def record(self, kind, status, reason, secs):
        key = "%s %s%s" % (kind, status, " " + reason if reason else "")
        with self.lock:
            self.minute[key] += 1
            self.total[key] += 1
            self.lat.append(secs)

    def violation(self, msg):
        with self.lock:
            if len(self.violations) < 200:
                self.violations.append(msg)
            self.total["violations"] += 1

    def take_minute(self):
        with self.lock:
            m, lat = self.minute, self.lat
            self.minute, self.lat = collections.Counter(), []
        return m, lat


def reason_of(resp):
    j = resp.json
    if isinstance(j, dict) and isinstance(j.get("error"), dict):
        return j["error"].get("reason") or ""
    return ""


class Driver(threading.Thread):
    """One client thread with its own keep-alive connection."""

    def __init__(self, run, n):
        super().__init__(daemon=True)
        self.run_ = run
        self.n = n
        self.conn = None
        self.rng = random.Random(n)

    def req(self, method, path, body=None, token=harness.ADMIN,
            headers=None):
        srv = self.run_.srv
        if self.conn is None:
            self.conn = srv.connection(True, timeout=30)
        try:
            return srv.req(method, path, body, token=token, conn=self.conn,
                           headers=headers)
        except Exception:
            self.conn.close()
            self.conn = None
            raise

    def timed(self, kind, expect, method, path, body=None, **kw):
        t0 = time.monotonic()
        try:
            r = self.req(method, path, body, **kw)
        except Exception as e:
            self.run_.stats.record(kind, "error", type(e).__name__,
                                   time.monotonic() - t0)
            self.run_.transport_error(kind, e)
            return None
        dt = time.monotonic() - t0
        reason = reason_of(r) if r.status >= 400 else ""
        self.run_.stats.record(kind, r.status, reason, dt)
        if expect is not None and r.status not in expect:
            self.run_.stats.violation("%s %s %s: unexpected %d %s" % (
                kind, method, path, r.status, r.raw[:200]))
        return r

    def run(self):
        run = self.run_
        interval = run.threads / run.rate
        nxt = time.monotonic() + self.rng.random() * interval
        while not run.stop.is_set():
            now = time.monotonic()
            if nxt > now:
                run.stop.wait(nxt - now)
                continue
            nxt += interval
            if nxt < now - 1:
                nxt = now       # behind (a slow answer): do not burst
            try:
                run.step(self)
            except TestFailure as e:
                run.stats.violation(str(e))


class SoakRun:
    def __init__(self):
        self.minutes = env_num("SOAK_MINUTES", 30.0)
        self.rate = env_num("SOAK_RATE", 150.0)
        self.threads = int(env_num("SOAK_THREADS", 12))
        self.spike_ms = int(env_num("SOAK_SPIKE_MS", 1500))
        self.drift_max = env_num("SOAK_RSS_DRIFT", 0.05)
        self.sample_secs = env_num("SOAK_SAMPLE_SECONDS", 60.0)
        self.stats = Stats()
        self.stop = threading.Event()
        self.tokens = collections.deque(maxlen=500)
        self.rows = []
        self.lock = threading.Lock()

    # -- set-up -------------------------------------------------------------
    def setup(self):
        self.k8s = FakeK8s("soak").start()
        self.audit = os.path.join(harness.make_tmpdir("soak-audit-"),
                                  "audit.log")
        self.srv = Server(extra={"log": {"level": "info",
                                         "audit_file": self.audit}},
                          workers=2, name="soak")
        self.srv.start()
        # The plain instance reviews every login (review_cache_ttl 0 where
        # the server has the cache, whose default is on), so that its
        # tokens can be held to the cluster's reviews one for one.
        try:
            self.plain = Login(self.srv, self.k8s,
                               inst={"review_cache_ttl": 0})
        except TestFailure:
            self.plain = Login(self.srv, self.k8s)
        self.cached = None
        try:
            self.cached = Login(self.srv, self.k8s,
                                inst={"review_cache_ttl": 60})
            self.cache_mode = "review_cache_ttl=60"
        except TestFailure:
            self.cached = Login(self.srv, self.k8s)
            self.cache_mode = "none (no review_cache_ttl): plain logins"
        # JWTs: a pool per instance (the cached one small, so it hits).
        self.plain_jwts = [self.plain.jwt() for _ in range(400)]
        self.cached_jwts = [self.cached.jwt() for _ in range(10)]
        self.plain_ids = {jwt_id(j) for j in self.plain_jwts}
        self.rst_template = {"domain_id": self.plain.dom,
                             "user_id": self.plain.user_id,
                             "project_id": self.plain.project_id,
                             "roles": [{"id": self.plain.role_ids[0]}]}
        st, _ = self.k8s.api("POST", "/_test/faults/random", {
            "status_rate": 0.01, "status": 503, "reset_rate": 0.01,
            "latency_rate": 0.01, "latency_ms": self.spike_ms})
        if st != 200:
            raise TestFailure("fake-k8s has no /_test/faults/random (%d)"
                              % st)

    def transport_error(self, kind, e):
        self.stats.violation("%s: transport error %s: %s" % (
            kind, type(e).__name__, e))

    # -- one request of the mix ---------------------------------------------
    def step(self, d):
        x = d.rng.random()
        if x < 0.40:
            self.login(d, self.plain, d.rng.choice(self.plain_jwts))
        elif x < 0.60:
            self.login(d, self.cached, d.rng.choice(self.cached_jwts))
        elif x < 0.88:
            self.validate(d)
        else:
            self.admin(d)

    def login(self, d, lg, jwt):
        kind = "login" if lg is self.plain else "login-cached"
        w0 = time.time()
        r = d.timed(kind, (200, 503, 504), "POST", lg.path,
                    {"k8s_role": lg.role_name, "jwt": jwt}, token=None)
        if r is None:
            return
        jid = jwt_id(jwt)
        if r.status == 200:
            sub = r.headers.get("x-subject-token")
            if not sub:
                self.stats.violation("login 200 without X-Subject-Token")
            else:
                self.tokens.append(sub)
            if lg is self.plain:
                with self.stats.lock:
                    self.stats.login_ok[jid] += 1
        elif r.status >= 500:
            reason = reason_of(r)
            if reason not in LOGIN_5XX_REASONS:
                self.stats.violation("login %d with reason %r" % (
                    r.status, reason))
            with self.stats.lock:
                self.stats.login_5xx.append((jid, r.status, w0,
                                             time.time()))

    def validate(self, d):
        try:
            sub = d.rng.choice(self.tokens)
        except IndexError:
            return
        d.timed("validate", (200,), "GET", "/v3/auth/tokens",
                headers={"X-Subject-Token": sub})

    def admin(self, d):
        """A create, an update, then a delete of a restriction with a role,
        spread over this thread's calls (state in d)."""
        st = getattr(d, "adm", None)
        if st is None:
            b = dict(self.rst_template, user_id=os.urandom(16).hex())
            r = d.timed("admin-create", (201,), "POST",
                        "/v4/tokens/restrictions", {"restriction": b})
            if r is None or r.status != 201:
                return
            rid = r.json["restriction"]["id"]
            r = d.timed("admin-create", (201,), "POST",
                        "/v4/k8s_auth/instances/%s/roles" % self.plain.iid,
                        {"role": {"name": "soak-%d-%s" % (d.n, rid[:8]),
                                  "bound_service_account_names": ["x"],
                                  "bound_service_account_namespaces":
                                  ["y"], "token_restriction_id": rid}})
            role = r.json["role"]["id"] if r and r.status == 201 else None
            d.adm = {"rid": rid, "role": role, "updates": 0}
        elif st["updates"] < 3 and st["role"]:
            st["updates"] += 1
            d.timed("admin-update", (200,), "PATCH",
                    "/v4/k8s_auth/instances/%s/roles/%s" % (
                        self.plain.iid, st["role"]),
                    {"role": {"token_ttl": 600 + st["updates"]}})
        else:
            if st["role"]:
                d.timed("admin-delete", (204,), "DELETE",
                        "/v4/k8s_auth/instances/%s/roles/%s" % (
                            self.plain.iid, st["role"]))
            d.timed("admin-delete", (204,), "DELETE",
                    "/v4/tokens/restrictions/%s" % st["rid"])
            d.adm = None

    # -- sampling -----------------------------------------------------------
    def sample(self, minute):
        m, lat = self.stats.take_minute()
        rss, fds, threads = proc_sample(self.srv.proc.pid)
        row = {"minute": minute, "rss_kib": rss, "fds": fds,
               "threads": threads, "db_bytes": db_size(self.srv.db),
               "requests": len(lat),
               "p99_ms": round(percentile(lat, 0.99) * 1000, 1),
               "p50_ms": round(percentile(lat, 0.50) * 1000, 1),
               "answers": dict(sorted(m.items()))}
        self.rows.append(row)
        print("soak: minute %g: rss %d KiB, fds %d, threads %d, db %d B, "
              "%d requests, p50 %.1f ms, p99 %.1f ms, %s" % (
                  minute, rss, fds, threads, row["db_bytes"], len(lat),
                  row["p50_ms"], row["p99_ms"],
                  ", ".join("%s=%d" % kv for kv in sorted(m.items()))),
              flush=True)

    def run(self):
        drivers = [Driver(self, i) for i in range(self.threads)]
        for d in drivers:
            d.start()
        t0 = time.monotonic()
        n = 0
        total = self.minutes * 60
        while True:
            n += 1
            target = t0 + n * self.sample_secs
            if target - t0 > total + 0.5:
                break
            while time.monotonic() < target:
                time.sleep(min(1.0, target - time.monotonic()))
            self.srv.signal(signal.SIGHUP)
            self.sample(round(n * self.sample_secs / 60, 2))
        self.stop.set()
        for d in drivers:
            d.join(60)
        self.k8s.api("DELETE", "/_test/faults/random")

    # -- checks -------------------------------------------------------------
    def fault_log(self):
        """(jwt id, status it causes) -> [times of the injected faults],
        jwt id -> authenticated reviews."""
        faults, auth = collections.defaultdict(list), collections.Counter()
        fre = re.compile(r"fault=random-(status|reset|latency) token=(\w+)")
        are = re.compile(r"token=(\w+) authenticated as ")
        for line in self.k8s.log_text().splitlines():
            m = fre.search(line)
            if m:
                # 503 comes of an error or a reset, 504 of a delay.
                code = 504 if m.group(1) == "latency" else 503
                faults[(m.group(2), code)].append(
                    calendar.timegm(time.strptime(line[:19],
                                                  "%Y-%m-%dT%H:%M:%S")) +
                    float(line[19:26]))
            m = are.search(line)
            if m:
                auth[m.group(1)] += 1
        return faults, auth

    def audit_log(self):
        ok = collections.Counter()
        failures = collections.Counter()
        with open(self.audit) as f:
            for line in f:
                try:
                    a = json.loads(line)
                except ValueError:
                    self.stats.violation("audit: not JSON: %r" % line[:100])
                    continue
                if a.get("type") != "login":
                    continue
                if a.get("instance") != self.plain.iid:
                    continue
                if a.get("result") == "success":
                    ok[a.get("jwt_sha256")] += 1
                else:
                    failures[(a.get("jwt_sha256"), a.get("reason"))] += 1
        return ok, failures

    def check(self):
        v = self.stats.violation
        faults, auth = self.fault_log()
        audit_ok, audit_fail = self.audit_log()
        self.fault_total = sum(len(t) for k, t in faults.items()
                               if k[1] == 503)
        self.spikes = sum(len(t) for k, t in faults.items() if k[1] == 504)
        # Each 5xx takes one fault of its JWT and kind injected while the
        # login was in flight (1 s of slack for the clocks of the logs).
        for jid, code, w0, w1 in sorted(self.stats.login_5xx,
                                        key=lambda x: x[3]):
            times = faults.get((jid, code), [])
            hit = [t for t in times if w0 - 1 <= t <= w1 + 1]
            if not hit:
                v("login %d for JWT %s at %s: no fault injected for it "
                  "while it was in flight" % (
                      code, jid, time.strftime("%H:%M:%S",
                                               time.gmtime(w1))))
            else:
                times.remove(hit[0])
        # Uncached: a token per authenticated review at most.  Cached: a
        # token only for a JWT the cluster authenticated at least once.
        for jid, n in audit_ok.items():
            if jid in self.plain_ids and n > auth[jid]:
                v("audit: %d tokens issued for JWT %s but the cluster "
                  "authenticated it %d times" % (n, jid, auth[jid]))
            elif jid not in self.plain_ids and n > 0 and auth[jid] == 0:
                v("audit: %d tokens issued for cached JWT %s that the "
                  "cluster never authenticated" % (n, jid))
        for jid, n in self.stats.login_ok.items():
            if audit_ok[jid] != n:
                v("JWT %s: %d logins answered 200, %d in the audit "
                  "trail" % (jid, n, audit_ok[jid]))
        for (jid, reason), n in audit_fail.items():
            if reason not in LOGIN_5XX_REASONS:
                v("audit: %d login failures for %s with reason %s" % (
                    n, jid, reason))
        self.check_drift()
        text = self.srv.log_text() + self.k8s.log_text()
        for bad in harness.LOG_FORBIDDEN:
            if bad in text:
                v("a log contains %r" % bad)

    def check_drift(self):
        v = self.stats.violation
        if len(self.rows) < 2:
            return
        ref_i = min(4, len(self.rows) // 4)     # minute 5, or a quarter in
        ref, last = self.rows[ref_i], self.rows[-1]
        drift = (last["rss_kib"] - ref["rss_kib"]) / float(ref["rss_kib"])
        self.drift = (ref["minute"], drift)
        if drift > self.drift_max:
            v("RSS drift %.1f %% between minute %g (%d KiB) and minute %g "
              "(%d KiB), over %.1f %%" % (
                  drift * 100, ref["minute"], ref["rss_kib"],
                  last["minute"], last["rss_kib"], self.drift_max * 100))
        # fds move by a few with the connections open at the instant of
        # the sample: flat = the last samples stay within what the
        # first ones saw (+2).
        ref_fds = max(r["fds"] for r in self.rows[:ref_i + 1])
        end_fds = max(r["fds"] for r in self.rows[-max(1, ref_i):])
        if end_fds > ref_fds + 2:
            v("open fds grew from %d (up to minute %g) to %d" % (
                ref_fds, ref["minute"], end_fds))
        if last["threads"] != ref["threads"]:
            v("threads changed from %d (minute %g) to %d" % (
                ref["threads"], ref["minute"], last["threads"]))

    def table(self):
        out = ["| minute | RSS KiB | fds | threads | db bytes | requests |"
               " p50 ms | p99 ms | non-200 answers |",
               "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in self.rows:
            odd = ", ".join("%s: %d" % kv for kv in r["answers"].items()
                            if " 200" not in kv[0] and " 201" not in kv[0]
                            and " 204" not in kv[0])
            out.append("| %g | %d | %d | %d | %d | %d | %.1f | %.1f | %s |"
                       % (r["minute"], r["rss_kib"], r["fds"], r["threads"],
                          r["db_bytes"], r["requests"], r["p50_ms"],
                          r["p99_ms"], odd or "-"))
        return "\n".join(out)

    def report(self):
        t = self.stats.total
        print("\n" + self.table() + "\n")
        print("soak: totals: " + ", ".join(
            "%s=%d" % kv for kv in sorted(t.items())))
        print("soak: review cache: %s; faults injected: %d errors or "
              "resets, %d latency spikes" % (self.cache_mode,
                                             self.fault_total, self.spikes))
        if hasattr(self, "drift"):
            print("soak: RSS drift from minute %g to the end: %+.2f %%" % (
                self.drift[0], self.drift[1] * 100))
        for msg in self.stats.violations:
            print("soak: VIOLATION: " + msg)
        n = self.stats.total["violations"]
        print("soak: %s (%d violations)" % ("FAIL" if n else "PASS", n))
        return 1 if n else 0

    def teardown(self):
        try:
            self.srv.stop()
        except TestFailure as e:
            self.stats.violation("server stop: %s" % e)
        try:
            self.k8s.stop()
        except TestFailure as e:
            self.stats.violation("fake-k8s stop: %s" % e)


# -- crash safety -------------------------------------------------------------
class CrashRun:
    """Write load with kill -9 of the server; see the module comment."""

    def __init__(self, minutes=None, every=None, threads=None, rate=None):
        self.minutes = minutes or env_num("CRASH_MINUTES", 10.0)
        self.every = every or env_num("CRASH_EVERY", 120.0)
        self.threads = threads or int(env_num("CRASH_THREADS", 6))
        self.rate = rate or env_num("CRASH_RATE", 120.0)
        self.violations = []
        self.lock = threading.Lock()
        self.acked = 0
        self.lost_answers = 0
        self.kills = 0
        self.checked = 0
        self.down = threading.Event()
        self.burst = threading.Event()
        self.stop = threading.Event()

    def violation(self, msg):
        with self.lock:
            self.violations.append(msg)

    def setup(self):
        self.srv = Server(extra={"log": {"level": "info"}}, workers=2,
                          name="crash")
        self.srv.start()
        self.dom = harness.unique("dom")
        # Per thread: id -> ("present", user_id) / ("absent", None), and
        # id -> set of states possible after an unanswered write.
        self.objs = [dict() for _ in range(self.threads)]
        self.maybe = [dict() for _ in range(self.threads)]

    def body(self, user):
        return {"restriction": {"domain_id": self.dom, "user_id": user,
                                "project_id": "p" * 32,
                                "roles": [{"id": "r" * 32}]}}

    def write(self, n, conn, rng):
        """One write of thread n; returns the connection (None: closed)."""
        objs, maybe = self.objs[n], self.maybe[n]
        live = [i for i, s in objs.items() if s[0] == "present"]
        x = rng.random()
        user = os.urandom(16).hex()
        if not live or x < 0.4:
            method, path, body, want = ("POST", "/v4/tokens/restrictions",
                                        self.body(user), 201)
            oid = None
        elif x < 0.8:
            oid = rng.choice(live)
            method, path, body, want = (
                "PATCH", "/v4/tokens/restrictions/" + oid,
                {"restriction": {"user_id": user}}, 200)
        else:
            oid = rng.choice(live)
            method, path, body, want = (
                "DELETE", "/v4/tokens/restrictions/" + oid, None, 204)
        new = ("absent", None) if method == "DELETE" else ("present", user)
        try:
            if conn is None:
                conn = self.srv.connection(True, timeout=10)
            r = self.srv.req(method, path, body, conn=conn)
        except Exception:
            # The answer is lost (a kill): the write may or may not be in.
            if conn is not None:
                conn.close()
            if oid is not None:
                maybe.setdefault(oid, set()).add(new)
            with self.lock:
                self.lost_answers += 1
            return None
        if r.status != want:
            if not self.down.is_set():
                self.violation("%s %s: %d %s" % (method, path, r.status,
                                                 r.raw[:200]))
            return conn
        if method == "POST":
            oid = r.json["restriction"]["id"]
        objs[oid] = new
        maybe.pop(oid, None)
        with self.lock:
            self.acked += 1
        return conn

    def loop(self, n):
        rng = random.Random(n)
        conn = None
        interval = self.threads / self.rate
        while not self.stop.is_set():
            if self.down.is_set():
                if conn is not None:
                    conn.close()
                    conn = None
                time.sleep(0.05)
                continue
            conn = self.write(n, conn, rng)
            if not self.burst.is_set():
                time.sleep(interval)
        if conn is not None:
            conn.close()

    def integrity(self):
        c = sqlite3.connect(self.srv.db, timeout=10)
        try:
            res = c.execute("PRAGMA integrity_check").fetchall()
        finally:
            c.close()
        if res != [("ok",)]:
            self.violation("PRAGMA integrity_check after kill %d: %r" % (
                self.kills, res[:5]))

    def verify(self):
        """Every acknowledged write is visible (threads are paused)."""
        conn = self.srv.connection(True, timeout=30)
        try:
            for n in range(self.threads):
                for oid, state in list(self.objs[n].items()):
                    ok = {state} | self.maybe[n].get(oid, set())
                    r = self.srv.req("GET", "/v4/tokens/restrictions/" + oid,
                                     conn=conn)
                    if r.status == 404:
                        got = ("absent", None)
                    elif r.status == 200:
                        got = ("present", r.json["restriction"]["user_id"])
                    else:
                        self.violation("GET restriction %s: %d" % (
                            oid, r.status))
                        continue
                    self.checked += 1
                    if got not in ok:
                        self.violation(
                            "after kill %d: restriction %s is %r, the last "
                            "acknowledged write made it %r" % (
                                self.kills, oid, got, state))
                    else:
                        self.objs[n][oid] = got
                        self.maybe[n].pop(oid, None)
        finally:
            conn.close()

    def run(self):
        workers = [threading.Thread(target=self.loop, args=(n,), daemon=True)
                   for n in range(self.threads)]
        for w in workers:
            w.start()
        for _ in range(max(1, int(round(self.minutes * 60 / self.every)))):
            # The last second before a kill, writes go back to back, so
            # that some are in flight when it comes.
            time.sleep(max(0.0, self.every - 1.0))
            self.burst.set()
            time.sleep(min(1.0, self.every))
            self.burst.clear()
            self.down.set()
            self.srv.proc.send_signal(signal.SIGKILL)
            self.srv.proc.wait()
            self.srv.proc = None
            self.kills += 1
            time.sleep(0.3)             # let the threads see it
            self.integrity()
            self.srv.start()
            self.verify()
            print("crash: kill %d: %d writes acknowledged so far, %d "
                  "answers lost in kills, %d objects checked, %d "
                  "violations" % (self.kills, self.acked, self.lost_answers,
                                  self.checked, len(self.violations)),
                  flush=True)
            self.down.clear()
        self.stop.set()
        for w in workers:
            w.join(30)

    def lose_one_write(self):
        """Self-check of verify(): with the server down, delete one
        acknowledged restriction straight from the database (a write the
        store lost); verify() must name exactly that one.  Returns its id
        (None when nothing is present)."""
        for n in range(self.threads):
            for oid, state in self.objs[n].items():
                if state[0] == "present" and oid not in self.maybe[n]:
                    break
            else:
                continue
            break
        else:
            return None
        self.srv.kill()
        c = sqlite3.connect(self.srv.db, timeout=10)
        try:
            c.execute("PRAGMA foreign_keys=ON")
            c.execute("DELETE FROM restrictions WHERE id = ?", (oid,))
            c.commit()
        finally:
            c.close()
        self.srv.start()
        return oid

    def report(self):
        for msg in self.violations[:50]:
            print("crash: VIOLATION: " + msg)
        print("crash: %d kills, %d acknowledged writes, %d answers lost in "
              "kills, %d object states checked" % (
                  self.kills, self.acked, self.lost_answers, self.checked))
        print("crash: %s" % ("FAIL" if self.violations or not self.kills
                             else "PASS"))
        return 1 if self.violations or not self.kills else 0

    def teardown(self):
        try:
            self.srv.stop()
        except TestFailure as e:
            self.violation("server stop: %s" % e)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "soak"
    run = {"soak": SoakRun, "crash": CrashRun}.get(mode)
    if run is None:
        print("usage: soak.py soak|crash", file=sys.stderr)
        return 2
    run = run()
    try:
        run.setup()
    except TestFailure as e:
        print("%s: set-up failed: %s" % (mode, e), file=sys.stderr)
        return 2
    try:
        run.run()
        if mode == "soak":
            run.check()
    finally:
        run.teardown()
    return run.report()


if __name__ == "__main__":
    sys.exit(main())
