"""The store's Lua scripts, read once from the ``.lua`` files beside this module (installed as package data)."""
from importlib.resources import files


def _read(name: str) -> str:
    return files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


# Script name -> source. The commit carries the run ledger's part (usage.lua) in front of it:
# one script, so the ledger counts exactly the commits that went through.
SCRIPTS = {name: _read(name) for name in ("acquire", "fail_shard", "reopen", "release", "note", "beat", "forget",
                                          "claim_orphan", "settle_orphan")}
SCRIPTS["commit"] = _read("usage") + _read("commit")
