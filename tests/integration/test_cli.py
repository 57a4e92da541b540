"""Subcommands of the binary: config-check, version, bootstrap, db-sync."""
import os
import re
import shutil
import stat
import sys
import time

import harness
from harness import (Server, check, db_connection, eq, fail, make_tmpdir,
                     merge_config, run_cli, write_config)

DIR = None
GOOD = None


def setup_module():
    global DIR, GOOD
    # A Server object only for its files (certificate, paths); not started.
    DIR = Server(name="cli")
    GOOD = DIR.conf


def teardown_module():
    DIR.cleanup()


def conf_with(name, extra):
    path = os.path.join(DIR.dir, name)
    write_config(path, merge_config(DIR.config_sections(), extra))
    return path


def out(p):
    return p.stdout + p.stderr


def test_config_check_good_file_exit_0():
    p = run_cli(["config-check", "--config", GOOD])
    eq(p.returncode, 0, "exit code (output %r)" % out(p))


def config_error(name, extra, *names):
    path = conf_with(name, extra)
    p = run_cli(["config-check", "--config", path])
    eq(p.returncode, 1, "config-check %s exit code (output %r)" % (
        name, out(p)))
    for n in names:
        alts = n if isinstance(n, tuple) else (n,)
        check(any(a in out(p) for a in alts),
              "output does not name %s: %r" % (" or ".join(alts), out(p)))
    return out(p)


def test_config_check_bad_int():
    config_error("bad-int.conf", {"server": {"workers": "lots"}},
                 "[server] workers")
    config_error("int-range.conf", {"server": {"max_body_size": "10"}},
                 "[server] max_body_size")


def test_config_check_unknown_option():
    config_error("unknown.conf", {"server": {"colour": "blue"}},
                 "[server] colour")
    config_error("unknown-section.conf", {"nosuch": {"opt": "1"}},
                 "[nosuch] opt")


def test_config_check_bad_bool():
    config_error("bad-bool.conf", {"metrics": {"enabled": "maybe"}},
                 "[metrics] enabled")


def test_config_check_https_without_cert():
    config_error("no-cert.conf", {"server": {"tls_cert": None,
                                             "tls_key": None}},
                 ("[server] tls_cert", "[server] listen"))


def test_config_check_reports_every_error():
    text = config_error("many.conf", {
        "server": {"workers": "x", "colour": "blue", "tls_cert": None},
        "metrics": {"enabled": "maybe"},
        "token": {"expiration": "-5"}},
        "[server] workers", "[server] colour", "[metrics] enabled",
        "[token] expiration", ("[server] tls_cert", "[server] listen"))
    check(len(text.strip().splitlines()) >= 5, "fewer than 5 lines: %r" % text)


def test_config_check_missing_file_exit_1():
    p = run_cli(["config-check", "--config", os.path.join(DIR.dir, "nope")])
    eq(p.returncode, 1, "exit code (output %r)" % out(p))


def test_serve_refuses_bad_config():
    path = conf_with("serve-bad.conf", {"server": {"workers": "x"}})
    p = run_cli(["serve", "--config", path], timeout=30)
    check(p.returncode != 0, "serve started with a bad config")
    check("[server] workers" in out(p), "serve output %r" % out(p))


def test_version_prints_version():
    for args in (["version"], ["--version"]):
        p = run_cli(args)
        eq(p.returncode, 0, "%s exit code" % args)
        check(re.search(r"\d+\.\d+\.\d+", p.stdout),
              "%s printed no version: %r" % (args, out(p)))


def test_unknown_subcommand_fails():
    p = run_cli(["frobnicate"])
    check(p.returncode != 0, "unknown subcommand exited 0")


def test_bootstrap_mode_0600_no_overwrite_without_force():
    d = make_tmpdir("cli-boot-")
    try:
        tok = os.path.join(d, "admin-token")
        path = conf_with("boot.conf", {"bootstrap": {"admin_token_file": tok}})
        p = run_cli(["bootstrap", "--config", path])
        eq(p.returncode, 0, "bootstrap exit code (%r)" % out(p))
        st = os.stat(tok)
        eq(stat.S_IMODE(st.st_mode), 0o600, "token file mode")
        first = open(tok).read().strip()
        check(len(first) >= 32, "admin token too short: %d chars" % len(first))
        check(first not in out(p), "bootstrap printed the token")
        p = run_cli(["bootstrap", "--config", path])
        eq(open(tok).read().strip(), first,
           "bootstrap without --force overwrote the token (exit %d)" %
           p.returncode)
        p = run_cli(["bootstrap", "--config", path, "--force"])
        eq(p.returncode, 0, "bootstrap --force exit code (%r)" % out(p))
        second = open(tok).read().strip()
        check(second != first, "--force did not write a new token")
        eq(stat.S_IMODE(os.stat(tok).st_mode), 0o600, "mode after --force")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_db_sync_twice_ok():
    d = make_tmpdir("cli-db-")
    try:
        db = os.path.join(d, "k.db")
        path = conf_with("db.conf", {"database": {
            "connection": db_connection(db, "dbsync_twice")}})
        for i in (1, 2):
            p = run_cli(["db-sync", "--config", path])
            eq(p.returncode, 0, "db-sync run %d (%r)" % (i, out(p)))
        if harness.DB_ENGINE == "sqlite":
            check(os.path.exists(db), "no database file")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_db_sync_then_serve_same_database():
    with Server(name="dbsync") as srv:
        rid = srv.create("restriction", {"domain_id": "d"})["id"]
        srv.stop()
        p = run_cli(["db-sync", "--config", srv.conf])
        eq(p.returncode, 0, "db-sync on a used database (%r)" % out(p))
        srv.start()
        eq(srv.req("GET", "/v4/tokens/restrictions/" + rid).status, 200,
           "data after db-sync")


