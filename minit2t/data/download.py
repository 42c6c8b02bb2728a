"""Fetching the official CIFAR-10 archive into a local cache, checked by MD5, written atomically.

The cache folder is $MINIT2T_CACHE, else ~/.cache/minit2t. CIFAR10_URL and CIFAR10_MD5
are read at call time, so a test (or a mirror) can point them elsewhere, e.g. a file:// URL.
"""
import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CHUNK = 1 << 20


def cache_dir():
    """$MINIT2T_CACHE, else ~/.cache/minit2t (not created here)."""
    return os.environ.get("MINIT2T_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "minit2t")


def download_cifar10(url=None, md5=None, folder=None):
    """Download `url` (default CIFAR10_URL) into `folder` (default cache_dir()); return the file's path.

    A file already there is returned as it is (it was checked when written). The
    download goes to a temporary file that replaces the target only once its MD5
    matches `md5` (default CIFAR10_MD5); on a mismatch nothing is kept.
    """
    url, md5 = url or CIFAR10_URL, (md5 or CIFAR10_MD5).lower()
    folder = folder or cache_dir()
    name = os.path.basename(urllib.parse.urlparse(url).path) or "cifar-10-python.tar.gz"
    target = os.path.join(folder, name)
    if os.path.isfile(target):
        return target
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _fetch(url, out, folder)
            out.flush()
            os.fsync(out.fileno())
        if got != md5:
            raise ValueError(f"download of {url} has MD5 {got}, expected {md5}; the file was not kept "
                             f"(a truncated or altered download)")
        os.replace(tmp, target)           # readers see no file or the whole checked file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _fetch(url, out, folder):
    """Stream `url` into the open file `out`; return the MD5 hex digest of what was written."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise FileNotFoundError(
            f"CIFAR-10 is not available locally and could not be downloaded from {url} ({exc}). "
            f"Put cifar-10-python.tar.gz or cifar-10-binary.tar.gz (or its extracted folder) in "
            f"{folder}, or set MINIT2T_DATA to the file or folder, or pass its path.") from None
    return digest.hexdigest()
