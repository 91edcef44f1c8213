"""Memory of a process and its descendants, read from /proc (Linux), for tests and benchmarks."""
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:  # the thread or process ended meanwhile
                continue
    return out


def status_bytes(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``: the peak resident set) in bytes; 0 if gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def tree_bytes(pid: int, field: str) -> int:
    """``field`` summed over ``pid`` and its descendants (for VmHWM: each one's peak, an upper bound)."""
    return sum(status_bytes(p, field) for p in descendants(pid))
