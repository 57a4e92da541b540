"""Shared fixtures for the black-box integration tests.

A Server is the real ./keystone-k8s-auth binary on loopback: its own
temporary directory under tests/tmp/, a self-signed certificate made with
the openssl CLI, a configuration file, the set-up subcommands
(credential-setup, fernet-setup, bootstrap, db-sync) and then `serve`.
Clients talk to it over HTTPS (trusting only that certificate) or over the
plain http:// listener.

The database engine is the pass's (DB_ENGINE, set by the runner from
K8SAUTH_TEST_DB or --db): "sqlite" gives each server its own SQLite file,
"mysql" a fresh database on one private MariaDB server for the whole run
(tests/db/mariadb.py).  A test that only makes sense on one engine says so
with @sqlite_only("why") (the MySQL pass does not run it).

Python 3 standard library only.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "db"))
BINARY = os.environ.get("K8SAUTH_BIN", os.path.join(ROOT, "keystone-k8s-auth"))
TMP = os.path.join(ROOT, "tests", "tmp")
KEEP_TMP = os.environ.get("K8SAUTH_KEEP_TMP", "") not in ("", "0")

# Marker for "send the bootstrap admin token".
ADMIN = object()

# Every Server ever created in this run, in creation order (the runner
# prints the log tails of the ones a failing test touched).
ALL_SERVERS = []

LOG_FORBIDDEN = ("AddressSanitizer", "runtime error:", "LeakSanitizer")

# The engine of this pass: "sqlite" or "mysql" (the runner sets it).
ENGINES = ("sqlite", "mysql")
DB_ENGINE = os.environ.get("K8SAUTH_TEST_DB", "") or "sqlite"

_scale = None


class TestFailure(AssertionError):
    """A failed expectation; the message is the reason printed by the runner."""


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def eq(got, want, what="value"):
    if got != want:
        raise TestFailure("%s: expected %r, got %r" % (what, want, got))


class Skip(Exception):
    """Raised by a test (or setup_module) that cannot run here: the runner
    prints SKIP and counts it; with K8SAUTH_TEST_NO_SKIP=1 (CI) a skip is a
    failure.  Only for a missing environment (no Keystone installed), never
    for a property of the code under test."""


class Counts:
    """Returned by a test that runs a sub-suite with its own PASS/FAIL
    lines (test_keystone_suite): the runner counts every case of it."""

    def __init__(self, passed, failed, skipped=0):
        self.passed, self.failed, self.skipped = passed, failed, skipped


def no_skip():
    """Is a skip a failure (K8SAUTH_TEST_NO_SKIP set, as CI does)?"""
    return os.environ.get("K8SAUTH_TEST_NO_SKIP", "") not in ("", "0")


def timeout_scale():
    """3x timeouts when the binary was built with sanitizers (slower)."""
    global _scale
    if _scale is None:
        _scale = 1.0
        env = os.environ.get("K8SAUTH_TIMEOUT_SCALE")
        if env:
            _scale = float(env)
        elif os.environ.get("SANITIZERS") == "yes":
            _scale = 3.0
        else:
            try:
                with open(BINARY, "rb") as f:
                    data = f.read()
                if b"__asan_init" in data or b"__ubsan_handle" in data:
                    _scale = 3.0
            except OSError:
                pass
    return _scale


def binary_help():
    """Output of `keystone-k8s-auth --help` (cached)."""
    if not hasattr(binary_help, "text"):
        p = subprocess.run([BINARY, "--help"], capture_output=True,
                           text=True, timeout=30 * timeout_scale())
        binary_help.text = p.stdout + p.stderr
    return binary_help.text


def has_subcommand(name):
    return re.search(r"(^|\s)%s(\s|$)" % re.escape(name),
                     binary_help(), re.M) is not None


def sqlite_only(why):
    """Mark a test that only makes sense on SQLite; why: one line (the
    runner lists it with -v in the MySQL pass, which does not run it)."""
    def mark(fn):
        fn.sqlite_only = why
        return fn
    return mark


def fresh_database(name):
    """(mariadb server, database name, URL) of a new empty database on the
    run's shared MariaDB (started on first use)."""
    import mariadb
    prefix = "it_" + "".join(c if c.isalnum() else "_" for c in name)[:30]
    return mariadb.fresh_database(prefix)


