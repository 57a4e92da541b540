"""The project's test Kubernetes API server (tests/k8s/fake-k8s) as a fixture.

FakeK8s starts the real fake-k8s binary on a loopback port with a CA and a
CA-signed server certificate (SAN IP:127.0.0.1) made with the openssl CLI,
and drives its /_test/ control API over HTTPS: service accounts, pods,
reviewers, tokens, faults and stats (tests/k8s/README.md).

Also here: LocalSA, a kubelet-style projected service-account directory
(`..data` symlink swapped atomically) for `[k8s_auth] local_sa_dir`, and
Login, an instance + restriction + role on a keystone-k8s-auth Server with
a `login()` helper.

Python 3 standard library only.
"""
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import time

from harness import (ROOT, check, eq, fail, make_tmpdir, timeout_scale,
                     unique, wait_for, KEEP_TMP)

FAKE_BIN = os.environ.get("FAKE_K8S_BIN",
                          os.path.join(ROOT, "tests", "k8s", "fake-k8s"))
LOGIN_FMT = "/v4/k8s_auth/instances/%s/auth"


def _openssl(args, cwd):
    p = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True,
                       text=True, timeout=60)
    if p.returncode != 0:
        fail("openssl %s failed: %s" % (args[0], p.stderr.strip()))


def make_ca_and_cert(d, cn="fake-k8s-ca"):
    """ca.pem/ca.key and srv.pem/srv.key (signed by the CA) in d."""
    _openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
              "-subj", "/CN=%s" % cn, "-keyout", "ca.key", "-out", "ca.pem"],
             d)
    _openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj",
              "/CN=127.0.0.1", "-keyout", "srv.key", "-out", "srv.csr"], d)
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    _openssl(["x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey",
              "ca.key", "-CAcreateserial", "-days", "2", "-extfile",
              "srv.ext", "-out", "srv.pem"], d)
    for k in ("ca.key", "srv.key"):
        os.chmod(os.path.join(d, k), 0o600)


