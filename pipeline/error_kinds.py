"""The kind of an error record: a few words that group its reasons ("not found", "corrupt", ...).

An error record keeps its whole reason (``records.error_record``); a job counts its errors by kind, so
its final state can say what went wrong most ("1,000 not found") and stop early when its first records
all fail the same way. The kinds are read from the reasons the data path writes (storage, access check,
decoder, labeller), in this one place, so a new reason needs one new line here and nothing else.
"""
import re

OTHER = "other"

# (pattern, kind), tried in order on the reason's text; anchored where the reason starts with a fixed
# phrase, so a file named "permission denied.jpg" does not change its kind.
_KINDS = [(re.compile(pattern), kind) for pattern, kind in (
    (r"no such file: ", "not found"),
    (r"cannot read oss://.*: 404 ", "not found"),
    (r"permission denied: ", "access denied"),
    (r"cannot read oss://.*: 403 ", "access denied"),
    (r"bucket \S+ is not allowed|.* is outside the folders workers may use", "not allowed"),
    (r"URI of \d+ bytes", "URI too long"),
    (r"cannot read oss://", "unreadable"),
    (r"OSS still failing|storage temporarily unavailable", "storage failing"),
    (r"(file|image) too large", "too large"),
    (r"empty file$", "empty file"),
    (r"not an image", "not an image"),
    (r"unsupported image", "unsupported image"),
    (r"truncated ", "truncated"),
    (r"corrupt ", "corrupt"),
    (r"is a directory|not a regular file", "not a file"),
    (r".* was replaced (by a link )?while it was being opened", "changed while read"),
    (r"cannot process image", "cannot process"),
    (r"not a URI", "not a URI"),
)]


def kind_of(error: str) -> str:
    """The kind of an error record's reason; ``other`` for one this module does not know."""
    return next((kind for pattern, kind in _KINDS if pattern.match(error)), OTHER)