def db_connection(sqlite_path, name="x"):
    """The [database] connection for a configuration a test writes itself:
    sqlite:///sqlite_path, or a fresh MariaDB database in the MySQL pass."""
    if DB_ENGINE == "mysql":
        return fresh_database(name)[2]
    return "sqlite:///" + sqlite_path


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (bind to port 0)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def make_tmpdir(prefix):
    os.makedirs(TMP, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=TMP)


def make_cert(cert, key, cn="127.0.0.1"):
    """Self-signed RSA certificate for 127.0.0.1 (random serial)."""
    p = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-subj", "/CN=%s" % cn, "-addext", "subjectAltName=IP:127.0.0.1",
         "-days", "2", "-keyout", key, "-out", cert],
        capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        fail("openssl req failed: %s" % p.stderr.strip())
    os.chmod(key, 0o600)


def pem_to_der(pem_text):
    return ssl.PEM_cert_to_DER_cert(pem_text)


def write_config(path, sections):
    """Write {section: {option: value}} as INI; None values are left out."""
    lines = []
    for section, opts in sections.items():
        lines.append("[%s]" % section)
        for k, v in opts.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            lines.append("%s = %s" % (k, v))
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def merge_config(base, extra):
    out = {s: dict(o) for s, o in base.items()}
    for s, opts in (extra or {}).items():
        out.setdefault(s, {})
        for k, v in opts.items():
            if v is None:
                out[s].pop(k, None)
            else:
                out[s][k] = v
    return out


def run_cli(args, timeout=None):
    """Run the binary with args; returns CompletedProcess (text)."""
    env = sanitizer_env()
    return subprocess.run([BINARY] + list(args), capture_output=True,
                          text=True, env=env,
                          timeout=timeout or 60 * timeout_scale())


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


class Resp:
    """One HTTP answer.  Unpacks as (status, headers, json, raw)."""

    def __init__(self, status, headers, body_json, raw, header_list=None):
        self.status = status
        self.headers = headers          # lower-case name -> last value
        self.header_list = header_list or []
        self.json = body_json
        self.raw = raw

    def __iter__(self):
        return iter((self.status, self.headers, self.json, self.raw))

    def __repr__(self):
        body = self.raw[:300]
        return "<HTTP %s %r>" % (self.status, body)


def _parse_response(r):
    raw = r.read()
    hl = r.getheaders()
    headers = {k.lower(): v for k, v in hl}
    body = None
    if raw:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            body = None
    return Resp(r.status, headers, body, raw, hl)


