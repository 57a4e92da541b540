#!/usr/bin/env python3
"""docs/deploy.md, run as written.

    python3 tests/integration/test_deploy.py      # as root, loopback only

Every fenced block of docs/deploy.md preceded by `<!-- walkthrough -->` is
extracted and run, unchanged and in order, by one bash (`set -eu`), against:

  - the real Keystone of tests/interop/keystone-env.sh (Debian's keystone on
    uWSGI; its admin is the `openrc` the doc assumes: OS_* variables);
  - the test Kubernetes API server (tests/k8s/fake-k8s) and a kubeconfig
    naming it, for the doc's `kubectl config view` CA extraction;
  - keystone-k8s-auth over HTTPS with `payload = project_scoped` and
    Keystone's key repository, restarted on the configuration the doc's
    service-user block appended `[keystone]` to.

The doc's settings (step 0) come from the environment: K8SAUTH, K8SAUTH_CA,
K8SAUTH_ETC, DOMAIN, PROJECT, ... The `kubectl create` steps are not run (the
test cluster has no TokenRequest or RBAC API): the test makes the reviewer
and the pod's JWT through fake-k8s's control API and hands them over as
REVIEWER_JWT and JWT_FILE.  Checks: each phase exits 0; the token the doc's
exchange printed is accepted by the `openstack` CLI for the restriction's
project and user; after the doc's PATCH the login uses the new reviewer
token.

Under tests/integration/runner.py it is the one test test_deploy_walkthrough.
When apt cannot install keystone: SKIP (passes).  Needs the `openstack`
CLI (python3-openstackclient) and jq (`./configure --install-deps`); without
kubectl the CA-extraction block is replaced by its result (a SKIP line).
"""

# docs/deploy.md is the single-host set-up, on SQLite (docs/operations.md
# "Running several replicas" is the MariaDB one, tested by test_replicas).
SQLITE_ONLY = "walks docs/deploy.md, whose single-host set-up is SQLite"

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC = os.path.join(ROOT, "docs", "deploy.md")
_spec = importlib.util.spec_from_file_location(
    "interop_keystone", os.path.join(ROOT, "tests", "interop",
                                     "test_keystone.py"))
interop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(interop)
http = interop.http

MARK = "<!-- walkthrough -->"


def walkthrough_blocks(path=DOC):
    """The ```sh blocks right after a MARK line, in document order."""
    with open(path) as f:
        lines = f.read().split("\n")
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == MARK:
            j = i + 1
            if j >= len(lines) or lines[j].strip() != "```sh":
                raise RuntimeError("%s:%d: %s not followed by ```sh"
                                   % (path, i + 1, MARK))
            k = j + 1
            while k < len(lines) and lines[k].strip() != "```":
                k += 1
            blocks.append("\n".join(lines[j + 1:k]))
            i = k
        i += 1
    return blocks


