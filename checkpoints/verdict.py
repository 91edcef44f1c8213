"""What a job's error records say about how it ends: the share rule and the early stop, and the
reason either gives (what `visionfleet status` shows and the summary keeps).

A bad input never fails its batch or its shard: it gets its error record and the run goes on. Only
the job's end looks at them all: a job whose share of error records is over its ``max_error_rate``
fails, and one whose first ``EARLY_STOP_RECORDS`` committed records are all errors of one kind (a
wrong folder, a missing mount, a key without rights) stops there instead of labelling the rest as
the same error. A rate of 1 accepts any share, and turns the early stop off.
"""
from visionfleet.checkpoints.job_book import ErrorKind, Progress
from visionfleet.pipeline.words import count

EARLY_STOP_RECORDS = 1000
EXAMPLE_CHARS = 300  # of one kind's example reason in a state's reason: a URI may be 4 KB
_KINDS_SHOWN = 3
# What to check first, for the kinds whose cause is usually the job's setting rather than the inputs.
_HINTS = {"not found": "are the paths right, and the storage mounted where the workers run?",
          "access denied": "may the workers' user or OSS key read them?",
          "not allowed": "see VISIONFLEET_LOCAL_ROOTS and VISIONFLEET_OSS_BUCKETS on the workers"}


def by_count(kinds: dict[str, ErrorKind]) -> list[tuple[str, ErrorKind]]:
    """The kinds, most records first (then by name: the same order on every reader)."""
    return sorted(kinds.items(), key=lambda item: (-item[1].count, item[0]))


def too_many_errors(progress: Progress, kinds: dict[str, ErrorKind], max_rate: float) -> str | None:
    """The reason a job whose every shard has ended fails for its errors; None if their share is allowed."""
    if not progress.done or progress.errors / progress.done <= max_rate:
        return None
    return (f"{progress.errors} of {progress.done} records are errors ({progress.errors / progress.done:.0%}, "
            f"over the job's --max-error-rate of {max_rate:.0%}); most common: {kinds_line(progress, kinds)}. "
            "Every record is kept (_SUMMARY.json lists the parts); fix the inputs and run the job again, or allow "
            "more with --max-error-rate")


def may_stop_early(progress: Progress, max_rate: float) -> bool:
    """Whether the job's committed records so far could stop it early (then ``stopped_early`` decides by
    their kinds). ``ok`` only grows, so none yet with ``EARLY_STOP_RECORDS`` committed means the first
    that many, in commit order, were all errors. A job whose inputs are all committed ends by the share
    rule instead: there is nothing left to stop."""
    nothing_left = progress.planned and progress.done >= progress.total
    return max_rate < 1 and progress.ok == 0 and progress.done >= EARLY_STOP_RECORDS and not nothing_left


def stopped_early(progress: Progress, kinds: dict[str, ErrorKind], max_rate: float, resume: str,
                  again: str) -> str | None:
    """The reason a job that ``may_stop_early`` stops, if its errors are all of one kind; else None.
    ``resume``: the command that labels the rest once the cause is fixed. Its error records stay, so a
    job they already put over ``max_rate`` would fail again at its end: that one is run ``again`` instead."""
    if len(kinds) != 1:
        return None
    (kind, found), = kinds.items()
    hint = f" ({_HINTS[kind]})" if kind in _HINTS else ""
    total = f"{progress.total}{'' if progress.planned else '+'}"
    head = (f"stopped early: the first {progress.done} records committed are all errors of one kind, "
            f"{kind}, e.g. {_short(found.example)}; {unlabelled(progress)} of {total} inputs left unlabelled. "
            f"Fix the cause{hint}, then ")
    if progress.planned and progress.errors > max_rate * progress.total:
        return (head + f"run the job again with its options (`{again} ...`): its {progress.errors} error records "
                f"are over its --max-error-rate of {max_rate:.0%} already, so a resume would fail at its end")
    return head + f"`{resume}` labels them"


def unlabelled(progress: Progress) -> int:
    """Inputs with no committed record (of those listed so far, while the job is still being planned)."""
    return max(progress.total - progress.done, 0)


def kinds_line(progress: Progress, kinds: dict[str, ErrorKind]) -> str:
    """``not found 290 (e.g. no such file: /x.jpg), corrupt 10``: the commonest kinds, the first with its example.

    Errors no kind counted (committed before the store was rebuilt from the durable copies) show as
    ``kind not recorded``."""
    shown = by_count(kinds)[:_KINDS_SHOWN]
    parts = [f"{kind} {e.count}" + (f" (e.g. {_short(e.example)})" if i == 0 else "")
             for i, (kind, e) in enumerate(shown)]
    if len(kinds) > _KINDS_SHOWN:
        parts.append(count(len(kinds) - _KINDS_SHOWN, "other kind"))
    uncounted = progress.errors - sum(e.count for e in kinds.values())
    if uncounted > 0:
        parts.append(f"kind not recorded {uncounted}")
    return ", ".join(parts)


def _short(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "..."