class Server:
    """The real binary on loopback, with its own files.

    extra: {section: {option: value}} merged over the defaults (None
    removes an option).  Use as a context manager for a per-test server:
    a clean exit stops it with SIGTERM and checks exit code and log; an
    exception kills it and keeps the files for inspection.
    """

    def __init__(self, extra=None, workers=2, name="srv", env=None):
        self.dir = make_tmpdir("it-%s-" % name)
        self.env = dict(env or {})      # extra environment of `serve`
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.conf = os.path.join(self.dir, "k8sauth.conf")
        self.log = os.path.join(self.dir, "server.log")
        self.db = os.path.join(self.dir, "db", "k8sauth.db")
        self.token_file = os.path.join(self.dir, "admin-token")
        self.mysql = self.db_name = self.db_url = None
        if DB_ENGINE == "mysql":
            self.mysql, self.db_name, self.db_url = fresh_database(name)
        self.extra = extra or {}
        self.workers = workers
        self.proc = None
        self.admin_token = None
        self.secrets = set()            # strings that must never be logged
        if self.mysql is not None:
            # The database password must never reach a log line either.
            self.secrets.add(self.mysql.password)
        self.trusted = []               # PEMs of every cert we served
        self.logs = []                  # log files of earlier runs
        self.failed = False
        self.https_port, self.http_port = free_ports(2)
        os.makedirs(os.path.dirname(self.db), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "policy"), exist_ok=True)
        make_cert(self.cert, self.key)
        self._trust_current_cert()
        self._write_config()
        ALL_SERVERS.append(self)

    # -- files ------------------------------------------------------------
    def config_sections(self):
        base = {
            "server": {
                "listen": "https://127.0.0.1:%d,http://127.0.0.1:%d" % (
                    self.https_port, self.http_port),
                "tls_cert": self.cert,
                "tls_key": self.key,
                "workers": self.workers,
            },
            "database": {"connection": self.db_url or "sqlite:///" + self.db},
            "credential": {"key_repository":
                           os.path.join(self.dir, "credential-keys")},
            "fernet_tokens": {"key_repository":
                              os.path.join(self.dir, "fernet-keys")},
            "bootstrap": {"admin_token_file": self.token_file},
            "policy": {"dir": os.path.join(self.dir, "policy")},
            "k8s_auth": {"local_sa_dir": os.path.join(self.dir, "no-sa")},
            "log": {"level": "debug"},
        }
        return merge_config(base, self.extra)

    def _write_config(self):
        write_config(self.conf, self.config_sections())

    def _trust_current_cert(self):
        with open(self.cert) as f:
            pem = f.read()
        if pem not in self.trusted:
            self.trusted.append(pem)

    def cert_der(self):
        with open(self.cert) as f:
            return pem_to_der(f.read())

    # -- process ----------------------------------------------------------
    def setup(self):
        """credential-setup, fernet-setup (when present), bootstrap, db-sync."""
        steps = [["credential-setup"]]
        if has_subcommand("fernet-setup"):
            steps.append(["fernet-setup"])
        steps += [["bootstrap"], ["db-sync"]]
        for step in steps:
            p = run_cli(step + ["--config", self.conf])
            if p.returncode != 0:
                fail("%s exited %d: %s" % (step[0], p.returncode,
                                           (p.stdout + p.stderr).strip()))
        with open(self.token_file) as f:
            self.admin_token = f.read().strip()
        check(self.admin_token, "bootstrap wrote an empty token file")
        self.secrets.add(self.admin_token)
        return self

    def start(self):
        """Start `serve` and wait for GET /healthz (10 s, more under ASan)."""
        if self.admin_token is None:
            self.setup()
        for attempt in range(3):
            if self._spawn():
                return self
            text = self.log_text()
            if "in use" not in text or attempt == 2 or self.logs:
                fail("server did not become healthy; log tail:\n" +
                     self.log_tail())
            # Port collision on first start: pick new ports and retry.
            self.https_port, self.http_port = free_ports(2)
            self._write_config()
        return self

    def _spawn(self):
        if os.path.exists(self.log):
            self.logs.append(open(self.log, errors="replace").read())
        logf = open(self.log, "wb")
        env = sanitizer_env()
        env.update(self.env)
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--config", self.conf], stdin=subprocess.DEVNULL,
            stdout=logf, stderr=logf, env=env)
        logf.close()
        deadline = time.monotonic() + 10 * timeout_scale()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = self.req("GET", "/healthz", token=None, https=False,
                             timeout=2)
                if r.status == 200:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        self.kill()
        return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        check(self.running(), "server is not running")
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout=timeout * timeout_scale())
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("server did not exit within %ds" % timeout)

    def stop(self):
        """SIGTERM; exit code 0 within 10 s; log free of errors/secrets."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(10)
        self.proc = None
        if rc != 0:
            self.failed = True
            fail("server exited with %d after SIGTERM" % rc)
        self.check_log()

    def kill(self):
        """SIGKILL, no checks."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def all_logs(self):
        return "".join(self.logs) + self.log_text()

    def log_tail(self, n=30):
        lines = self.log_text().splitlines()
        return "\n".join("    | " + l for l in lines[-n:])

    def check_log(self):
        text = self.all_logs()
        for bad in LOG_FORBIDDEN:
            if bad in text:
                self.failed = True
                fail("server log contains %r" % bad)
        for s in self.secrets:
            if s and s in text:
                self.failed = True
                fail("server log contains a secret (%s...)" % s[:6])

    def cleanup(self):
        self.kill()
        if not KEEP_TMP and not self.failed:
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.mysql is not None and self.mysql.running():
                self.mysql.drop_database(self.db_name)

    # -- the stored data, behind the server's back -------------------------
    def uses_mysql(self):
        """Does this server's configuration point at the MariaDB database?"""
        conn = self.config_sections()["database"]["connection"]
        return self.db_url is not None and conn == self.db_url

    def db_execute(self, statement, *args):
        """Run one SQL statement with ? placeholders (strings or ints) on
        the server's database, whichever the engine; returns the rows."""
        if self.uses_mysql():
            parts = statement.split("?")
            check(len(parts) == len(args) + 1, "placeholders vs arguments")
            text = parts[0]
            for a, rest in zip(args, parts[1:]):
                text += _sql_literal(a) + rest
            return self.mysql.sql(text, self.db_name)
        import sqlite3
        db = sqlite3.connect(self.db, timeout=10)
        try:
            with db:
                return [list(r) for r in db.execute(statement, args)]
        finally:
            db.close()

    def db_dump(self):
        """Everything stored, as bytes (to look for a plaintext secret): the
        SQLite file, or every row of every table of the MariaDB database."""
        if self.uses_mysql():
            out = []
            for (table,) in self.mysql.sql("SHOW TABLES", self.db_name):
                rows = self.mysql.sql("SELECT * FROM `%s`" % table,
                                      self.db_name)
                out += ["\t".join(r) for r in rows]
            return "\n".join(out).encode()
        with open(self.db, "rb") as f:
            return f.read()

    def __enter__(self):
        return self.start()

    def __exit__(self, etype, e, tb):
        if etype is not None:
            self.failed = True
            self.kill()
            return False
        self.stop()
        self.cleanup()
        return False

    # -- clients ----------------------------------------------------------
    def ssl_context(self, **kw):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata="".join(self.trusted))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            for k, v in kw.items():
                setattr(ctx, k, v)
        return ctx

    def connection(self, https=True, timeout=30, context=None):
        if https:
            return http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, timeout=timeout * timeout_scale(),
                context=context or self.ssl_context())
        return http.client.HTTPConnection("127.0.0.1", self.http_port,
                                          timeout=timeout * timeout_scale())

    def url(self, https=True):
        if https:
            return "https://127.0.0.1:%d" % self.https_port
        return "http://127.0.0.1:%d" % self.http_port

    def req(self, method, path, body=None, token=ADMIN, headers=None,
            raw=None, https=True, conn=None, content_type="application/json",
            timeout=30):
        """One request; returns Resp (status, headers, json, raw)."""
        h = {}
        if token is ADMIN:
            h["X-Auth-Token"] = self.admin_token
        elif token is not None:
            h["X-Auth-Token"] = token
        data = raw
        if data is None and body is not None:
            data = json.dumps(body).encode()
        if data is not None and content_type:
            h["Content-Type"] = content_type
        h.update(headers or {})
        c = conn or self.connection(https, timeout=timeout)
        try:
            c.request(method, path, body=data, headers=h)
            return _parse_response(c.getresponse())
        finally:
            if conn is None:
                c.close()

    # Convenience wrappers: fail unless the status is the expected one.
    def ok(self, method, path, body=None, status=200, **kw):
        r = self.req(method, path, body, **kw)
        if r.status != status:
            fail("%s %s: expected %d, got %d %s" % (
                method, path, status, r.status, r.raw[:400]))
        return r

    def create(self, kind, obj, path=None, **kw):
        """POST a wrapped object, expect 201, return the stored object."""
        path = path or COLLECTIONS[kind]
        r = self.ok("POST", path, {kind: obj}, status=201, **kw)
        check(isinstance(r.json, dict) and kind in r.json,
              "create %s: body has no %r: %r" % (kind, kind, r.raw[:300]))
        return r.json[kind]


