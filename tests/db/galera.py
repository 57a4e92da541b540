#!/usr/bin/env python3
"""A three-node MariaDB Galera cluster on loopback for the tests.

Each node is a private mariadbd (tests/db/mariadb.py) with wsrep on,
Debian's galera-4 provider (libgalera_smm.so), private loopback ports for
group communication, IST and SST, and `rsync` state transfer (it works
offline; mariabackup needs nothing more but is slower).  The first node is
bootstrapped with --wsrep-new-cluster from the initialised template and
creates the application user; the others start on an empty data directory
and receive everything by SST.

    c = Galera("check")           # tests/tmp/galera-check-XXXX/node{1,2,3}
    c.start()                     # returns when all three are Synced
    url = c.create_database("k")  # on node 1, replicated; per-node URLs:
    c.url("k", node=2)
    c.stop()

CLI: python3 tests/db/galera.py start DIR | stop DIR (prints the node URLs).

A missing provider or rsync is an error naming the packages (galera-4 and
rsync on Debian, galera and rsync on Fedora; ./configure --install-deps).
"""
import json
import os
import shutil
import sys
import tempfile
import time

import mariadb
from mariadb import MariaDBError, free_port

PROVIDERS = ("/usr/lib/galera/libgalera_smm.so",
             "/usr/lib64/galera-4/libgalera_smm.so",
             "/usr/lib64/galera/libgalera_smm.so",
             "/usr/lib/x86_64-linux-gnu/galera/libgalera_smm.so")
# rsync's SST daemon, started by a root mariadbd, drops to nobody and
# cannot write the joiner's data directory: as root, run the nodes as the
# mysql user of the mariadb-server package.
RUN_AS = "mysql"
PACKAGES = ("galera-4 and rsync (Debian), galera and rsync (Fedora); "
            "./configure --install-deps installs them")


def provider():
    for p in PROVIDERS:
        if os.path.exists(p):
            return p
    raise MariaDBError("Galera test cluster: libgalera_smm.so not found "
                       "(looked in %s): install %s"
                       % (", ".join(PROVIDERS), PACKAGES))


def check_rsync():
    if mariadb.find_program("rsync") is None:
        raise MariaDBError("Galera test cluster: rsync (the SST method) not "
                           "found: install %s" % PACKAGES)


