"""`keystone-k8s-auth agent` (API.md §9): the pod side of the exchange.

The real agent binary against the real server and the test Kubernetes API
server (fake-k8s), with the JWT in a kubelet-style projected directory
(k8s_fixture.LocalSA: a timestamped directory, a `..data` symlink swapped
by rename, `token` -> `..data/token`).  Checks: the token file (mode 0600,
valid on the server's validation route), the health file, refresh before
expiry, a new exchange on rotation, back-off while the server is down and
recovery, exit 2 on a refusal, --once, SIGTERM (also mid-request and
mid-back-off), the options and environment, and the clouds.yaml loaded by
python3-openstackclient.  The JWT and the token never reach the agent's
stderr.  (The clouds.yaml against a real Keystone: test_keystone.py.)
"""
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time

from harness import (BINARY, ROOT, Server, check, eq, fail, free_ports,
                     make_tmpdir, timeout_scale, wait_for)
from k8s_fixture import FakeK8s, LocalSA, Login, validate

K8S = None
SRV = None
AGENTS = []


def setup_module():
    global K8S, SRV
    K8S = FakeK8s("agent").start()
    SRV = Server(name="agent").start()


def teardown_module():
    for a in AGENTS:
        a.kill()
    try:
        SRV.stop()
    finally:
        K8S.stop()


# -- helpers -----------------------------------------------------------------
class Agent:
    """One `keystone-k8s-auth agent` process with its own directory: the
    projected JWT directory (sa/), the output directory (out/) and its
    stderr (agent.log).  secrets: strings that must never be logged."""

    def __init__(self, login, srv=None, jwt=None, name="agent"):
        self.login = login
        self.srv = srv or login.srv
        self.dir = make_tmpdir("agent-%s-" % name)
        self.sa = LocalSA(os.path.join(self.dir, "sa"))
        self.out = os.path.join(self.dir, "out")
        os.mkdir(self.out, 0o700)
        self.token_file = os.path.join(self.out, "token")
        self.health = os.path.join(self.dir, "health")
        self.log = os.path.join(self.dir, "agent.log")
        self.proc = None
        self.secrets = set()
        self.rotate(jwt)

    @property
    def jwt_file(self):
        return os.path.join(self.sa.path, "token")

    def rotate(self, jwt=None, **kw):
        """Project a new JWT the way the kubelet does (..data swap)."""
        jwt = jwt or self.login.jwt(**kw)
        self.secrets.add(jwt)
        self.sa.write(token=jwt)
        return jwt

    def args(self, *extra):
        return [BINARY, "agent", "--url", self.srv.url(),
                "--instance", self.login.iid,
                "--role", self.login.role_name,
                "--jwt-file", self.jwt_file, "--ca-file", self.srv.cert,
                "--token-file", self.token_file,
                "--health-file", self.health] + list(extra)

    def start(self, *extra, args=None, env=None):
        e = dict(os.environ)
        e.update(env or {})
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(args or self.args(*extra),
                                         stdout=f, stderr=f, env=e)
        AGENTS.append(self)
        return self

    def run(self, *extra, args=None, env=None, timeout=30):
        """Run to completion (--once, or an exit); (status, log text)."""
        self.start(*extra, args=args, env=env)
        try:
            rc = self.proc.wait(timeout * timeout_scale())
        except subprocess.TimeoutExpired:
            self.kill()
            fail("agent did not exit within %d s:\n%s" % (timeout,
                                                          self.text()))
        return rc, self.text()

    def text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def token(self):
        try:
            with open(self.token_file) as f:
                t = f.read()
        except FileNotFoundError:
            return None
        self.secrets.add(t)
        return t

    def wait_token(self, other_than=None, timeout=15, what="a token"):
        return wait_for(lambda: (lambda t: t if t and t != other_than
                                 else None)(self.token()),
                        timeout=timeout, interval=0.05, what=what)

    def stop(self, sig=signal.SIGTERM, within=2.0):
        """Signal; require exit 0 within `within` seconds; check the log."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(max(within * timeout_scale(), 5))
        except subprocess.TimeoutExpired:
            self.kill()
            fail("agent ignored %s:\n%s" % (sig.name, self.text()))
        took = time.monotonic() - t0
        eq(rc, 0, "agent exit status after %s" % sig.name)
        check(took < within * timeout_scale(),
              "agent took %.2f s to exit on %s" % (took, sig.name))
        self.check_log()
        return took

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def check_log(self):
        text = self.text()
        self.token()
        for s in self.secrets | self.srv.secrets:
            if s and s in text:
                fail("a secret (%s...) is in the agent's stderr" % s[:8])
        for line in text.splitlines():
            check("\n" not in line and len(line) < 1000,
                  "odd log line %r" % line[:100])

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def logins(srv):
    """Successful logins so far (/metrics)."""
    r = srv.req("GET", "/metrics", token=None)
    eq(r.status, 200, "/metrics")
    m = re.search(r'^k8sauth_logins_total\{result="success"[^}]*\} (\d+)',
                  r.raw.decode(), re.M)
    check(m, "no success sample in /metrics")
    return int(m.group(1))


def assert_valid(srv, tok):
    r = validate(srv, tok)
    eq(r.status, 200, "validation of the agent's token")
    return r.json["token"]


def osc_python():
    """The Python of the `openstack` CLI (python3-openstackclient): the
    python3 first in PATH may be another one, without openstacksdk."""
    path = shutil.which("openstack")
    check(path, "no openstack CLI (./configure --install-deps installs "
          "python3-openstackclient)")
    with open(path) as f:
        line = f.readline()
    check(line.startswith("#!"), "%s has no #! line" % path)
    return line[2:].strip().split()[0]


def failures(text):
    """Monotonic-ish times (seconds, from the log timestamps) of the
    agent's failed attempts."""
    out = []
    for line in text.splitlines():
        if "agent: login failed" not in line:
            continue
        ts = line.split(" ", 1)[0]
        t = time.strptime(ts.split(".")[0], "%Y-%m-%dT%H:%M:%S")
        frac = float("0." + ts.split(".")[1].rstrip("Z"))
        out.append(time.mktime(t) + frac)
    return out


