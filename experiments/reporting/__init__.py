"""Reports of finished runs: the summary CSV, the paper's tables, RESULTS.md and the plots."""
