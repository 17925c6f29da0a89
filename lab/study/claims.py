"""A study's findings: each claim of conf/study/<name>.yaml (`claims`) tested on the study's runs.

A claim names the steps whose runs it reads and its comparisons. Each comparison holds two arms, each a set of
config values ({optimizer: adam, optimizer.lr: 0.001}) that a run's results.json must show (its group choices or
its resolved config): arms are found by what the runs were, never by a job's name, and a job copied from an
identical one in another step counts once. Arm `a` is the pre-declared reference; what a comparison asserts:

- a_better: a's test accuracy above b's;       a_close: within `margin` of b's;   a_not_worse: above b's - margin
- a_slower: a's training step time over `factor` x b's;  a_similar_time: within a factor `factor` of b's (both
  measured by timing.TimeProbe, arm against arm in one process)
- a_steadier: a's per-step training loss moves less than b's from the first milestone of a's schedule on
  (the standard deviation of its step-to-step relative changes, steps.csv)

stats.py does the arithmetic; RULES holds the words under the Findings table."""
import csv
import math
from pathlib import Path

from lab.report.table import config_value, same_value
from lab.run_files import read_predictions, read_results
from lab.study.judging import ACCURACY, UNTESTABLE, judge_claim, original_passes
from lab.study.labels import arm_label
from lab.study.stats import LEVEL, compare_accuracy, compare_ratio

RULES = [
    "Each comparison pairs the two arms' runs of the same seed, scored on the same test images: one seed gives "
    "McNemar's exact test and Newcombe's paired interval; several give the per-seed difference, whose variance is "
    "the seeds' plus the test set's (per image, the difference averaged over the seeds), with Student's t at "
    "Welch-Satterthwaite's degrees of freedom.",
    f"Each sub-claim is one test with its own p-value: \"higher\" and \"steadier\" two-sided against no "
    f"difference; a margin m (\"not m lower\", \"within m\") or a time factor f by one-sided tests against the "
    f"bound (two for \"within\", the larger p: TOST). Holm's method corrects all of a claim's p-values together. "
    f"A sub-claim is supported when its corrected p is under {LEVEL} (for \"higher\" and \"steadier\": in the "
    f"claimed direction; for a margin or factor that is the 90% interval inside the bound, while the table prints "
    f"the 95% interval), contradicted when its 95% interval lies wholly on the wrong side of the bound (for "
    f"\"higher\" and \"steadier\": significant the other way), otherwise not resolved at this noise. "
    f"\"Detectable\" is the smallest true difference from none (a ratio from 1) that a two-sided test at these "
    f"seeds (or pairs) finds with 80% power.",
    "\"Original passes\" applies the same test to the original report's own numbers: its accuracies as two "
    "independent proportions on its test images, its times as the bare ratio (one run each, no spread).",
    "A loss oscillation is the spread of the step-to-step change of the log training loss (a relative change, so a "
    "lower loss does not read as steadier by being lower); oscillations are compared as ratios with a 95% interval "
    "over the seeds (log scale), so they need two or more seeds. "
    "Times are not read from the runs, which trained minutes apart while the machine's speed moved: a probe times "
    "the two arms' training steps (net, loss, backward, optimizer step on a batch of the runs' size, shape and "
    "precision) in one process, taking turns A B B A, so a drift over a pair of turns cancels in the pair's ratio; "
    "the ratio's 95% interval is over the pairs (log scale). It is the ratio on the machine named, not on the "
    "original's.",
    "A claim is contradicted when any sub-claim is, else not testable when a sub-claim lacks its runs, else "
    "supported when every sub-claim is, and otherwise not resolved at this noise; its row counts its sub-claims' "
    "verdicts, so a supported or contradicted part is never hidden. A diverged run counts as wrong on every test "
    "image (and its time is not compared).",
]


