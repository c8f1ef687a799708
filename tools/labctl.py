#!/usr/bin/env python3
"""Bootstrap and drive the local container lab of stackops.webstack.

Standard library only: this runs before the project's virtualenv exists.

    labctl.py venv      build (or reuse) the pinned virtualenv, link it as .venv
    labctl.py docker    install Debian's docker.io and start dockerd if needed
    labctl.py images    build the Debian lab images with debootstrap if missing
    labctl.py bootstrap all three, in that order
    labctl.py clean     remove lab containers/networks left behind by earlier runs

Everything is idempotent: a second call finds the work done and returns
within seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("STACKOPS_LAB_CACHE", "/var/cache/stackops-lab"))
MIRROR = os.environ.get("STACKOPS_LAB_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get(
    "STACKOPS_LAB_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
# Directory whose *.crt files are added to the lab images as trusted CAs.
# Hosts behind a TLS-inspecting proxy keep that proxy's CA here.
EXTRA_CA_DIR = Path(os.environ.get("STACKOPS_LAB_EXTRA_CA_DIR", "/usr/local/share/ca-certificates"))
APTCACHE_PORT = int(os.environ.get("STACKOPS_APTCACHE_PORT", "3142"))
APTCACHE_URL = f"http://127.0.0.1:{APTCACHE_PORT}"
IMAGE_REPO = "stackops-lab/debian"
LAB_LABEL = "stackops.lab"

# Debian releases the lab can boot: image tag -> suite.
RELEASES = {"13": "trixie", "12": "bookworm"}

# Installed by debootstrap itself (enough to run apt and systemd).
BASE_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "sudo",
    "iproute2",
    "ca-certificates",
    "procps",
]
# What every host of the stack needs (the `common` role's packages and the
# Ansible runtime), pre-baked so that converges do not reinstall them per host.
PREBAKED_PACKAGES = [
    "python3-apt",
    "openssh-server",
    "nftables",
    "fail2ban",
    "python3-systemd",
    "chrony",
    "unattended-upgrades",
    "apt-listchanges",
    "cron",
    "locales",
    "tzdata",
    "curl",
    "gnupg",
    "iputils-ping",
    "netcat-openbsd",
    "less",
    "logrotate",
    "acl",
    "python3-pip",
    "xz-utils",
    "bind9-dnsutils",
    "htop",
    "jq",
    "lsof",
    "rsync",
    "tcpdump",
    "unzip",
]
IMAGE_RECIPE_VERSION = "5"  # bump when the build steps below change


def log(msg: str) -> None:
    print(f"[labctl] {msg}", flush=True)


def run(cmd, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, **kw)


def quiet_ok(cmd) -> bool:
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return result.returncode == 0


# --------------------------------------------------------------------- venv
def cmd_venv(_args) -> None:
    link_collection()
    venv = cached_venv(ROOT / "requirements-dev.txt", "")
    link_venv(venv, ROOT / ".venv")
    link_mitogen(venv)
    # sslyze pins a cryptography that Ansible's collections cannot use.
    link_venv(cached_venv(ROOT / "requirements-tls.txt", "tls-"), ROOT / ".cache" / "tls-venv")


def cached_venv(req: Path, kind: str) -> Path:
    """The virtualenv of ``req``, built once per content of the file."""
    digest = hashlib.sha256(req.read_bytes()).hexdigest()[:12]
    pyver = f"py{sys.version_info.major}{sys.version_info.minor}"
    venv = CACHE / "venv" / f"{pyver}-{kind}{digest}"
    if not (venv / ".complete").exists():
        log(f"building virtualenv {venv} from {req.name}")
        if venv.exists():
            shutil.rmtree(venv)
        venv.parent.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "--quiet", "--upgrade", "pip"])
        run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(req)])
        (venv / ".complete").write_text(digest + "\n")
    return venv


def link_venv(venv: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.resolve() == venv.resolve():
            return
        if link.is_symlink():
            link.unlink()
        else:
            shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(venv)
    log(f"{link.relative_to(ROOT)} -> {venv}")


def link_mitogen(venv: Path) -> None:
    """Link mitogen's strategy plugins as .cache/mitogen-strategy (a stable path for the lab)."""
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target = venv / "lib" / pyver / "site-packages" / "ansible_mitogen" / "plugins" / "strategy"
    link = ROOT / ".cache" / "mitogen-strategy"
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    if target.is_dir():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)


def link_collection() -> None:
    """Make this checkout importable as the collection stackops.webstack."""
    parent = ROOT / ".cache" / "collections" / "ansible_collections" / "stackops"
    parent.mkdir(parents=True, exist_ok=True)
    link = parent / "webstack"
    if link.is_symlink() and link.resolve() == ROOT:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ROOT)