# -- tests -------------------------------------------------------------------
def test_first_token_0600_valid_health_and_sigterm():
    L = Login(SRV, K8S)
    a = Agent(L, name="first")
    before = logins(SRV)
    a.start()
    tok = a.wait_token()
    st = os.lstat(a.token_file)
    check(stat.S_ISREG(st.st_mode), "the token file is not a regular file")
    eq(stat.S_IMODE(st.st_mode), 0o600, "token file mode")
    eq(st.st_uid, os.getuid(), "token file owner")
    body = assert_valid(SRV, tok)
    eq(body["project"]["id"], L.project_id, "the token's project")
    check("\n" not in tok, "the token file holds a newline")
    wait_for(lambda: os.path.exists(a.health), what="the health file")
    check(time.time() - os.stat(a.health).st_mtime < 30,
          "the health file is stale")
    eq(logins(SRV) - before, 1, "logins for one token")
    # No temporary file is left beside the token.
    eq(sorted(os.listdir(a.out)), ["token"], "files in the output dir")
    text = a.text()
    check("agent: token written to" in text, "no success line:\n" + text)
    a.stop()
    a.cleanup()


def test_refresh_at_two_thirds_of_the_lifetime():
    """A 9 s JWT caps the token at 9 s ([token] cap_to_jwt_expiry): the
    agent comes back at ~6 s with the same JWT, before the token expires."""
    L = Login(SRV, K8S)
    a = Agent(L, jwt=L.jwt(expires_in=9), name="refresh")
    a.start()
    first = a.wait_token()
    t0 = time.monotonic()
    exp = assert_valid(SRV, first)["expires_at"]
    h0 = os.stat(a.health).st_mtime
    second = a.wait_token(other_than=first, timeout=12,
                          what="a refreshed token")
    took = time.monotonic() - t0
    check(3.0 <= took <= 8.5 * timeout_scale(),
          "refresh after %.1f s, expected ~6 s (2/3 of 9 s)" % took)
    nxt = assert_valid(SRV, second)
    check(nxt["expires_at"] >= exp, "the new token expires earlier")
    check(os.stat(a.health).st_mtime > h0, "health file not touched again")
    a.stop()
    a.cleanup()


