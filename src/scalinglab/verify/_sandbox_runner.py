"""The runner that executes ONE candidate program inside the sandbox (never imported by the host).

`sandbox.py` passes this file's text to `python -I -S -c`, so the sandbox needs nothing
but the bare interpreter. Protocol, all newline-delimited JSON:

1. argv: `uid gid` — the unprivileged identity to drop to (-1 -1: keep the current one).
2. Start-up, still trusted: save fd 1 as the private result channel, point fd 1 at fd 2 (the
   program's prints join stderr, which the parent counts and caps), drop privileges, write
   `{"ready": true}` on the result channel. A warm sandbox now waits here.
3. Read one job on stdin, `marshal`-encoded by the trusted parent (importing `json` would cost
   ~15 ms of start-up, mostly compiling regexes): `{"nonce", "program", "entry_point",
   "inputs", "rlimits"}`.
   Expected outputs are never sent: they stay in the trusted parent, which compares.
4. Apply the rlimits, replace stdin with /dev/null, compile and exec the program, call the
   entry point once per input, and write `nonce + {"case": i, "value": ...}` per case and
   `nonce + {"done": true}` at the end (or `nonce + {"status": ...}` for a whole-program fault).

Return values are encoded to JSON by `_encode` with exact type checks (a subclass of int, list or dict
with a lying `__eq__` is rejected). Nothing here is trusted by the parent: the program runs in
this interpreter and could forge lines, so the parent parses them as plain JSON, checks the
nonce, the case order and completeness, and does every comparison itself.
"""

import marshal
import os
import resource
import sys
from _json import encode_basestring_ascii as _quote


def _encode(x, depth=0):
    """`x` as JSON text, by exact type; anything but JSON-native data is rejected."""
    t = type(x)
    if x is None:
        return "null"
    if t is bool:
        return "true" if x else "false"
    if t is int:
        return int.__repr__(x)
    if t is float:
        return float.__repr__(x).replace("inf", "Infinity").replace("nan", "NaN")
    if t is str:
        return _quote(x)
    if depth > 100:
        raise TypeError("return value nested deeper than 100 levels")
    if t is list or t is tuple:
        return "[" + ",".join([_encode(v, depth + 1) for v in x]) + "]"
    if t is dict:
        items = []
        for k, v in dict.items(x):
            if type(k) is not str:
                raise TypeError(f"dict key of type {type(k).__name__}; only str keys are JSON")
            items.append(_quote(k) + ":" + _encode(v, depth + 1))
        return "{" + ",".join(items) + "}"
    raise TypeError(f"returned a {t.__name__}, not JSON data (None, bool, int, float, str, list, dict)")


def _describe(e):
    return f"{type(e).__name__}: {e}"[:400]


def main():
    uid, gid = int(sys.argv[1]), int(sys.argv[2])
    result_fd = os.dup(1)
    os.dup2(2, 1)  # the program's stdout now goes to the counted, capped output stream
    os.set_inheritable(result_fd, False)
    if uid >= 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # all uids non-zero: every capability is dropped
    write = os.write

    def send(obj, nonce=""):
        write(result_fd, (nonce + _encode(obj) + "\n").encode())

    send({"ready": True})
    try:
        job = marshal.load(sys.stdin.buffer)
    except (EOFError, ValueError, TypeError):
        return  # the parent went away before sending a job
    nonce = job["nonce"]
    for name, value in job["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value[0], value[1]))
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)

    try:
        code = compile(job["program"], "<candidate>", "exec")
    except MemoryError:
        return send({"status": "memory_limit", "detail": "MemoryError while compiling"}, nonce)
    except (SyntaxError, ValueError, OverflowError) as e:
        return send({"status": "syntax_error", "detail": _describe(e)}, nonce)
    namespace = {"__name__": "__candidate__", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except MemoryError:
        return send({"status": "memory_limit", "detail": "MemoryError at module level"}, nonce)
    except BaseException as e:  # SystemExit and KeyboardInterrupt included: the program ended early
        return send({"status": "runtime_error", "detail": "at module level: " + _describe(e)}, nonce)
    fn = namespace.get(job["entry_point"])
    if not callable(fn):
        return send({"status": "missing_entry_point", "detail": f"no callable {job['entry_point']!r}"}, nonce)
    for i, args in enumerate(job["inputs"]):
        try:
            raw = fn(*args)
        except MemoryError:
            send({"case": i, "error": "memory_limit", "detail": "MemoryError"}, nonce)
            continue
        except BaseException as e:
            send({"case": i, "error": "runtime_error", "detail": _describe(e)}, nonce)
            continue
        try:
            write(result_fd, (nonce + '{"case":' + str(i) + ',"value":' + _encode(raw) + "}\n").encode())
        except BaseException as e:  # not JSON data, or e.g. an int too large to print
            send({"case": i, "error": "bad_type", "detail": _describe(e)}, nonce)
    send({"done": True}, nonce)


main()
