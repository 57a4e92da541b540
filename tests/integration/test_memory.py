"""Start-up memory: libraries linked in but never used stay uninitialised.

Debian's libcurl pulls in GnuTLS (through librtmp and libldap) although the
server's TLS is OpenSSL's; main.c's _gnutls_global_init_skip keeps GnuTLS's
constructor from initialising it before main (about 1 MiB of idle RSS,
bench/README.md).  The dynamic linker's binding trace shows which
definition GnuTLS found.
"""
import os
import re
import subprocess

import harness
from harness import Skip, check


def test_gnutls_finds_the_skip_hook():
    env = dict(os.environ, LD_DEBUG="bindings")
    env.pop("LD_DEBUG_OUTPUT", None)
    p = subprocess.run([harness.BINARY, "version"], env=env,
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "version failed: %r" % p.stderr[-500:])
    found = [m.group(1) for m in re.finditer(
        r"binding file \S*libgnutls\S* \[\d+\] to (\S+) \[\d+\]: "
        r"normal symbol `_gnutls_global_init_skip'", p.stderr)]
    if not found:
        raise Skip("libgnutls is not loaded by this build")
    check(all(os.path.basename(f) == os.path.basename(harness.BINARY)
              for f in found),
          "GnuTLS bound _gnutls_global_init_skip to %s, not to the server "
          "binary: its constructor initialises GnuTLS (configure's "
          "-Wl,--export-dynamic-symbol missing?)" % ", ".join(found))