# ------------------------------------------------------------------- docker
def apt_install(packages) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)


def cmd_docker(_args) -> None:
    missing = [
        p
        for p, binary in (("docker.io", "dockerd"), ("debootstrap", "debootstrap"))
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists()
    ]
    if missing:
        log(f"installing {' '.join(missing)} from Debian")
        apt_install(missing)
    ensure_aptcache()
    if quiet_ok(["docker", "info"]):
        return
    log("starting dockerd in the background (log: /var/log/stackops-dockerd.log)")
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    with open("/var/log/stackops-dockerd.log", "ab") as out:
        subprocess.Popen(
            [dockerd],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if quiet_ok(["docker", "info"]):
            log("dockerd is up")
            return
        time.sleep(1)
    sys.exit("dockerd did not answer within 90 s; see /var/log/stackops-dockerd.log")


def aptcache_healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{APTCACHE_URL}/_health", timeout=2) as resp:  # noqa: S310
            return resp.status == 200
    except OSError:
        return False


def ensure_aptcache() -> None:
    """Start the lab's shared apt cache (tools/aptcache.py) when it is not answering."""
    if aptcache_healthy():
        return
    log(f"starting the lab apt cache on port {APTCACHE_PORT} (log: /var/log/stackops-aptcache.log)")
    with open("/var/log/stackops-aptcache.log", "ab") as out:
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tools" / "aptcache.py"),
                "--port",
                str(APTCACHE_PORT),
                "--cache",
                str(CACHE / "aptcache"),
            ],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if aptcache_healthy():
            return
        time.sleep(0.5)
    sys.exit("the apt cache did not start; see /var/log/stackops-aptcache.log")


# ------------------------------------------------------------------- images
def extra_cas() -> list[Path]:
    if not EXTRA_CA_DIR.is_dir():
        return []
    return sorted(p for p in EXTRA_CA_DIR.rglob("*.crt") if p.is_file())


def recipe_hash(suite: str) -> str:
    h = hashlib.sha256()
    for part in (
        IMAGE_RECIPE_VERSION,
        suite,
        MIRROR,
        SECURITY_MIRROR,
        " ".join(BASE_PACKAGES),
        " ".join(PREBAKED_PACKAGES),
    ):
        h.update(part.encode() + b"\0")
    for ca in extra_cas():
        h.update(ca.read_bytes())
    for func in (_configure_rootfs, _install_packages, _finish_rootfs, build_image):
        h.update(inspect.getsource(func).encode())
    h.update((APT_PROXY_DETECT + SSH_HOSTKEYS_UNIT + SOURCES).encode())
    return h.hexdigest()[:16]


