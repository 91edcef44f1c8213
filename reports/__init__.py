"""Reports on finished runs: what a new run changed (diff) and what a run took and cost (report)."""