def test_rotation_of_the_jwt_triggers_an_exchange():
    L = Login(SRV, K8S)
    a = Agent(L, name="rotate")
    a.start()
    first = a.wait_token()
    n = logins(SRV)
    time.sleep(0.3)
    eq(logins(SRV), n, "logins with nothing rotated")
    a.rotate()
    t0 = time.monotonic()
    second = a.wait_token(other_than=first, timeout=10,
                          what="a token after the rotation")
    check(time.monotonic() - t0 < 3 * timeout_scale(),
          "the rotation took %.1f s to notice" % (time.monotonic() - t0))
    assert_valid(SRV, second)
    eq(logins(SRV), n + 1, "logins after one rotation")
    check("the JWT file changed" in a.text(), "no rotation line")
    # Readers never see a missing, empty or partial file across renewals.
    seen, stop = [], []

    def reader():
        while not stop:
            try:
                with open(a.token_file) as f:
                    seen.append(f.read())
            except FileNotFoundError:
                seen.append("(missing)")
    th = threading.Thread(target=reader)
    th.start()
    tokens, cur = {second}, second
    try:
        for _ in range(3):
            a.rotate()
            cur = a.wait_token(other_than=cur, what="a token after rotation")
            tokens.add(cur)
    finally:
        stop.append(1)
        th.join()
    check(len(seen) > 100, "the reader read %d times" % len(seen))
    bad = [x for x in seen if x not in tokens]
    check(not bad, "a reader saw %d reads that are not a whole token "
          "(e.g. %d bytes)" % (len(bad), len(bad[0]) if bad else 0))
    n += 3
    # The same JWT projected again (a new ..data, same content): nothing.
    with open(a.jwt_file) as f:
        a.sa.write(token=f.read())
    time.sleep(1.0)
    eq(logins(SRV), n + 1, "logins after re-projecting the same JWT")
    a.stop()
    a.cleanup()


def test_server_down_backoff_then_recovery():
    with Server(name="agent-down") as srv:
        L = Login(srv, K8S)
        a = Agent(L, name="down")
        a.start()
        first = a.wait_token()
        srv.stop()
        a.rotate()      # ask for a new exchange while the server is down
        wait_for(lambda: len(failures(a.text())) >= 4, timeout=20,
                 what="four failed attempts")
        times = failures(a.text())
        gaps = [b - x for x, b in zip(times, times[1:])]
        check(gaps[0] < 1.5 * timeout_scale(),
              "first retry after %.2f s" % gaps[0])
        check(gaps[2] > gaps[0] and gaps[2] >= 1.0,
              "no back-off: gaps %r" % gaps)
        check(re.search(r"retry in \d+\.\d s", a.text()),
              "no retry delay in the log")
        check(a.proc.poll() is None, "agent exited while the server was down")
        srv.start()
        second = a.wait_token(other_than=first, timeout=20,
                              what="a token after the server came back")
        assert_valid(srv, second)
        a.stop()
        a.cleanup()


def test_retry_after_is_honoured():
    """The cluster answers 503 with Retry-After: the server answers 503
    cluster_unavailable; the agent waits at least the server's
    Retry-After before the next attempt."""
    L = Login(SRV, K8S)
    a = Agent(L, name="retry-after")
    K8S.fault("status", status=503, retry_after=3, count=1)
    try:
        a.start()
        tok = a.wait_token(timeout=20)
    finally:
        K8S.clear_faults()
    text = a.text()
    m = re.search(r"login failed: HTTP 503 cluster_unavailable; retry in "
                  r"(\d+\.\d) s", text)
    check(m, "no 503 retry line:\n" + text)
    check(float(m.group(1)) >= 3.0, "retry in %s s, Retry-After was 3 s"
          % m.group(1))
    t = failures(text)[0]
    ok = [ln for ln in text.splitlines() if "token written" in ln][0]
    check(failures(ok.replace("token written", "login failed"))[0] - t
          >= 2.9, "the retry came before Retry-After")
    assert_valid(SRV, tok)
    a.stop()
    a.cleanup()