class FakeK8s:
    """fake-k8s on 127.0.0.1 with its own CA; stop() with SIGTERM."""

    def __init__(self, name="k8s", leeway=None):
        self.dir = make_tmpdir("fk-%s-" % name)
        self.failed = False
        make_ca_and_cert(self.dir)
        with open(os.path.join(self.dir, "ca.pem")) as f:
            self.ca_pem = f.read()
        self.log = os.path.join(self.dir, "fake-k8s.log")
        self.port_file = os.path.join(self.dir, "port")
        self.leeway = leeway
        self.proc = None
        self.port = None

    @property
    def host(self):
        return "https://127.0.0.1:%d" % self.port

    def start(self):
        args = [FAKE_BIN, "--listen", "127.0.0.1:0",
                "--cert", os.path.join(self.dir, "srv.pem"),
                "--key", os.path.join(self.dir, "srv.key"),
                "--port-file", self.port_file]
        if self.leeway is not None:
            args += ["--leeway", str(self.leeway)]
        logf = open(self.log, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=logf)
        logf.close()
        deadline = time.monotonic() + 10 * timeout_scale()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail("fake-k8s exited %d: %s" % (self.proc.returncode,
                                                 self.log_text()[-500:]))
            try:
                with open(self.port_file) as f:
                    txt = f.read().strip()
                if txt:
                    self.port = int(txt)
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        check(self.port, "fake-k8s wrote no port file")
        return self

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """SIGTERM; exit 0 and no sanitizer report."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10 * timeout_scale())
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.failed = True
            fail("fake-k8s did not exit on SIGTERM")
        self.proc = None
        text = self.log_text()
        for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            if bad in text:
                self.failed = True
                fail("fake-k8s log contains %r" % bad)
        if rc != 0:
            self.failed = True
            fail("fake-k8s exited %d after SIGTERM" % rc)
        if not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, etype, e, tb):
        if etype is not None:
            self.kill()
            return False
        self.stop()
        return False

    # -- control API ------------------------------------------------------
    def ssl_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=self.ca_pem)
        return ctx

    def api(self, method, path, body=None, expect=None):
        """One control request; returns (status, json)."""
        c = http.client.HTTPSConnection("127.0.0.1", self.port,
                                        timeout=10 * timeout_scale(),
                                        context=self.ssl_context())
        try:
            h = {}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                h["Content-Type"] = "application/json"
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            status = r.status
        finally:
            c.close()
        try:
            doc = json.loads(raw.decode()) if raw else None
        except ValueError:
            doc = None
        if expect is not None and status != expect:
            fail("fake-k8s %s %s: expected %d, got %d %r" % (
                method, path, expect, status, raw[:300]))
        return status, doc

    def sa(self, namespace, name):
        """Create a service account; returns its uid."""
        return self.api("POST", "/_test/serviceaccounts",
                        {"namespace": namespace, "name": name},
                        expect=201)[1]["uid"]

    def delete_sa(self, namespace, name):
        self.api("DELETE", "/_test/serviceaccounts/%s/%s" % (namespace, name),
                 expect=200)

    def pod(self, namespace, name, service_account, node="node-1"):
        return self.api("POST", "/_test/pods",
                        {"namespace": namespace, "name": name,
                         "service_account": service_account, "node": node},
                        expect=201)[1]

    def delete_pod(self, namespace, name):
        self.api("DELETE", "/_test/pods/%s/%s" % (namespace, name),
                 expect=200)

    def grant_reviewer(self, namespace, name):
        self.api("POST", "/_test/reviewers",
                 {"namespace": namespace, "name": name}, expect=200)

    def revoke_reviewer(self, namespace, name):
        self.api("DELETE", "/_test/reviewers/%s/%s" % (namespace, name),
                 expect=200)

    def token(self, namespace, service_account, **kw):
        """Mint a token (pod, audiences, expires_in, not_before_offset,
        legacy, bad_signature, issuer)."""
        body = {"namespace": namespace, "service_account": service_account}
        body.update(kw)
        return self.api("POST", "/_test/tokens", body, expect=201)[1]["token"]

    def fault(self, mode, **kw):
        body = {"mode": mode}
        body.update(kw)
        return self.api("POST", "/_test/faults", body, expect=200)[1]

    def faults(self):
        return self.api("GET", "/_test/faults", expect=200)[1]

    def clear_faults(self):
        self.api("DELETE", "/_test/faults", expect=200)

    def release(self):
        """Answer every delayed (latency) review now; how many."""
        return self.api("POST", "/_test/faults/release", {},
                        expect=200)[1]["released"]

    def wait_parked(self, n, what="reviews held by the fake"):
        """Wait until exactly n reviews are delayed or hung at the fake."""
        wait_for(lambda: self.faults()["parked"] == n,
                 what="%d %s" % (n, what))

    def stats(self):
        return self.api("GET", "/_test/stats", expect=200)[1]

    def reset_stats(self):
        self.api("POST", "/_test/stats/reset", expect=200)

    def reviews(self):
        """The number of TokenReview requests received so far."""
        return self.stats()["tokenreviews"]

    def reviewer_token(self, namespace="kube-system", name=None):
        """A new SA granted as reviewer; returns its token (1 day)."""
        name = name or unique("reviewer")
        self.sa(namespace, name)
        self.grant_reviewer(namespace, name)
        return self.token(namespace, name, expires_in=86400)


class LocalSA:
    """A kubelet-style projected SA directory for [k8s_auth] local_sa_dir.

    dir/..2026_xxx/{token,ca.crt,namespace}, dir/..data -> ..2026_xxx,
    dir/token -> ..data/token: write() swaps the ..data symlink atomically
    (rename of a new symlink over it), as the kubelet does on rotation.
    """

    def __init__(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.gen = 0

    def write(self, token=None, ca=None, namespace="kube-system"):
        self.gen += 1
        ts = "..%s_%d" % (time.strftime("%Y_%m_%d_%H_%M_%S"), self.gen)
        tsdir = os.path.join(self.path, ts)
        os.mkdir(tsdir)
        files = {"namespace": namespace}
        if token is not None:
            files["token"] = token
        if ca is not None:
            files["ca.crt"] = ca
        for name, text in files.items():
            with open(os.path.join(tsdir, name), "w") as f:
                f.write(text)
        data = os.path.join(self.path, "..data")
        old = os.path.realpath(data) if os.path.islink(data) else None
        tmp = os.path.join(self.path, "..data_tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(ts, tmp)
        os.rename(tmp, data)
        for name in ("token", "ca.crt", "namespace"):
            link = os.path.join(self.path, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join("..data", name), link)
        if old and os.path.isdir(old) and old != os.path.realpath(tsdir):
            shutil.rmtree(old, ignore_errors=True)


class Login:
    """A restriction, an instance pointing at a FakeK8s and a role.

    inst: overrides for the instance body (None values dropped);
    role: overrides for the role body.
    """

    def __init__(self, srv, k8s, inst=None, role=None, restriction=None,
                 reviewer=True):
        self.srv = srv
        self.k8s = k8s
        self.dom = unique("dom")
        self.user_id = os.urandom(16).hex()
        self.project_id = os.urandom(16).hex()
        self.role_ids = [os.urandom(16).hex(), os.urandom(16).hex()]
        rbody = {"domain_id": self.dom, "user_id": self.user_id,
                 "project_id": self.project_id,
                 "roles": [{"id": self.role_ids[0], "name": "member"},
                           {"id": self.role_ids[1], "name": "reader"}]}
        rbody.update(restriction or {})
        self.rst = srv.create("restriction", rbody)
        ibody = {"domain_id": self.dom, "name": unique("cluster"),
                 "host": k8s.host, "ca_cert": k8s.ca_pem}
        if reviewer is True:
            self.reviewer_jwt = k8s.reviewer_token()
            ibody["token_reviewer_jwt"] = self.reviewer_jwt
            srv.secrets.add(self.reviewer_jwt)
        elif isinstance(reviewer, str):
            self.reviewer_jwt = reviewer
            ibody["token_reviewer_jwt"] = reviewer
            srv.secrets.add(reviewer)
        else:
            self.reviewer_jwt = None
        for k, v in (inst or {}).items():
            if v is None:
                ibody.pop(k, None)
            else:
                ibody[k] = v
        self.inst = srv.create("instance", ibody)
        self.iid = self.inst["id"]
        self.ns = unique("ns")
        self.sa_name = "web"
        self.sa_uid = k8s.sa(self.ns, self.sa_name)
        self.role_name = unique("role")
        body = {"name": self.role_name,
                "bound_service_account_names": [self.sa_name],
                "bound_service_account_namespaces": [self.ns],
                "token_restriction_id": self.rst["id"]}
        body.update(role or {})
        self.role = srv.create("role", body, path="%s/%s/roles" % (
            "/v4/k8s_auth/instances", self.iid))

    @property
    def path(self):
        return LOGIN_FMT % self.iid

    @property
    def role_path(self):
        return "/v4/k8s_auth/instances/%s/roles/%s" % (self.iid,
                                                        self.role["id"])

    def jwt(self, sa=None, ns=None, **kw):
        """A token of this login's SA (kw as FakeK8s.token); a secret."""
        t = self.k8s.token(ns or self.ns, sa or self.sa_name, **kw)
        self.srv.secrets.add(t)
        return t

    def login(self, jwt, role=None, conn=None, timeout=30, **body):
        b = {"k8s_role": role or self.role_name, "jwt": jwt}
        b.update(body)
        return self.srv.req("POST", self.path, b, token=None, conn=conn,
                            timeout=timeout)

    def ok(self, jwt, **kw):
        r = self.login(jwt, **kw)
        if r.status != 200:
            fail("login: expected 200, got %d %r" % (r.status, r.raw[:400]))
        check(r.headers.get("x-subject-token"),
              "login 200 without X-Subject-Token")
        return r

    def patch_instance(self, **fields):
        return self.srv.ok("PATCH", "/v4/k8s_auth/instances/%s" % self.iid,
                           {"instance": fields})

    def patch_role(self, **fields):
        return self.srv.ok("PATCH", self.role_path, {"role": fields})


