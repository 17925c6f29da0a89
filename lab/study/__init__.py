"""lab.study: a study is an ordered set of lab.train steps (conf/study/NAME.yaml) and one report over them
(python -m lab.study). plan.py composes the study, each step's command and its jobs, run.py runs the steps and
shows progress, main.py holds the command line; claims.py and stats.py test the study's claims, and report.py,
markdown.py and figures.py write REPORT.md."""
