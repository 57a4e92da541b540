#!/usr/bin/env python3
"""A private MariaDB server for the tests, like fake-k8s for the cluster.

The suite never touches the system's MariaDB service: MariaDB starts its
own `mariadbd --no-defaults` on a data directory under tests/tmp/, a unix
socket in that directory and a free loopback TCP port, with small buffers
(32 MB buffer pool, 4 MB redo log, no binary log unless Galera asks for
one) so that it is ready in about a second.  The data directory is copied
from a template initialised once per machine by mariadb-install-db
(tests/tmp/mariadb-template-VERSION/), which saves the ~5 s of
mariadb-install-db on every start.

    db = MariaDB("replicas")      # tests/tmp/mdb-replicas-XXXX/
    db.start()                    # waits until it accepts connections
    url = db.create_database("t1")    # mysql+pymysql://k8sauth:PW@127.0.0.1:P/t1
    db.stop()                     # SIGTERM, waits; start() again on the same port
    db.kill()                     # SIGKILL (crash)
    db.sql("SELECT COUNT(*) FROM role", "t1")   # rows as lists of strings

`shared()` is one server for the whole process (the integration runner's
MySQL pass: every test server gets a fresh database on it), stopped at
exit.  Every server started by this process is killed at exit; its
directory is removed unless K8SAUTH_KEEP_TMP is set or it failed.

The application user (USER, a random password) gets exactly GRANTS on each
database create_database() makes: the grants docs/operations.md tells an
operator to give, so the suite proves they are enough.  Root has no
password and is reachable only through the private socket.

A missing mariadbd or mariadb-install-db is an error naming the packages
(`./configure --install-deps` installs them), never a silent skip.

CLI (for a shell, a benchmark or a quick look):

    python3 tests/db/mariadb.py start DIR [DB]   # prints the URL of DB (k8sauth)
    python3 tests/db/mariadb.py url DIR [DB] [--socket]
    python3 tests/db/mariadb.py sql DIR [DB] "STATEMENT"
    python3 tests/db/mariadb.py stop DIR

Python 3 standard library only (the SQL goes through the `mariadb` client).
"""
import atexit
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TMP = os.path.join(ROOT, "tests", "tmp")
KEEP_TMP = os.environ.get("K8SAUTH_KEEP_TMP", "") not in ("", "0")

USER = "k8sauth"
# What the server needs on its own database, and nothing more: the schema
# (CREATE/ALTER/INDEX/DROP for db-sync's migrations) and the rows.  No LOCK
# TABLES (Galera), no global privilege (the named lock of db-sync,
# GET_LOCK, needs none).
GRANTS = ("SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, "
          "REFERENCES")
PACKAGES = ("mariadb-server and mariadb-client (Debian and Fedora); "
            "./configure --install-deps installs them")

# Small and quick: the suite runs many servers on a 2-core machine.  The
# same InnoDB sizes for mariadb-install-db and mariadbd (the template).
INNODB_ARGS = [
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=4M",
    "--innodb-log-buffer-size=1M",
    "--innodb-data-file-path=ibdata1:4M:autoextend",
]
SERVER_ARGS = INNODB_ARGS + [
    "--skip-name-resolve",
    "--performance-schema=off",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
    "--max-connections=500",
    "--innodb-flush-log-at-trx-commit=1",
    "--innodb-fast-shutdown=1",
    "--skip-innodb-buffer-pool-dump-at-shutdown",
    "--skip-innodb-buffer-pool-load-at-startup",
]

_started = []           # every MariaDB this process started (atexit)
_shared = None


class MariaDBError(AssertionError):
    """The private server could not be set up or did not answer; the
    integration runner prints the message as the failure's reason."""


def _scale():
    try:
        return float(os.environ.get("K8SAUTH_TIMEOUT_SCALE", "1"))
    except ValueError:
        return 1.0