class Shell:
    """Runs doc blocks in one bash whose variables persist between calls
    (each call sources the previous state dump)."""

    def __init__(self, d, env):
        self.d = d
        self.env = env
        self.state = os.path.join(d, "shell-state.sh")
        open(self.state, "w").close()
        self.n = 0

    def run(self, blocks, label, override=None):
        """Run BLOCKS after the previous state; OVERRIDE {name: value} is
        exported after the state is restored."""
        self.n += 1
        script = os.path.join(self.d, "phase-%d-%s.sh" % (self.n, label))
        with open(script, "w") as f:
            f.write("set -eu\n. %s\n" % self.state)
            for name, value in (override or {}).items():
                f.write("export %s=%s\n" % (name, shlex.quote(value)))
            for b in blocks:
                f.write(b + "\n")
            # Keep the shell variables for the next phase.
            f.write("declare -p | grep -v '^declare -[a-zA-Z]*r' "
                    "| grep -Ev ' (BASH|SHELL|EUID|PPID|UID|GROUPS|"
                    "SHELLOPTS|BASHOPTS|_)=' > %s.new\n" % self.state)
            f.write("mv %s.new %s\n" % (self.state, self.state))
        log = os.path.join(self.d, "phase-%d-%s.log" % (self.n, label))
        with open(log, "wb") as out:
            rc = subprocess.call(["bash", script], cwd=self.d, env=self.env,
                                 stdout=out, stderr=subprocess.STDOUT)
        with open(log, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return rc, text

    def var(self, name):
        out = subprocess.check_output(
            ["bash", "-c", '. %s; printf %%s "${%s-}"' % (self.state, name)],
            env=self.env)
        return out.decode()


def kubeconfig(path, url, ca_pem):
    import base64
    ca = base64.b64encode(ca_pem.encode()).decode()
    with open(path, "w") as f:
        f.write("""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: test
  user:
    token: not-used
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
""".format(url=url, ca=ca))


def base_config(d, env, url, tls_dir):
    conf = os.path.join(d, "etc", "keystone-k8s-auth.conf")
    with open(conf, "w") as f:
        f.write("""# Written by tests/integration/test_deploy.py: step 2 of docs/deploy.md
[server]
listen = {url}
workers = 2
tls_cert = {tls}/k8s.pem
tls_key = {tls}/k8s.key
[database]
connection = sqlite:///{d}/k8sauth.db
[credential]
key_repository = {d}/credential-keys
[bootstrap]
admin_token_file = {d}/etc/admin-token
[policy]
dir = {d}/policy
[fernet_tokens]
key_repository = {repo}
max_active_keys = {max_keys}
[auth]
methods = {methods}
[token]
payload = project_scoped
""".format(url=url, tls=tls_dir, d=d, repo=env["key_repository"],
           max_keys=env["max_active_keys"], methods=",".join(env["methods"])))
    return conf


class Server:
    def __init__(self, binary, d, conf, url):
        self.binary, self.d, self.conf, self.url = binary, d, conf, url
        self.log = os.path.join(d, "server.log")
        self.proc = None

    def prepare(self):
        for sub in ("config-check", "credential-setup", "bootstrap",
                    "db-sync"):
            if interop.run([self.binary, sub, "--config", self.conf],
                           self.log) != 0:
                raise RuntimeError("keystone-k8s-auth %s failed:\n%s"
                                   % (sub, interop.tail(self.log)))

    def start(self, procs, ctx):
        if interop.run([self.binary, "config-check", "--config", self.conf],
                       self.log) != 0:
            raise RuntimeError("config-check of the doc's configuration "
                               "failed:\n" + interop.tail(self.log))
        self.proc = procs.start([self.binary, "serve", "--config",
                                 self.conf], self.log)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("keystone-k8s-auth exited:\n"
                                   + interop.tail(self.log))
            try:
                return http("GET", self.url + "/readyz",
                            context=ctx).status == 200
            except OSError:
                return False
        interop.wait_for(ready, 20, "keystone-k8s-auth /readyz")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            rc = self.proc.wait(timeout=15)
            self.proc = None
            return rc
        return None


def walkthrough(res, ks, workdir):
    env = ks.env
    blocks = walkthrough_blocks()
    if not res.check("deploy.md: 8 walkthrough blocks found",
                     len(blocks) == 8, "found %d" % len(blocks)):
        return
    for tool in ("openstack", "jq", "curl"):
        if not res.check("deploy.md: %s is installed" % tool,
                         shutil.which(tool) is not None,
                         "./configure --install-deps installs it"):
            return
    binary, fake = interop.build(res, workdir)
    if not binary or not fake:
        return
    d = os.path.join(workdir, "deploy")
    os.makedirs(os.path.join(d, "etc"), exist_ok=True)
    procs = interop.Procs()
    server = None
    try:
        k8s = interop.FakeK8s(procs, fake, d)
        port = interop.free_port()
        url = "https://127.0.0.1:%d" % port
        conf = base_config(d, env, url, d)
        server = Server(binary, d, conf, url)
        server.prepare()
        import ssl
        ctx = ssl.create_default_context(cafile=k8s.ca_file)
        server.start(procs, ctx)

        # The cluster side of step 6 and 8 that kubectl would do.
        k8s.call("POST", "/_test/serviceaccounts",
                 {"namespace": "web", "name": "web"})
        k8s.call("POST", "/_test/pods", {"namespace": "web", "name": "web-0",
                                         "service_account": "web"})
        k8s.call("POST", "/_test/serviceaccounts",
                 {"namespace": "kube-system", "name": "keystone-reviewer"})
        k8s.call("POST", "/_test/reviewers",
                 {"namespace": "kube-system", "name": "keystone-reviewer"})

        def reviewer_jwt():
            return k8s.call("POST", "/_test/tokens", {
                "namespace": "kube-system",
                "service_account": "keystone-reviewer",
                "expires_in": 172800})["token"]
        jwt_file = os.path.join(d, "keystone-jwt")
        with open(jwt_file, "w") as f:
            f.write(k8s.call("POST", "/_test/tokens", {
                "namespace": "web", "service_account": "web",
                "pod": "web-0", "audiences": ["keystone"],
                "expires_in": 3600})["token"])
        kcfg = os.path.join(d, "kubeconfig")
        kubeconfig(kcfg, k8s.url, k8s.ca_pem)

        a = env["admin"]
        senv = dict(os.environ)
        senv.update({
            "K8SAUTH": url, "K8SAUTH_CA": k8s.ca_file,
            "K8SAUTH_ETC": os.path.join(d, "etc"), "K8SAUTH_GROUP": "root",
            "DOMAIN": env["domain_a"]["name"],
            "PROJECT": env["project"]["name"], "DEPLOYER": "web-deployer",
            "KEYSTONE_POLICY_D": os.path.join(
                os.path.dirname(env["config"]), "policy.d"),
            "DOC_EXAMPLES": os.path.join(ROOT, "docs", "examples"),
            "OS_AUTH_URL": env["url"] + "/v3", "OS_USERNAME": "admin",
            "OS_PASSWORD": a["password"], "OS_PROJECT_NAME": "admin",
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_IDENTITY_API_VERSION": "3",
            "KUBECONFIG": kcfg, "JWT_FILE": jwt_file,
            "REVIEWER_JWT": reviewer_jwt(),
        })
        sh = Shell(d, senv)

        # Phase 1: settings and the service user (steps 0 and 3).
        rc, out = sh.run(blocks[0:2], "service-user")
        if not res.check("deploy.md steps 0, 3: the service user and its "
                         "application credential (openstack CLI)", rc == 0,
                         "exit %d\n%s" % (rc, out[-3000:])):
            return
        with open(conf) as f:
            text = f.read()
        res.check("deploy.md step 3: [keystone] appended with the "
                  "credential id and secret file",
                  re.search(r"^application_credential_id = [0-9a-f]{32}$",
                            text, re.M) is not None, text[-400:])
        # Step 4: (re)start on the doc's configuration.
        server.stop()
        server.start(procs, ctx)

        # Phase 2: steps 5 to 9.  Without kubectl (Debian's is
        # kubernetes-client; CI images may carry Google's kubectl) the CA
        # extraction block is replaced by its result, and said so.
        phase2 = blocks[2:7]
        if shutil.which("kubectl") is None:
            res.skipped += 1
            print("SKIP deploy.md step 6: kubectl is not installed "
                  "(./configure --install-deps installs kubernetes-client): "
                  "the `kubectl config view` block is not run", flush=True)
            shutil.copyfile(k8s.ca_file, os.path.join(d, "cluster-ca.pem"))
            phase2 = [phase2[0], "K8S_API=%s" % shlex.quote(k8s.url)] + \
                phase2[2:]
        rc, out = sh.run(phase2, "register-and-exchange")
        if not res.check("deploy.md steps 5-9: workload user, CA "
                         "extraction, instance, restriction, role, "
                         "exchange, openstack CLI with the token", rc == 0,
                         "exit %d\n%s" % (rc, out[-3000:])):
            return
        last = [l for l in out.strip().split("\n") if l.strip()]
        user_id = sh.var("USER_ID")
        project_id = sh.var("PROJECT_ID")
        res.check("deploy.md step 9: `openstack token issue` with the "
                  "exchanged token names the restriction's project and user",
                  project_id != "" and sorted(x.strip() for x in last[-2:])
                  == sorted([project_id, user_id]),
                  "want %s / %s, got %r" % (project_id, user_id, last[-2:]))
        tok = sh.var("OS_TOKEN")
        v = ks.validate(tok) if tok else None
        res.check("deploy.md step 9: Keystone validates the exchanged "
                  "token (methods [mapped])",
                  v is not None and v.status == 200
                  and (v.json() or {}).get("token", {}).get("methods")
                  == ["mapped"], repr(v))

        # Phase 3: step 10 with a new reviewer token.
        rc, out = sh.run(blocks[7:8], "rotate-reviewer",
                         {"REVIEWER_JWT": reviewer_jwt()})
        res.check("deploy.md step 10: PATCH token_reviewer_jwt answers "
                  "token_reviewer_jwt_set true", rc == 0
                  and '"token_reviewer_jwt_set":true' in out,
                  "exit %d\n%s" % (rc, out[-2000:]))
        r = http("POST", "%s/v4/k8s_auth/instances/%s/auth"
                 % (url, sh.var("INSTANCE_ID")),
                 {"k8s_role": "web", "jwt": open(jwt_file).read()},
                 context=ctx)
        res.check("deploy.md step 10: logins keep working after the "
                  "rotation", r.status == 200, repr(r))
    except (RuntimeError, OSError, ValueError, KeyError) as err:
        res.fail("deploy.md: set-up", str(err))
    finally:
        status = procs.stop_all()
    if server is not None and server.proc is not None:
        rc = status.get(server.proc.pid)
        res.check("deploy.md: keystone-k8s-auth exits 0 on SIGTERM",
                  rc == 0, "status %s\n%s" % (rc, interop.tail(server.log)))


def run_walkthrough():
    """(results, skip reason or None)."""
    res = interop.Results()
    res.skipped = 0
    workdir = tempfile.mkdtemp(prefix="k8sauth-deploy-")
    print("# state in %s" % workdir, flush=True)
    status, env = interop.start_keystone(workdir)
    if status == interop.SKIP_STATUS:
        shutil.rmtree(workdir, ignore_errors=True)
        return res, ("keystone is not installed "
                     "(./configure --install-deps installs it)")
    try:
        if status != 0:
            res.fail("keystone-env.sh start", "status %d" % status)
        else:
            walkthrough(res, interop.Keystone(env), workdir)
    finally:
        interop.stop_keystone(workdir)
    if res.failed == 0 and not os.environ.get("KEEP_INTEROP_DIR"):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("# state kept in %s" % workdir)
    return res, None


def main():
    res, skip = run_walkthrough()
    if skip is not None:
        print("SKIP deploy walkthrough: %s" % skip)
        print("0 passed, 0 failed, 1 skipped")
        return 1 if os.environ.get("K8SAUTH_TEST_NO_SKIP", "") not in \
            ("", "0") else 0
    print("%d passed, %d failed, %d skipped" % (res.passed, res.failed,
                                                 res.skipped))
    return 1 if res.failed or res.passed == 0 else 0


def test_deploy_walkthrough():
    """For tests/integration/runner.py: docs/deploy.md run against the real
    Keystone and the test cluster; every check is counted, and a missing
    Keystone or kubectl is a skip (a failure in CI), never a pass."""
    import harness  # tests/integration, on the path under the runner
    res, skip = run_walkthrough()
    if skip is not None:
        raise harness.Skip(skip)
    return harness.Counts(res.passed, res.failed, res.skipped)


if __name__ == "__main__":
    sys.exit(main())
