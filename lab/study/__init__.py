"""lab.study: a study is an ordered set of lab.train steps (conf/study/NAME.yaml) and one report over them
(python -m lab.study). plan.py composes the study and each step's command, run.py runs the steps and shows
progress, main.py holds the command line; lab/report/study.py and markdown.py write REPORT.md."""
