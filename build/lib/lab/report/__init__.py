"""lab.report: tables and figures for finished sweeps and runs (python -m lab.report DIR ... --out OUT).

table.py reads the run dirs into one row per job and groups seeds; markdown.py writes summary.md from those
tables; figures.py (with curves.py and figure_parts.py) draws the figures; write.py runs them all and holds
the command line. Each module imports from table.py, never from the one that calls it."""
from lab.report.write import main, write_report

__all__ = ["main", "write_report"]