class Galera:
    """n MariaDB nodes in one Galera cluster on 127.0.0.1."""

    def __init__(self, name="galera", n=3, directory=None):
        self.provider = provider()
        check_rsync()
        if directory is None:
            os.makedirs(mariadb.TMP, exist_ok=True)
            directory = tempfile.mkdtemp(prefix="galera-%s-" % name,
                                         dir=mariadb.TMP)
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.state_file = os.path.join(self.dir, "cluster.json")
        ports = self._load_ports(n)
        self.gcomm = ["127.0.0.1:%d" % p["gcomm"] for p in ports]
        self.nodes = []
        for i, p in enumerate(ports):
            nd = os.path.join(self.dir, "node%d" % (i + 1))
            node = mariadb.MariaDB(directory=nd, init=(i == 0),
                                   port=p["sql"], run_as=RUN_AS,
                                   extra_args=self._wsrep_args(i, p))
            self.nodes.append(node)
        self.failed = False
        self.timings = {}

    def _load_ports(self, n):
        try:
            with open(self.state_file) as f:
                return json.load(f)["ports"]
        except (OSError, ValueError, KeyError):
            ports = [{k: free_port() for k in ("sql", "gcomm", "ist", "sst")}
                     for _ in range(n)]
            with open(self.state_file, "w") as f:
                json.dump({"ports": ports}, f)
            return ports

    def _wsrep_args(self, i, p):
        opts = ";".join([
            "gmcast.listen_addr=tcp://127.0.0.1:%d" % p["gcomm"],
            "ist.recv_addr=127.0.0.1:%d" % p["ist"],
            "base_port=%d" % p["gcomm"],
            "gcache.size=16M",
            "evs.suspect_timeout=PT5S",
        ])
        return [
            "--wsrep-on=ON",
            "--wsrep-provider=" + self.provider,
            "--wsrep-provider-options=" + opts,
            "--wsrep-cluster-name=k8sauth-test",
            "--wsrep-node-name=node%d" % (i + 1),
            "--wsrep-node-address=127.0.0.1:%d" % p["gcomm"],
            "--wsrep-node-incoming-address=127.0.0.1:%d" % p["sql"],
            "--wsrep-sst-method=rsync",
            "--wsrep-sst-receive-address=127.0.0.1:%d" % p["sst"],
            "--binlog-format=ROW",
            "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            "--wsrep-slave-threads=2",
        ]

    def _address(self, i, bootstrap):
        if bootstrap:
            return ["--wsrep-cluster-address=gcomm://", "--wsrep-new-cluster"]
        return ["--wsrep-cluster-address=gcomm://" + ",".join(self.gcomm)]

    def start(self, timeout=120):
        """Bootstrap node 1, then join the others one by one (SST)."""
        t0 = time.monotonic()
        first = self.nodes[0]
        first.extra_args = [a for a in first.extra_args
                            if not a.startswith("--wsrep-cluster-address")
                            and a != "--wsrep-new-cluster"]
        first.extra_args += self._address(0, True)
        first.start(timeout=timeout)
        self._wait_synced(first, timeout)
        self.timings["bootstrap"] = time.monotonic() - t0
        for i, node in enumerate(self.nodes[1:], start=2):
            t1 = time.monotonic()
            node.extra_args += self._address(i, False)
            # The user and its password come with the data (SST).
            node.password = first.password
            node.user_ready = True
            node.start(timeout=timeout)
            self._wait_synced(node, timeout)
            self.timings["join node%d (SST)" % i] = time.monotonic() - t1
        # A donor is Donor/Desynced for a while after its SST: every node
        # Synced and ready before anyone uses the cluster.
        for node in self.nodes:
            self._wait_synced(node, timeout)
        rows = first.sql("SHOW STATUS LIKE 'wsrep_cluster_size'")
        if not rows or rows[0][1] != str(len(self.nodes)):
            self.failed = True
            raise MariaDBError("Galera cluster size %r, expected %d"
                               % (rows, len(self.nodes)))
        self.timings["cluster"] = time.monotonic() - t0
        return self

    def _wait_synced(self, node, timeout):
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            rows = dict(node.sql("SHOW STATUS WHERE Variable_name IN "
                                 "('wsrep_local_state_comment', "
                                 "'wsrep_ready')"))
            state = rows.get("wsrep_local_state_comment")
            if state == "Synced" and rows.get("wsrep_ready") == "ON":
                return
            time.sleep(0.2)
        self.failed = True
        raise MariaDBError("Galera node %s not Synced within %ds (%r):\n%s"
                           % (node.dir, timeout, state, node.log_tail()))

    def create_database(self, name):
        """On node 1 (DDL and grants replicate); the URL of node 1."""
        return self.nodes[0].create_database(name)

    def url(self, db, node=1):
        return self.nodes[node - 1].url(db)

    def stop(self):
        """Joiners first, the bootstrap node last (a clean shutdown)."""
        for node in reversed(self.nodes):
            node.stop()

    def cleanup(self):
        for node in reversed(self.nodes):
            node.failed = node.failed or self.failed
            node.cleanup()
        if not mariadb.KEEP_TMP and not self.failed:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv):
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: galera.py start DIR | stop DIR", file=sys.stderr)
        return 2
    try:
        c = Galera(directory=argv[1])
        if argv[0] == "start":
            for n in c.nodes:
                n.detach = True
            c.start()
            c.create_database("keystone_k8s_auth")
            for i in range(len(c.nodes)):
                print(c.url("keystone_k8s_auth", node=i + 1))
        else:
            c.stop()
    except MariaDBError as e:
        print("galera.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