def find_program(name):
    """name in PATH or in the sbin/libexec directories distributions use
    (Debian /usr/sbin/mariadbd, Fedora /usr/libexec/mariadbd)."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    for d in path + ["/usr/sbin", "/usr/libexec", "/usr/local/sbin",
                     "/usr/local/bin", "/usr/bin"]:
        p = os.path.join(d, name)
        if d and os.access(p, os.X_OK):
            return p
    return None


def programs():
    """{"mariadbd", "install", "client"} paths, or MariaDBError."""
    found = {
        "mariadbd": find_program("mariadbd") or find_program("mysqld"),
        "install": (find_program("mariadb-install-db") or
                    find_program("mysql_install_db")),
        "client": find_program("mariadb") or find_program("mysql"),
    }
    missing = [k for k, v in found.items() if v is None]
    if missing:
        names = {"mariadbd": "mariadbd", "install": "mariadb-install-db",
                 "client": "mariadb (client)"}
        raise MariaDBError("MariaDB test server: %s not found: install %s" % (
            ", ".join(names[k] for k in missing), PACKAGES))
    return found


def server_version(mariadbd):
    p = subprocess.run([mariadbd, "--version"], capture_output=True,
                       text=True, timeout=30)
    words = p.stdout.split()
    for i, w in enumerate(words):
        if w == "Ver" and i + 1 < len(words):
            return words[i + 1].split("-")[0]
    return "unknown"


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def root_args(run_as=None):
    """mariadbd refuses to run as root unless told to; run_as: a system
    user to run as instead (when we are root)."""
    if os.geteuid() != 0:
        return []
    return ["--user=" + (run_as or "root")]


def chown_tree(path, user):
    """Give path (recursively) to user, and let user traverse to it."""
    import pwd
    pw = pwd.getpwnam(user)
    for d, dirs, files in os.walk(path):
        os.chown(d, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.lchown(os.path.join(d, f), pw.pw_uid, pw.pw_gid)
    p = os.path.dirname(path)
    while p and p != "/":
        st = os.stat(p)
        if st.st_mode & 0o001 == 0:
            os.chmod(p, st.st_mode | 0o001)
        p = os.path.dirname(p)


def _install_db(progs, datadir, log):
    """mariadb-install-db into datadir; MariaDBError with the log tail."""
    tmpdir = os.path.join(os.path.dirname(datadir), "tmp")
    os.makedirs(tmpdir, exist_ok=True)
    # A private tmpdir: install-db's temporary tables in a shared /tmp
    # were seen to vanish under a busy machine ("Could not remove
    # temporary table", error 2).
    args = [progs["install"], "--no-defaults", "--datadir=" + datadir,
            "--tmpdir=" + tmpdir,
            "--auth-root-authentication-method=normal", "--skip-test-db",
            "--skip-name-resolve"] + root_args() + INNODB_ARGS
    for attempt in (1, 2):
        shutil.rmtree(datadir, ignore_errors=True)
        with open(log, "wb") as f:
            p = subprocess.run(args, stdout=f, stderr=f,
                               stdin=subprocess.DEVNULL,
                               timeout=300 * _scale())
        if p.returncode == 0:
            return
    if p.returncode != 0:
        with open(log, errors="replace") as f:
            tail = f.read()[-2000:]
        raise MariaDBError("mariadb-install-db exited %d:\n%s"
                           % (p.returncode, tail))


def template(progs):
    """The initialised data directory to copy (made once, under a lock)."""
    os.makedirs(TMP, exist_ok=True)
    tdir = os.path.join(TMP, "mariadb-template-%s" %
                        server_version(progs["mariadbd"]))
    ready = os.path.join(tdir, ".ready")
    with open(os.path.join(TMP, ".mariadb-template.lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if not os.path.exists(ready):
            shutil.rmtree(tdir, ignore_errors=True)
            os.makedirs(tdir)
            _install_db(progs, os.path.join(tdir, "data"),
                        os.path.join(tdir, "install.log"))
            open(ready, "w").close()
    return os.path.join(tdir, "data")


def _socket_path(directory):
    """directory/mysql.sock, or a short path under /tmp when that is
    longer than a unix socket path may be (108 bytes)."""
    p = os.path.join(directory, "mysql.sock")
    if len(p.encode()) < 100:
        return p
    d = tempfile.mkdtemp(prefix="mdb-")
    return os.path.join(d, "mysql.sock")


class MariaDB:
    """One private mariadbd.  directory: where it lives (default a new
    tests/tmp/mdb-NAME-XXXX/); extra_args: more mariadbd options (Galera's
    wsrep_*); init: False when the data directory must stay empty (a
    Galera joiner receives it by SST)."""

    def __init__(self, name="mdb", directory=None, extra_args=None,
                 init=True, port=None, run_as=None):
        self.progs = programs()
        if directory is None:
            os.makedirs(TMP, exist_ok=True)
            directory = tempfile.mkdtemp(prefix="mdb-%s-" % name, dir=TMP)
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.datadir = os.path.join(self.dir, "data")
        self.tmpdir = os.path.join(self.dir, "tmp")
        os.makedirs(self.tmpdir, exist_ok=True)
        self.log = os.path.join(self.dir, "mariadbd.err")
        self.pid_file = os.path.join(self.dir, "mariadbd.pid")
        self.state_file = os.path.join(self.dir, "state.json")
        self.extra_args = list(extra_args or [])
        self.init = init
        # A system user to run as when we are root (Galera: rsync's SST
        # daemon started as root drops to nobody and cannot write).
        self.run_as = run_as if os.geteuid() == 0 else None
        self.proc = None
        self.failed = False
        self.detach = False     # the CLI's servers outlive it
        self.user_ready = False
        state = self._load_state()
        self.port = port or state.get("port") or free_port()
        self.socket = state.get("socket") or _socket_path(self.dir)
        self.password = state.get("password") or os.urandom(12).hex()
        self.user_ready = bool(state.get("user_ready"))

    # -- state (so that the CLI's stop/url find a server started earlier) --
    def _load_state(self):
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _save_state(self):
        with open(self.state_file, "w") as f:
            json.dump({"port": self.port, "socket": self.socket,
                       "password": self.password, "user": USER,
                       "user_ready": self.user_ready}, f)
        os.chmod(self.state_file, 0o600)

    # -- process ----------------------------------------------------------
    def command(self):
        return [self.progs["mariadbd"], "--no-defaults",
                "--datadir=" + self.datadir, "--socket=" + self.socket,
                "--tmpdir=" + self.tmpdir,
                "--port=%d" % self.port, "--bind-address=127.0.0.1",
                "--pid-file=" + self.pid_file, "--log-error=" + self.log,
                ] + root_args(self.run_as) + SERVER_ARGS + (
                    [] if any(a.startswith("--log-bin") for a in
                              self.extra_args) else ["--skip-log-bin"]
                ) + self.extra_args

    def _prepare_datadir(self):
        if os.path.isdir(self.datadir):
            return
        if not self.init:
            os.makedirs(self.datadir)
            return
        shutil.copytree(template(self.progs), self.datadir, symlinks=True)

    def start(self, timeout=30, detach=None):
        """Start mariadbd and wait until root can run a query on the socket
        and TCP accepts; on the first start create USER.  detach: a server
        that outlives this process (the CLI)."""
        if detach is None:
            detach = self.detach
        if self.running():
            return self
        self._prepare_datadir()
        self._save_state()
        if self.run_as:
            chown_tree(self.dir, self.run_as)
        logf = open(os.path.join(self.dir, "mariadbd.out"), "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf,
                                     start_new_session=detach)
        logf.close()
        if self not in _started and not detach:
            _started.append(self)
        self.wait_ready(timeout)
        if not self.user_ready:
            self._create_user()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout * _scale()
        err = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self.failed = True
                raise MariaDBError("mariadbd exited with %d; %s:\n%s" % (
                    self.proc.returncode, self.log, self.log_tail()))
            p = self._client(["-e", "SELECT 1"], check=False, timeout=10)
            if p.returncode == 0 and self._tcp_open():
                return
            err = p.stderr.strip()
            time.sleep(0.1)
        self.failed = True
        raise MariaDBError("mariadbd not ready within %ds (%s); %s:\n%s" % (
            timeout, err, self.log, self.log_tail()))

    def _tcp_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), 2):
                return True
        except OSError:
            return False

    def _create_user(self):
        # Anonymous users would shadow USER on the socket (''@localhost);
        # root keeps the private socket only, no password-less TCP login.
        self.sql("DELETE FROM mysql.global_priv WHERE User = '' OR "
                 "(User = 'root' AND Host <> 'localhost'); "
                 "DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost'; "
                 "FLUSH PRIVILEGES; "
                 "CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s'; "
                 "CREATE USER IF NOT EXISTS '%s'@'localhost' "
                 "IDENTIFIED BY '%s'" % (USER, self.password, USER,
                                         self.password))
        self.user_ready = True
        self._save_state()

    def running(self):
        if self.proc is not None:
            return self.proc.poll() is None
        pid = self.pid()
        return pid is not None and _alive(pid)

    def pid(self):
        if self.proc is not None:
            return self.proc.pid
        try:
            with open(self.pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout=60):
        """SIGTERM (a clean shutdown) and wait for the exit."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL: the database crashes (InnoDB recovers on start())."""
        self._signal_and_wait(signal.SIGKILL, 30)

    def _signal_and_wait(self, sig, timeout):
        pid = self.pid()
        if pid is None or not self.running():
            self.proc = None
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout * _scale()
        while time.monotonic() < deadline:
            if self.proc is not None:
                if self.proc.poll() is not None:
                    break
            elif not _alive(pid):
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            if self.proc is not None:
                self.proc.wait()
            self.failed = True
            raise MariaDBError("mariadbd did not exit within %ds of signal %d"
                               % (timeout, sig))
        self.proc = None

    def cleanup(self):
        try:
            self.kill()
        except MariaDBError:
            pass
        if not KEEP_TMP and not self.failed:
            shutil.rmtree(self.dir, ignore_errors=True)
            sdir = os.path.dirname(self.socket)
            if not sdir.startswith(self.dir):
                shutil.rmtree(sdir, ignore_errors=True)

    def log_tail(self, n=20):
        try:
            with open(self.log, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return "    | (no log)"
        return "\n".join("    | " + l for l in lines[-n:])

    # -- SQL --------------------------------------------------------------
    def _client(self, args, check=True, timeout=60, db=None):
        cmd = [self.progs["client"], "--no-defaults", "-S", self.socket,
               "-uroot", "--batch", "--skip-column-names"]
        if db:
            cmd.append("--database=" + db)
        p = subprocess.run(cmd + args, capture_output=True, text=True,
                           timeout=timeout * _scale(),
                           stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise MariaDBError("mariadb client: %s" % p.stderr.strip())
        return p

    def sql(self, statements, db=None):
        """Run statements as root; returns the rows (lists of strings, the
        last result set) of the output."""
        p = self._client(["-e", statements], db=db)
        return [line.split("\t") for line in p.stdout.splitlines()]

    def scalar(self, query, db=None):
        rows = self.sql(query, db)
        return rows[0][0] if rows else None

    def create_database(self, name, socket_url=False):
        """A fresh, empty database (dropped first if it exists) with GRANTS
        for USER; returns its URL."""
        check_name(name)
        self.sql("DROP DATABASE IF EXISTS `%s`; "
                 "CREATE DATABASE `%s` CHARACTER SET utf8mb4 "
                 "COLLATE utf8mb4_general_ci; "
                 "GRANT %s ON `%s`.* TO '%s'@'%%'; "
                 "GRANT %s ON `%s`.* TO '%s'@'localhost'"
                 % (name, name, GRANTS, name, USER, GRANTS, name, USER))
        return self.url(name, socket_url=socket_url)

    def drop_database(self, name):
        check_name(name)
        self.sql("DROP DATABASE IF EXISTS `%s`" % name)

    def url(self, db, socket_url=False, scheme="mysql+pymysql"):
        """keystone.conf's spelling: SCHEME://USER:PASS@127.0.0.1:PORT/DB,
        or over the unix socket: SCHEME://USER:PASS@localhost/DB?unix_socket=."""
        if socket_url:
            return "%s://%s:%s@localhost/%s?unix_socket=%s" % (
                scheme, USER, self.password, db, self.socket)
        return "%s://%s:%s@127.0.0.1:%d/%s" % (scheme, USER, self.password,
                                                self.port, db)


def check_name(name):
    ok = name and len(name) <= 64 and all(
        c.isalnum() or c == "_" for c in name)
    if not ok:
        raise MariaDBError("database name %r: letters, digits and _ only"
                           % (name,))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie child of ours counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def shared():
    """One server for the whole process (started on first use)."""
    global _shared
    if _shared is None or not _shared.running():
        if _shared is None:
            _shared = MariaDB("shared")
        _shared.start()
    return _shared


_db_counter = [0]


def fresh_database(prefix="t"):
    """A new database on the shared server; returns (server, name, url)."""
    _db_counter[0] += 1
    name = "%s_%d_%s" % (prefix, _db_counter[0], os.urandom(3).hex())
    srv = shared()
    return srv, name, srv.create_database(name)


@atexit.register
def _cleanup_all():
    for m in list(_started):
        m.cleanup()


def main(argv):
    usage = ("usage: mariadb.py start DIR [DB] | url DIR [DB] [--socket] | "
             "sql DIR [DB] STATEMENT | stop DIR | kill DIR")
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    cmd, directory, rest = argv[0], argv[1], argv[2:]
    try:
        m = MariaDB(directory=directory)
        if cmd == "start":
            m.start(detach=True)
            db = rest[0] if rest else "keystone_k8s_auth"
            print(m.create_database(db))
        elif cmd == "url":
            sock = "--socket" in rest
            rest = [r for r in rest if r != "--socket"]
            print(m.url(rest[0] if rest else "keystone_k8s_auth",
                        socket_url=sock))
        elif cmd == "sql":
            if not rest:
                print(usage, file=sys.stderr)
                return 2
            db = rest[0] if len(rest) > 1 else None
            for row in m.sql(rest[-1], db):
                print("\t".join(row))
        elif cmd == "stop":
            m.stop()
        elif cmd == "kill":
            m.kill()
        else:
            print(usage, file=sys.stderr)
            return 2
    except MariaDBError as e:
        print("mariadb.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
