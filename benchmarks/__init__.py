"""Performance and quality benchmarks (`vidclip bench ...`).  Each writes its JSON result beside
its code in this folder; corpus generates and caches their input videos."""