def study_runs(out: Path, steps: list[str]) -> list[dict]:
    """Every job of these steps: {step, job, run_dir, results, key}. key is the job it stands for: a job copied
    from an identical one (results.json's same_as) shares the original's key."""
    runs = []
    for step in steps:
        step_dir = out / step
        for run_dir in sorted(p for p in step_dir.iterdir() if p.is_dir()) if step_dir.is_dir() else []:
            results = read_results(run_dir)
            if results is not None:
                key = results.get("same_as") or f"{step}/{run_dir.name}"
                runs.append(dict(step=step, job=run_dir.name, run_dir=run_dir, results=results, key=key))
    return runs


def matches(results: dict, arm: dict) -> bool:
    """Every value of the arm is the run's; an arm's null (ema.decay: null) matches a key the run set to null."""
    return all(is_null(results, key) if wanted is None else same_value(config_value(results, key), wanted)
               for key, wanted in arm.items())


def is_null(results: dict, key: str) -> bool:
    *path, last = key.split(".")
    node = results.get("config") or {}
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return isinstance(node, dict) and last in node and node[last] is None


def arm_runs(runs: list[dict], steps: list[str], arm: dict, statuses=("ok", "diverged")) -> tuple[dict, str | None]:
    """({seed: run} of the runs of `steps` with one of `statuses` that match `arm`, each job once; why the arm
    cannot be used, when it matches several different jobs of one seed)."""
    found, seen = {}, set()
    for run in runs:
        record = run["results"]
        if run["step"] in steps and run["key"] not in seen and record.get("status") in statuses \
                and matches(record, arm):
            seen.add(run["key"])
            if record.get("seed") in found:
                return {}, f"arm {arm_label(arm)} matches several jobs of seed {record.get('seed')}: name it fully"
            found[record.get("seed")] = run
    return found, None


def scored(run: dict) -> tuple[list[bool], list] | None:
    """(per test image, whether the run got it right; the labels, which name the test set), or None without
    test_predictions.json. A diverged run gets none right."""
    if run["results"].get("status") == "diverged":
        n = int(run["results"].get("test_images") or 0)
        return ([False] * n, None) if n else None
    predictions = read_predictions(run["run_dir"])
    if predictions is None:
        return None
    return [p == y for p, y in zip(predictions["predicted"], predictions["label"])], predictions["label"]


def oscillation(run: dict, from_epoch: int) -> float | str:
    """Standard deviation of the step-to-step change of the log training loss (relative changes: a lower loss does
    not move less by being lower), from epoch `from_epoch` on; or why there is none."""
    try:
        with open(Path(run["run_dir"]) / "steps.csv") as f:
            losses = [float(r["train_loss"]) for r in csv.DictReader(f) if int(r["epoch"]) >= from_epoch]
    except (OSError, ValueError, KeyError):
        return "a run has no readable steps.csv (step_loss_every=null?)"
    if not all(math.isfinite(v) and v > 0 for v in losses):
        return f"a run has a loss that is not a positive number from the first milestone (epoch {from_epoch}) on"
    changes = [math.log(b / a) for a, b in zip(losses, losses[1:])]
    if len(changes) < 2:
        return f"a run has too few finite step losses from the first milestone (epoch {from_epoch}) on"
    mean = sum(changes) / len(changes)
    return math.sqrt(sum((c - mean) ** 2 for c in changes) / (len(changes) - 1))


def first_milestone(run: dict) -> int | None:
    milestones = ((run["results"].get("config") or {}).get("scheduler") or {}).get("milestones")
    return int(milestones[0]) if milestones else None


def overlapping(runs: list[dict]) -> set:
    """Keys of the jobs that trained while another job of the study did: their times are not comparable."""
    spans = {run["key"]: (run["results"].get("started_at"), run["results"].get("finished_at")) for run in runs
             if run["key"] == f"{run['step']}/{run['job']}"}  # the originals: a copy has the original's times
    spans = {k: s for k, s in spans.items() if None not in s}
    return {k for k, (start, end) in spans.items()
            if any(other != k and start < o_end and o_start < end for other, (o_start, o_end) in spans.items())}


