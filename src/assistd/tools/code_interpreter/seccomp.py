"""A seccomp filter for the sandbox: no new user namespaces.

Why: as root, bwrap runs privileged and cannot use ``--disable-userns`` (that needs a user namespace of its
own), so the model's code could create nested user namespaces — in which it holds every capability, and
so reaches kernel code (mounts, netfilter…) an ordinary process cannot. The filter answers EPERM to
``unshare`` and ``clone`` asking for ``CLONE_NEWUSER``, and ENOSYS to ``clone3`` (its flags live in memory a
filter cannot read; glibc then falls back to ``clone``). Syscalls of another ABI than the native one
(x32, i386 through ``int 0x80``) are refused too, so that nobody goes around the numbers checked here.

bwrap loads it (``--seccomp FD``) just before it executes the kernel, after setting no_new_privs.
Classic BPF over ``struct seccomp_data``: ``nr`` at offset 0, ``arch`` at 4, ``args[i]`` at 16 + 8·i (the low
32 bits first on these little-endian machines; ``CLONE_NEWUSER`` is among them).
"""

from __future__ import annotations

import errno
import os
import platform
import struct

CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000

# machine → (AUDIT_ARCH_*, clone, unshare, clone3)
_ARCHES = {
    "x86_64": (0xC000003E, 56, 272, 435),
    "aarch64": (0xC00000B7, 220, 97, 435),
}

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000  # SECCOMP_RET_ALLOW
_ERRNO = 0x00050000  # SECCOMP_RET_ERRNO | errno


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for ``machine`` (default: this one), or None where its syscall numbers are not known."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, clone, unshare, clone3 = arch
    # (label, code, k, target if true, target if false): jumps name their targets, resolved to offsets below.
    steps: list[tuple[str | None, int, int, str | None, str | None]] = [
        (None, _LD_W_ABS, 4, None, None),                    # A = arch
        (None, _JEQ_K, audit_arch, None, "nosys"),           # another ABI (i386 via int 0x80…)
        (None, _LD_W_ABS, 0, None, None),                    # A = nr
        (None, _JSET_K, _X32_BIT, "eperm", None),            # x32 numbers
        (None, _JEQ_K, unshare, "flags", None),
        (None, _JEQ_K, clone, "flags", None),
        (None, _JEQ_K, clone3, "nosys", None),
        (None, _RET_K, _ALLOW, None, None),
        ("flags", _LD_W_ABS, 16, None, None),                # A = args[0], low half: the flags
        (None, _JSET_K, CLONE_NEWUSER, "eperm", None),
        (None, _RET_K, _ALLOW, None, None),
        ("nosys", _RET_K, _ERRNO | errno.ENOSYS, None, None),
        ("eperm", _RET_K, _ERRNO | errno.EPERM, None, None),
    ]
    at = {label: i for i, (label, *_rest) in enumerate(steps) if label}
    out = []
    for i, (_label, code, k, if_true, if_false) in enumerate(steps):
        jt = at[if_true] - i - 1 if if_true else 0
        jf = at[if_false] - i - 1 if if_false else 0
        out.append(_op(code, k, jt, jf))
    return b"".join(out)


def filter_fd(machine: str | None = None) -> int | None:
    """A readable fd holding the filter, for ``bwrap --seccomp FD`` (the caller closes it once bwrap has
    started), or None on a machine the filter does not know."""
    prog = program(machine)
    if prog is None:
        return None
    r, w = os.pipe()
    try:
        os.write(w, prog)  # a few hundred bytes: well within a pipe's buffer
    finally:
        os.close(w)
    return r
