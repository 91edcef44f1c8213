"""Counted nouns in what the CLI and the reports print: "1 shard", "2 shards", never "1 shard(s)"."""


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the form that agrees with it: ``count(1, "drain")`` is "1 drain",
    ``count(0, "takeover")`` "0 takeovers", ``count(1500, "image")`` "1,500 images";
    ``plural`` for a noun that does not just take an s."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