def test_role_deleted_exits_2_with_the_reason():
    L = Login(SRV, K8S)
    a = Agent(L, name="refused")
    a.start()
    a.wait_token()
    SRV.ok("DELETE", L.role_path, status=204)
    a.proc.send_signal(signal.SIGHUP)       # refresh now
    try:
        rc = a.proc.wait(10 * timeout_scale())
    except subprocess.TimeoutExpired:
        fail("agent still running after its role was deleted:\n" + a.text())
    eq(rc, 2, "exit status on a refusal")
    check("HTTP 404 role_not_found" in a.text(),
          "no reason in stderr:\n" + a.text())
    a.check_log()
    # At start too: exit 2, nothing written.
    b = Agent(L, name="refused2")
    rc, text = b.run()
    eq(rc, 2, "exit status on a refusal at start")
    check("role_not_found" in text, text)
    check(not os.path.exists(b.token_file), "a token file after a refusal")
    b.check_log()
    a.cleanup()
    b.cleanup()


def test_once_with_options_from_the_environment():
    L = Login(SRV, K8S)
    a = Agent(L, name="once")
    env = {"K8S_AUTH_URL": SRV.url(), "K8S_AUTH_INSTANCE": L.iid,
           "K8S_AUTH_ROLE": "no-such-role", "K8S_AUTH_JWT_FILE": a.jwt_file,
           "K8S_AUTH_CA_FILE": SRV.cert, "K8S_AUTH_TOKEN_FILE": a.token_file,
           "K8S_AUTH_ONCE": "true"}
    # The flag wins over K8S_AUTH_ROLE.
    t0 = time.monotonic()
    rc, text = a.run(args=[BINARY, "agent", "--role", L.role_name], env=env)
    eq(rc, 0, "--once exit status:\n" + text)
    check(time.monotonic() - t0 < 10 * timeout_scale(), "--once was slow")
    assert_valid(SRV, a.token())
    eq(stat.S_IMODE(os.stat(a.token_file).st_mode), 0o600, "mode")
    a.check_log()
    # The environment alone: K8S_AUTH_ROLE now counts (and is refused).
    rc, text = a.run(args=[BINARY, "agent"], env=env)
    eq(rc, 2, "exit status with the environment's role")
    check("role_not_found" in text, text)
    a.cleanup()


def test_sigterm_during_backoff_and_during_a_request():
    L = Login(SRV, K8S)
    a = Agent(L, name="term")
    # Back-off: nothing listens on this port.
    closed = "https://127.0.0.1:%d" % free_ports(1)[0]
    a.start(args=a.args()[:2] + ["--url", closed] + a.args()[4:])
    wait_for(lambda: len(failures(a.text())) >= 2, timeout=10,
             what="two failed attempts")
    a.stop(within=1.0)
    # A request the cluster holds (the server waits for the review).
    b = Agent(L, name="term2")
    K8S.fault("hang")
    try:
        b.start()
        K8S.wait_parked(1)
        time.sleep(0.2)
        b.stop(within=1.5)
        check(b.token() is None, "a token file after SIGTERM mid-request")
    finally:
        K8S.clear_faults()
    c = Agent(L, name="int")
    c.start()
    c.wait_token()
    c.stop(sig=signal.SIGINT)
    for x in (a, b, c):
        x.cleanup()