def test_sample_config_is_a_valid_file():
    """config-check --sample (what `make install` and the packages ship)
    parses as written: every comment line is wrapped short (a comment
    over 200 bytes was split by inih and its rest read as an option,
    which broke the packaged configuration), and with a listener that
    needs no certificate every default passes config-check."""
    p = run_cli(["config-check", "--sample"])
    eq(p.returncode, 0, "config-check --sample: %s" % p.stderr)
    long = [l for l in p.stdout.split("\n") if len(l) > 78 and
            l.startswith("# ")]
    check(not long, "comment lines over 78 columns: %r" % long[:3])
    text = p.stdout.replace("#listen = https://0.0.0.0:5088",
                            "listen = http://127.0.0.1:5088", 1)
    check(text != p.stdout, "the sample has no #listen line")
    d = make_tmpdir("sample-")
    path = os.path.join(d, "sample.conf")
    with open(path, "w") as f:
        f.write(text)
    p = run_cli(["config-check", "--config", path])
    eq(p.stdout.strip(), "%s: ok" % path,
       "config-check of the sample: %s" % p.stderr.strip())


def _mariadb():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "db"))
    import mariadb
    return mariadb


def test_db_mysql_url_password_never_shown():
    """A MySQL [database] connection: db-sync works (twice: idempotent),
    and neither config-check --dump, db-sync's output, a refused
    connection nor a refused parameter ever shows the password."""
    _srv, _name, url = _mariadb().fresh_database("cli")
    m = re.match(r"^(mysql\+pymysql://[^:]+):([^@]+)@([^:/]+):(\d+)(/.*)$",
                 url)
    check(m is not None, "unexpected test URL form %r" % url)
    password = m.group(2)
    masked = "%s:***@%s:%s%s" % (m.group(1), m.group(3), m.group(4),
                                 m.group(5))
    path = conf_with("mysql.conf", {"database": {"connection": url}})
    p = run_cli(["config-check", "--config", path, "--dump"])
    eq(p.returncode, 0, "config-check --dump (%r)" % out(p))
    check(masked in out(p), "dump lacks the masked URL: %r" % out(p))
    check(password not in out(p), "config-check --dump shows the password")
    for i in (1, 2):
        p = run_cli(["db-sync", "--config", path])
        eq(p.returncode, 0, "db-sync run %d (%r)" % (i, out(p)))
        check(password not in out(p), "db-sync shows the password")
        check(masked in out(p) and "schema version" in out(p),
              "db-sync output %r" % out(p))
    # Nothing listens on port 1: a quick, clear, masked failure.
    closed = "%s:%s@%s:1%s" % (m.group(1), password, m.group(3), m.group(5))
    path = conf_with("closed.conf", {"database": {"connection": closed}})
    t0 = time.monotonic()
    p = run_cli(["db-sync", "--config", path])
    eq(p.returncode, 1, "db-sync on a closed port (%r)" % out(p))
    check(time.monotonic() - t0 < 10, "db-sync on a closed port hung")
    check("cannot connect" in out(p), "no reason: %r" % out(p))
    check(password not in out(p), "the refusal shows the password")
    # An unknown parameter is refused by name, the URL masked.
    path = conf_with("param.conf", {"database": {
        "connection": url + "?sslmode=disable"}})
    p = run_cli(["config-check", "--config", path])
    eq(p.returncode, 1, "unknown parameter accepted (%r)" % out(p))
    check('"sslmode"' in out(p), "parameter not named: %r" % out(p))
    check(password not in out(p), "the refusal shows the password")


def test_serve_on_mysql_never_logs_the_password():
    """serve on a MySQL connection (db-sync, then workers each opening
    their own connection): writes and reads work, and the server log,
    checked by the harness for its secrets, never holds the password."""
    _srv, _name, url = _mariadb().fresh_database("serve")
    password = re.match(r"^mysql\+pymysql://[^:]+:([^@]+)@", url).group(1)
    with Server(name="mysql", extra={"database": {"connection": url}}) as srv:
        srv.secrets.add(password)
        rid = srv.create("restriction", {"domain_id": "d"})["id"]
        eq(srv.req("GET", "/v4/tokens/restrictions/" + rid).status, 200,
           "a restriction read back from MySQL")
        srv.stop()
        check(password not in srv.log_text(), "the server log shows the "
              "database password")