def validate(srv, subject, token=None, method="GET"):
    """GET/HEAD /v3/auth/tokens (admin token by default)."""
    from harness import ADMIN
    return srv.req(method, "/v3/auth/tokens", token=token or ADMIN,
                   headers={"X-Subject-Token": subject})


def assert_no_review(k8s, fn, what):
    """Run fn(); fail if the fake received a TokenReview meanwhile."""
    before = k8s.reviews()
    out = fn()
    after = k8s.reviews()
    eq(after - before, 0, "TokenReviews sent for %s" % what)
    return out


def tcp_states(port):
    """States of the TCP sockets whose local port is port (no listeners),
    from /proc/net/tcp{,6}: e.g. ["ESTABLISHED", "CLOSE_WAIT"]."""
    names = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV",
             "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
             "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK",
             "0A": "LISTEN", "0B": "CLOSING"}
    out = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            st = names.get(fields[3], fields[3])
            if st != "LISTEN":
                out.append(st)
    return out


def lasting_close_waits(port, gap=0.3):
    """How many of the fake's sockets stay in CLOSE_WAIT (peer closed, the
    fake still holding it) over gap seconds: a parked request whose client
    went away.  Control-API connections pass through CLOSE_WAIT for
    microseconds only, hence two samples."""
    first = tcp_states(port).count("CLOSE_WAIT")
    time.sleep(gap)
    return min(first, tcp_states(port).count("CLOSE_WAIT"))