def test_bad_options_exit_1():
    L = Login(SRV, K8S)
    a = Agent(L, name="opts")
    base = a.args()
    cases = [
        (["--url", "http://192.0.2.1:5050"], "loopback"),
        (["--url", "ftp://127.0.0.1/"], "https://"),
        (["--url", "https://user:pw@127.0.0.1/"], "user info"),
        (["--instance", "../x"], "--instance"),
        (["--clouds-yaml", os.path.join(a.out, "c.yaml")], "--auth-url"),
        (["--cloud-name", "a b", "--clouds-yaml", "/tmp/x",
          "--auth-url", "https://k.example/v3"], "--cloud-name"),
        (["--jwt-file", os.path.join(a.dir, "missing")], "missing"),
        (["--ca-file", os.path.join(a.dir, "missing-ca")], "missing-ca"),
    ]
    for extra, want in cases:
        rc, text = a.run(args=base + extra)
        eq(rc, 1, "exit status for %r" % extra)
        check(want in text, "%r: %r not in %r" % (extra, want, text))
        open(a.log, "w").close()
    rc, text = a.run(args=[BINARY, "agent", "--once"], env={})
    eq(rc, 1, "no options")
    check("--token-file are required" in text, text)
    # An output directory that does not exist: exit 1, no retry loop.
    rc, text = a.run(args=base + ["--once", "--token-file",
                                  os.path.join(a.dir, "no-dir", "token")])
    eq(rc, 1, "exit status with an unwritable token file")
    check("cannot write the token" in text, text)
    # http:// to loopback is allowed (the JWT stays on the host).
    rc, text = a.run(args=base[:2] + ["--url", SRV.url(https=False)]
                     + base[4:] + ["--once"])
    eq(rc, 0, "http:// to loopback: " + text)
    # The wrong CA: TLS is verified, never switched off (a retry, not a
    # token).
    other = os.path.join(a.dir, "other.pem")
    with open(other, "w") as f:
        f.write(K8S.ca_pem)
    os.unlink(a.token_file)
    a.start(args=base + ["--ca-file", other])
    wait_for(lambda: failures(a.text()), timeout=10, what="a TLS failure")
    check(a.token() is None, "a token over an unverified connection")
    check("SSL" in a.text() or "certificate" in a.text(), a.text())
    a.stop()
    a.cleanup()


def test_clouds_yaml_loads_with_openstackclient():
    L = Login(SRV, K8S)
    a = Agent(L, name="clouds")
    cy = os.path.join(a.out, "clouds.yaml")
    rc, text = a.run("--once", "--clouds-yaml", cy, "--cloud-name",
                     "k8s-test", "--auth-url", "http://127.0.0.1:1/v3")
    eq(rc, 0, "--once with --clouds-yaml: " + text)
    eq(stat.S_IMODE(os.stat(cy).st_mode), 0o600, "clouds.yaml mode")
    tok = a.token()
    code = ("import json, openstack.config\n"
            "c = openstack.config.OpenStackConfig(config_files=[%r])"
            ".get_one(cloud='k8s-test')\n"
            "print(json.dumps({'auth_type': c.config['auth_type'],"
            " 'auth': c.config['auth']}))\n" % cy)
    p = subprocess.run([osc_python(), "-c", code], capture_output=True,
                       text=True, timeout=120)
    eq(p.returncode, 0, "openstacksdk loads clouds.yaml: " + p.stderr)
    import json
    got = json.loads(p.stdout)
    eq(got["auth_type"], "v3token", "auth_type")
    eq(got["auth"]["token"], tok, "token in clouds.yaml")
    eq(got["auth"]["project_id"], L.project_id, "project_id")
    eq(got["auth"]["auth_url"], "http://127.0.0.1:1/v3", "auth_url")
    # And the CLI reads it (no request: configuration show).
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=cy)
    p = subprocess.run(["openstack", "--os-cloud", "k8s-test",
                        "configuration", "show", "-f", "json"],
                       capture_output=True, text=True, timeout=120, env=env)
    eq(p.returncode, 0, "openstack configuration show: " + p.stderr)
    check(tok not in p.stdout, "openstack printed the token")
    a.cleanup()


