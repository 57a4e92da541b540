"""Access lines in batches (src/batch.c, src/log.c; docs/operations.md).

Access lines wait in memory up to [log] flush_interval and go out many per
write(2); every other line is written at once, after the access lines
queued before it, so the log keeps the order things happened in; nothing
queued is lost on SIGHUP or SIGTERM.  Each test sets a flush interval no
test waits out (60 s), so a line that shows up early was not batched.
"""
import json
import os
import re
import signal
import time

from harness import Server, check, eq, free_ports, wait_for

# Level info: a late worker's debug line ("worker 1: running") would flush
# the queue early, as any line that is not an access line does.
LONG = {"log": {"flush_interval": "60000", "level": "info"}}
RST = "/v4/tokens/restrictions"


def access_paths(text, prefix):
    """The paths of the access lines for prefix*, in log order."""
    return re.findall(r"access: \S+ GET (%s\S*) " % re.escape(prefix), text)


def ask(srv, prefix, n):
    """n requests for prefix0..prefix{n-1} (404s: no other log line)."""
    for i in range(n):
        eq(srv.req("GET", "%s%d" % (prefix, i), token=None).status, 404,
           "GET %s%d" % (prefix, i))
    return ["%s%d" % (prefix, i) for i in range(n)]


def keystone_down(name):
    """A server whose Keystone is unreachable: any unknown X-Auth-Token
    gets 503 and a warning line, without a credential."""
    srv = Server(name=name, extra=dict(LONG))
    secret = os.path.join(srv.dir, "app-secret")
    with open(secret, "w") as f:
        f.write("not-a-real-secret\n")
    os.chmod(secret, 0o600)
    srv.extra["keystone"] = {
        "url": "http://127.0.0.1:%d/v3" % free_ports(1)[0],
        "application_credential_id": "app",
        "application_credential_secret_file": secret}
    srv._write_config()
    return srv


def test_access_lines_wait_and_a_warning_follows_them():
    srv = keystone_down("logorder")
    with srv:
        first = ask(srv, "/batch-a", 20)
        time.sleep(0.5)
        eq(access_paths(srv.log_text(), "/batch-a"), [],
           "access lines written before the flush interval was over")
        r = srv.req("GET", RST + "/warn-mark", token="not-a-token")
        eq(r.status, 503, "unknown token with Keystone down")
        # The warning is written at once, the queued lines before it.
        text = wait_for(lambda: "warn-mark" in srv.log_text() and
                        srv.log_text(), what="the warning")
        warn = text.index("warn-mark")
        eq(access_paths(text[:warn], "/batch-a"), first,
           "the access lines before the warning, in order")
        eq(access_paths(text[warn:], "/batch-a"), [],
           "an access line after the warning")
        second = ask(srv, "/batch-b", 20)
        check("GET /batch-b" not in srv.log_text(), "batch-b written early")
        srv.stop()  # SIGTERM: everything queued is written
        text = srv.log_text()
        eq(access_paths(text, "/batch-"), first + second,
           "every access line after SIGTERM, in order")
        check(re.search(r"access: \S+ GET %s/warn-mark 503" % RST,
                        text[text.index("warn-mark") + 1:]),
              "the 503's own access line after its warning")
        check(text.index("/batch-b19") < text.index("info: stopped"),
              "access lines written before the last line")


def test_sighup_writes_the_queued_lines():
    with Server(name="loghup", extra=dict(LONG)) as srv:
        paths = ask(srv, "/hup-", 10)
        srv.signal(signal.SIGHUP)
        wait_for(lambda: "reload: done" in srv.log_text(),
                 what="reload: done")
        text = srv.log_text()
        eq(access_paths(text[:text.index("SIGHUP: reloading")], "/hup-"),
           paths, "the access lines before the reload's first line")


def test_default_interval_writes_without_help():
    with Server(name="logdefault") as srv:
        eq(srv.req("GET", "/by-itself", token=None).status, 404, "404")
        wait_for(lambda: access_paths(srv.log_text(), "/by-itself"),
                 timeout=3, what="the access line within the interval")


def test_json_lines_batched():
    extra = {"log": {"flush_interval": "60000", "format": "json"}}
    with Server(name="logjson", extra=extra) as srv:
        paths = ask(srv, "/json-", 10)
        check("GET /json-" not in srv.log_text(), "JSON lines written early")
        srv.stop()
        got = []
        for line in srv.log_text().splitlines():
            o = json.loads(line)
            m = re.match(r"access: \S+ GET (/json-\d+) ", o["msg"])
            if m:
                eq(o["level"], "info", "an access line's level")
                got.append(m.group(1))
        eq(got, paths, "every JSON access line, in order")


def test_interval_zero_writes_each_line():
    with Server(name="logzero", extra={"log": {"flush_interval": "0"}}) \
            as srv:
        ask(srv, "/zero-", 3)
        eq(access_paths(srv.log_text(), "/zero-"),
           ["/zero-0", "/zero-1", "/zero-2"], "lines written at once")