def _sql_literal(v):
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "''") + "'"


COLLECTIONS = {
    "instance": "/v4/k8s_auth/instances",
    "restriction": "/v4/tokens/restrictions",
}

# -- response checks ---------------------------------------------------------
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
          404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
          415: "Unsupported Media Type"}
ID_RE = re.compile(r"^[0-9a-f]{32}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
REASON_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def assert_error(resp, status, reason=None, names=None):
    """The body is exactly {"error": {code, title, message, reason}}.

    status: expected HTTP status (also error.code); reason: exact reason
    when given; names: a string the message must mention (a field name).
    Returns the error object.
    """
    if resp.status != status:
        fail("expected %d, got %d %r" % (status, resp.status, resp.raw[:400]))
    b = resp.json
    if not isinstance(b, dict) or set(b) != {"error"}:
        fail("error body is not {\"error\": ...}: %r" % resp.raw[:400])
    e = b["error"]
    if not isinstance(e, dict) or set(e) != {"code", "title", "message",
                                             "reason"}:
        fail("error object keys are not code/title/message/reason: %r" % (e,))
    eq(e["code"], status, "error.code")
    check(isinstance(e["title"], str) and e["title"],
          "error.title empty: %r" % (e,))
    if status in TITLES:
        eq(e["title"], TITLES[status], "error.title")
    check(isinstance(e["message"], str) and e["message"],
          "error.message empty: %r" % (e,))
    check(isinstance(e["reason"], str) and REASON_RE.match(e["reason"]),
          "error.reason not snake_case: %r" % (e,))
    if reason is not None:
        eq(e["reason"], reason, "error.reason")
    if names is not None and names not in e["message"]:
        fail("error message does not name %r: %r" % (names, e["message"]))
    ct = resp.headers.get("content-type", "")
    check(ct.startswith("application/json"),
          "error Content-Type is %r, not application/json" % ct)
    return e


def assert_id(v, what="id"):
    check(isinstance(v, str) and ID_RE.match(v),
          "%s is not 32 lowercase hex: %r" % (what, v))


def assert_timestamp(v, what="timestamp"):
    check(isinstance(v, str) and TS_RE.match(v),
          "%s is not YYYY-MM-DDTHH:MM:SS.ffffffZ: %r" % (what, v))


def unique(prefix="x"):
    """A short unique string (for domain ids and names)."""
    return "%s-%s" % (prefix, os.urandom(5).hex())


def fake_jwt(tag="reviewer"):
    """A JWT-looking secret string that must never show up in a log."""
    import base64
    b = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(
        b"=").decode()
    return "%s.%s.%s" % (b({"alg": "RS256", "kid": "k"}),
                         b({"sub": "system:serviceaccount:kube-system:%s" % tag,
                            "nonce": os.urandom(8).hex()}),
                         os.urandom(32).hex())


def list_all(srv, path, plural, limit=None, **kw):
    """Follow links.next from path; returns (items, pages)."""
    from urllib.parse import urlsplit
    items, pages = [], 0
    url = path
    if limit is not None:
        url += ("&" if "?" in url else "?") + "limit=%d" % limit
    seen_urls = set()
    while url:
        check(url not in seen_urls, "pagination loops back to %s" % url)
        seen_urls.add(url)
        r = srv.ok("GET", url, **kw)
        b = r.json
        check(isinstance(b, dict) and isinstance(b.get(plural), list),
              "list body has no %r list: %r" % (plural, r.raw[:300]))
        links = b.get("links")
        check(isinstance(links, dict) and "next" in links and "self" in links,
              "list body has no links.self/next: %r" % (links,))
        if limit is not None:
            check(len(b[plural]) <= limit, "page longer than limit")
        items.extend(b[plural])
        pages += 1
        check(pages < 1000, "too many pages")
        nxt = links["next"]
        if nxt is None:
            break
        check(isinstance(nxt, str), "links.next is not a string: %r" % (nxt,))
        sp = urlsplit(nxt)
        url = sp.path + ("?" + sp.query if sp.query else "")
    return items, pages


def openssl_pem_cert(cn="k8s-ca"):
    """A fresh self-signed PEM certificate (text) for ca_cert fields."""
    d = tempfile.mkdtemp(prefix="pem-", dir=TMP)
    try:
        make_cert(os.path.join(d, "c.pem"), os.path.join(d, "k.pem"), cn=cn)
        with open(os.path.join(d, "c.pem")) as f:
            return f.read()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def wait_for(pred, timeout=10, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout * timeout_scale()
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    fail("timed out waiting for %s (last: %r)" % (what, last))