def test_man_page_renders():
    page = os.path.join(ROOT, "docs", "man", "keystone-k8s-auth-agent.8")
    p = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", page],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, LC_ALL="C.UTF-8"))
    eq(p.returncode, 0, "groff: " + p.stderr)
    eq(p.stderr, "", "groff warnings")
    with open(page) as f:
        text = f.read()
    for opt in ("url", "instance", "role", "jwt-file", "ca-file",
                "token-file", "clouds-yaml", "cloud-name", "auth-url",
                "once", "health-file"):
        check("\\-\\-" + opt.replace("-", "\\-") in text,
              "--%s is not in the man page" % opt)


def _doc_blocks(lang):
    with open(os.path.join(ROOT, "docs", "pods.md")) as f:
        text = f.read()
    return re.findall(r"^```%s\n(.*?)^```$" % lang, text, re.M | re.S)


def test_pods_md_manifests_and_unit_parse():
    """docs/pods.md: every YAML block parses (PyYAML, as openstacksdk has
    it), every agent container's args and environment are accepted by the
    agent's option parser (run with a non-loopback http:// URL added last,
    so it stops right after parsing with the loopback error), and the
    systemd unit's environment file names only K8S_AUTH_* variables the
    man page documents."""
    blocks = _doc_blocks("yaml")
    check(len(blocks) >= 3, "YAML blocks in docs/pods.md: %d" % len(blocks))
    code = ("import json, sys, yaml\n"
            "print(json.dumps([d for b in json.load(sys.stdin)"
            " for d in yaml.safe_load_all(b)]))\n")
    import json
    p = subprocess.run([osc_python(), "-c", code], input=json.dumps(blocks),
                       capture_output=True, text=True, timeout=60)
    eq(p.returncode, 0, "YAML of docs/pods.md: " + p.stderr)
    agents = 0
    for doc in json.loads(p.stdout):
        spec = (doc.get("spec") or {})
        spec = (spec.get("template") or {}).get("spec", spec)
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            if (c.get("args") or [""])[0] != "agent":
                continue
            agents += 1
            env = {e["name"]: e["value"] for e in c.get("env", [])}
            args = [a.replace("$(K8S_AUTH_INSTANCE)",
                              env.get("K8S_AUTH_INSTANCE", ""))
                    for a in c["args"]]
            env["K8S_AUTH_INSTANCE"] = "a" * 32
            args = [a if not a.startswith("--instance=") else
                    "--instance=" + "a" * 32 for a in args]
            pr = subprocess.run([BINARY] + args + ["--url",
                                                   "http://192.0.2.1"],
                                capture_output=True, text=True, timeout=30,
                                env=dict(os.environ, **env))
            eq(pr.returncode, 1, "agent of %s" % c["name"])
            check("only to a loopback" in pr.stderr,
                  "the manifest's agent options do not parse: " + pr.stderr)
    check(agents >= 2, "agent containers in docs/pods.md: %d" % agents)
    page = os.path.join(ROOT, "docs", "man", "keystone-k8s-auth-agent.8")
    with open(page) as f:
        man = f.read()
    envs = [b for b in _doc_blocks("sh") if "K8S_AUTH_URL=" in b]
    eq(len(envs), 1, "environment file blocks")
    for line in envs[0].splitlines():
        name = line.split("=", 1)[0]
        check(name.startswith("K8S_AUTH_") and name in man,
              "%s is not an agent variable of the man page" % name)
    units = _doc_blocks("ini")
    eq(len(units), 1, "unit blocks")
    check("ExecStart=/usr/bin/keystone-k8s-auth agent" in units[0],
          "the unit does not run the agent")


def test_health_file_symlink_is_not_followed():
    # Whoever can write the health file's directory (a volume shared with
    # another container) plants a symbolic link there: the agent must not
    # create or touch the file it points to.
    L = Login(SRV, K8S)
    a = Agent(L, name="healthlink")
    victim = os.path.join(a.dir, "victim")
    os.symlink(victim, a.health)
    rc, text = a.run("--once")
    check(not os.path.exists(victim),
          "the agent created the health file's symlink target")
    check(rc != 0, "the agent exited 0 with its health file a symlink")
    check(a.health in text, "the error names the health file:\n" + text)
    a.cleanup()
