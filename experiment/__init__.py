"""``lmcot experiment``: the paper's three analyses (methods, RL ablation, rationale quality) on one
dev set with one large LM, and ``lmcot report``: the report rendered from ``OUT/results.json``.

    grid.py      which method rows and students a config asks for
    steps.py     resumable steps: one result file per step, keyed on its inputs
    students.py  the untrained / KD / KD+RL students, trained by the compiler's stages
    run.py       runs the grid, writes results.json (each row's cost metered by lmcot.usage)
    quality.py   rationale-quality analysis: pick by quality vs random vs vote; thresholds
    stats.py     bootstrap intervals, paired bootstrap, exact McNemar
    tables.py    every number of the report, computed from results.json alone
    plots.py     the figures (matplotlib, Agg)
    report.py    report.md and a self-contained report.html

Only ``run.py`` (and what it imports) loads DSPy and the models; ``report.py`` needs results.json,
numpy and matplotlib.
"""