def image_label(tag: str) -> str | None:
    res = subprocess.run(
        [
            "docker",
            "image",
            "inspect",
            "-f",
            '{{ index .Config.Labels "stackops.lab.recipe" }}',
            f"{IMAGE_REPO}:{tag}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return res.stdout.strip() if res.returncode == 0 else None


SOURCES = """\
deb {mirror} {suite} main
deb {mirror} {suite}-updates main
deb {security} {suite}-security main
"""

APT_PROXY_DETECT = """\
#!/bin/sh
# apt asks this script which proxy to use: the lab's shared apt cache on the
# Docker host when it answers, otherwise a direct connection.
if nc -z -w 1 host.docker.internal {port} 2>/dev/null; then
    echo "http://host.docker.internal:{port}"
else
    echo DIRECT
fi
"""

SSH_HOSTKEYS_UNIT = """\
[Unit]
Description=Generate this container's own SSH host keys (lab image)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


def _configure_rootfs(rootfs: Path, suite: str) -> None:
    """Files the lab image needs before packages are installed into it."""
    (rootfs / "etc/apt/sources.list").write_text(
        SOURCES.format(mirror=MIRROR, security=SECURITY_MIRROR, suite=suite)
    )
    (rootfs / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    (rootfs / "usr/sbin/policy-rc.d").chmod(0o755)
    (rootfs / "etc/apt/apt.conf.d/90stackops-lab").write_text(
        'Acquire::Retries "3";\n'
        # The lab's shared apt cache on the Docker host, when it answers.
        'Acquire::http::Proxy-Auto-Detect "/usr/local/sbin/lab-apt-proxy";\n'
    )
    detect = rootfs / "usr/local/sbin/lab-apt-proxy"
    detect.write_text(APT_PROXY_DETECT.format(port=APTCACHE_PORT))
    detect.chmod(0o755)
    for ca in extra_cas():
        shutil.copy2(ca, rootfs / "usr/local/share/ca-certificates" / ca.name)


def _install_packages(rootfs: Path, suite: str) -> None:
    env = {
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "http_proxy": APTCACHE_URL,
    }
    chroot = ["chroot", str(rootfs)]
    log(f"installing the pre-baked packages into {suite}")
    run([*chroot, "apt-get", "update", "-qq"], env=env)
    run([*chroot, "apt-get", "dist-upgrade", "-y", "-qq"], env=env, stdout=subprocess.DEVNULL)
    run(
        [*chroot, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *PREBAKED_PACKAGES],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    run([*chroot, "update-ca-certificates"], env=env, stdout=subprocess.DEVNULL)
    run([*chroot, "apt-get", "clean"], env=env)


def _finish_rootfs(rootfs: Path) -> None:
    """Per-container identity at boot, and no units that make no sense in a container."""
    (rootfs / "etc/machine-id").write_text("")
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    unit = rootfs / "etc/systemd/system/lab-ssh-hostkeys.service"
    unit.write_text(SSH_HOSTKEYS_UNIT)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")
    for masked in (
        "getty@tty1.service",
        "serial-getty@console.service",
        "console-getty.service",
        "systemd-firstboot.service",
        "e2scrub_reap.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
    ):
        link = rootfs / "etc/systemd/system" / masked
        if not link.exists():
            link.symlink_to("/dev/null")
    (rootfs / "usr/sbin/policy-rc.d").unlink()


def build_image(tag: str, suite: str, digest: str) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"stackops-rootfs-{suite}-", dir="/var/tmp"))
    rootfs = work / "rootfs"
    mounts: list[Path] = []
    started = time.monotonic()
    try:
        log(f"debootstrap {suite} into {rootfs} (through the apt cache)")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                suite,
                str(rootfs),
                MIRROR,
            ],
            stdout=subprocess.DEVNULL,
            env=dict(os.environ, http_proxy=APTCACHE_URL),
        )
        _configure_rootfs(rootfs, suite)
        for src, dst in (("/proc", "proc"), ("/sys", "sys"), ("/dev", "dev")):
            target = rootfs / dst
            target.mkdir(parents=True, exist_ok=True)
            run(["mount", "--bind", src, str(target)])
            mounts.append(target)
        _install_packages(rootfs, suite)
        _finish_rootfs(rootfs)
    finally:
        for target in reversed(mounts):
            run(["umount", "-l", str(target)], check=False)
    try:
        log(f"importing {IMAGE_REPO}:{tag}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(
            [
                "docker",
                "import",
                "-c",
                'CMD ["/lib/systemd/systemd"]',
                "-c",
                "ENV container=docker",
                "-c",
                f"LABEL stackops.lab.recipe={digest}",
                "-c",
                f"LABEL stackops.lab.suite={suite}",
                "-",
                f"{IMAGE_REPO}:{tag}",
            ],
            stdin=tar.stdout,
            stdout=subprocess.DEVNULL,
        )
        tar.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"image {IMAGE_REPO}:{tag} built in {time.monotonic() - started:.0f} s")


def cmd_images(args) -> None:
    wanted = args.release or list(RELEASES)
    unknown = sorted(set(wanted) - set(RELEASES))
    if unknown:
        sys.exit(f"unknown release(s) {', '.join(unknown)}; known: {', '.join(RELEASES)}")
    for tag in wanted:
        suite = RELEASES[tag]
        digest = recipe_hash(suite)
        if image_label(tag) == digest:
            continue
        build_image(tag, suite, digest)
    run(
        ["docker", "image", "prune", "-f", "--filter", f"label={LAB_LABEL}.recipe"],
        stdout=subprocess.DEVNULL,
        check=False,
    )


# -------------------------------------------------------------------- clean
def cmd_clean(args) -> None:
    selector = (
        f"label={LAB_LABEL}" if not args.scenario else f"label={LAB_LABEL}.scenario={args.scenario}"
    )
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", selector], capture_output=True, text=True, check=True
    ).stdout.split()
    if ids:
        run(["docker", "rm", "-f", "-v", *ids], stdout=subprocess.DEVNULL)
    nets = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", selector],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for net in nets:
        run(["docker", "network", "rm", net], stdout=subprocess.DEVNULL, check=False)
    log(f"removed {len(ids)} container(s) and {len(nets)} network(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("venv")
    sub.add_parser("docker")
    images = sub.add_parser("images")
    images.add_argument("release", nargs="*", help=f"one of {', '.join(RELEASES)} (default: all)")
    sub.add_parser("bootstrap")
    clean = sub.add_parser("clean")
    clean.add_argument("--scenario")
    args = parser.parse_args()
    if args.cmd == "bootstrap":
        args.release = []
        cmd_venv(args)
        cmd_docker(args)
        cmd_images(args)
    else:
        {"venv": cmd_venv, "docker": cmd_docker, "images": cmd_images, "clean": cmd_clean}[
            args.cmd
        ](args)


if __name__ == "__main__":
    main()