def accuracy_pairs(a: list[dict], b: list[dict]) -> tuple[list, str | None]:
    both = [(scored(x), scored(y)) for x, y in zip(a, b)]
    if any(x is None or y is None for x, y in both):
        return [], "a run has no test_predictions.json"
    labels = [lab for pair in both for _, lab in pair if lab is not None]
    if any(len(x[0]) != len(both[0][0][0]) or len(y[0]) != len(x[0]) for x, y in both) or \
            any(lab != labels[0] for lab in labels):
        return [], "the runs were not scored on the same test images"
    return [(x[0], y[0]) for x, y in both], None


def paired_values(kind: str, a_runs: dict, b_runs: dict, probe) -> tuple[list | dict, str | None]:
    """The pairs a comparison is computed from (a time: the probe's measurement), or why there are none."""
    seeds = sorted(set(a_runs) & set(b_runs), key=str)
    if not seeds:
        return [], "no seed has a finished run of both arms"
    a, b = [a_runs[s] for s in seeds], [b_runs[s] for s in seeds]
    if kind in ACCURACY:
        return accuracy_pairs(a, b)
    if kind == "a_steadier":
        milestone = first_milestone(a[0])
        if milestone is None:
            return [], "arm a's schedule has no milestones"
        pairs = [(oscillation(x, milestone), oscillation(y, milestone)) for x, y in zip(a, b)]
        why = next((v for pair in pairs for v in pair if isinstance(v, str)), None)
        return ([], why) if why else (pairs, None)
    if probe is None:
        return [], "times are compared by a time probe, and this report has none"
    measured = probe(a[0]["results"], b[0]["results"])  # the seed changes what a step learns, not its work
    return ([], measured) if isinstance(measured, str) else (measured, None)


def measure(comparison: dict, runs: list[dict], steps: list[str], probe) -> dict:
    kind = comparison["asserts"]
    row = dict(a=arm_label(comparison["a"]), b=arm_label(comparison["b"]), asserts=kind,
               margin=comparison.get("margin"), factor=comparison.get("factor", 1.0))
    statuses = ("ok", "diverged") if kind in ACCURACY else ("ok",)  # a diverged run's time or loss says nothing
    (a_runs, why_a), (b_runs, why_b) = (arm_runs(runs, steps, comparison[arm], statuses) for arm in ("a", "b"))
    found, why = paired_values(kind, a_runs, b_runs, probe) if not (why_a or why_b) else ([], why_a or why_b)
    if why:
        return dict(row, verdict=UNTESTABLE, why=why)
    if kind in ACCURACY:
        return dict(row, **compare_accuracy(found))
    if kind == "a_steadier":
        ratio = compare_ratio(found)
        return dict(row, **ratio) if ratio else dict(row, verdict=UNTESTABLE,
                                                      why="one run per arm: a ratio needs two or more seeds")
    ratio = compare_ratio(list(zip(found["seconds_a"], found["seconds_b"])))
    if ratio is None:
        return dict(row, verdict=UNTESTABLE, why="the time probe ran one pair of turns: a ratio needs two or more")
    pairs = ratio.pop("seeds")
    return dict(row, **ratio, pairs=pairs, machine=found["machine"])


def evaluate_claim(claim: dict, runs: list[dict], probe, test_images: int | None) -> dict:
    rows = [dict(measure(c, runs, claim["steps"], probe), text=c.get("text"), original=c.get("original"),
                 margin_from=c.get("margin_from"),
                 original_passes=original_passes(c, test_images)) for c in claim["compare"]]
    verdict, counts = judge_claim(rows)
    why = "; ".join(f"{r['a']} vs {r['b']}: {r['why']}" for r in rows if r.get("why"))
    return dict(id=claim["id"], text=claim["text"], lab_report=claim.get("lab_report", ""), steps=claim["steps"],
                comparisons=rows, verdict=verdict, counts=counts, why=why)


def findings(study: dict, runs: list[dict], probe=None) -> list[dict]:
    """Every claim of the study, tested on the runs of the steps it names (`runs`: the whole study's, study_runs).
    `probe` (timing.TimeProbe) measures the time comparisons; without it they are not testable."""
    test_images = (study.get("published") or {}).get("test_images")  # the original's, for its own numbers' tests
    return [evaluate_claim(claim, runs, probe, test_images) for claim in study.get("claims") or []]
