"""The Findings table's rows: a row per claim that counts its sub-claims' verdicts, then a row per sub-claim with
its own difference, corrected p, detectable effect, verdict and (with an original report) whether the original's
own numbers pass the same test."""
from lab.study.judging import ACCURACY, CONTRADICTED, SUPPORTED, UNRESOLVED, UNTESTABLE
from lab.study.stats import MAX_SEEDS, seeds_needed


def claimed(row: dict) -> str:
    """What the comparison asserts of a against b, in the words of the Findings table."""
    margin, factor = 100 * (row.get("margin") or 0), row.get("factor") or 1.0
    return {"a_better": "higher", "a_close": f"within {margin:g} pts", "a_not_worse": f"not {margin:g} pts lower",
            "a_slower": f"time over x{factor:g}", "a_similar_time": f"time within x{factor:g}",
            "a_steadier": "steadier loss"}[row["asserts"]]


def difference(row: dict) -> str:
    """The measured difference with its 95% interval and what it rests on (seeds, or the time probe's pairs)."""
    if "estimate" not in row:
        return row.get("why", "")
    if row["asserts"] in ACCURACY:
        text = f"{100 * row['estimate']:+.1f} pts [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]"
    else:
        what = "loss oscillation" if row["asserts"] == "a_steadier" else "step time"
        text = f"{what} x{row['estimate']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"
    if "pairs" in row:
        return f"{text}, {row['pairs']} alternating pairs on {row['machine']}"
    return f"{text}, {row.get('seeds', 1)} seed{'s' if row.get('seeds', 1) > 1 else ''}"


def detectable(row: dict) -> str:
    if "detectable" not in row:
        return "-"
    effect = row["detectable"]
    return f"{100 * effect:.1f} pts" if row["asserts"] in ACCURACY else f"x{effect:.2f}"


def original_numbers(row: dict) -> str:
    numbers = row.get("original") or {}
    if numbers.get("a") is None or numbers.get("b") is None:
        return "-"
    if row["asserts"] in ("a_slower", "a_similar_time"):
        return f"{numbers['a']:g} s vs {numbers['b']:g} s (x{numbers['a'] / numbers['b']:.2f})"
    return f"{numbers['a']:.4f} vs {numbers['b']:.4f}"


def verdict_counts(counts: dict) -> str:
    words = {SUPPORTED: "supported", CONTRADICTED: "contradicted", UNRESOLVED: "not resolved",
             UNTESTABLE: "not testable"}
    return ", ".join(f"{n} {words[v]}" for v, n in counts.items() if n)


def header(published: bool) -> list[str]:
    return (["claim", "sub-claim"] + (["the original"] if published else [])
            + ["lab: difference [95% interval]", "p (Holm)", "detectable"]
            + (["original's numbers pass"] if published else []) + ["verdict"])


def claim_rows(claim: dict, published: bool, synthetic: set) -> list[list[str]]:
    """The claim's row, then one row per sub-claim (ids 1a, 1b, ...). `synthetic`: the steps on drawn images."""
    width = len(header(published))
    verdict = f"**{claim['verdict']}** ({verdict_counts(claim['counts'])})"
    drawn = [s for s in claim["steps"] if s in synthetic]
    text = f"**{claim['text']}**" + (f" (tested on synthetic images: {', '.join(drawn)})" if drawn else "")
    head = [f"**{claim['id']}**", text] + ([claim.get("lab_report") or "-"] if published else [])
    rows = [head + [""] * (width - len(head) - 1) + [verdict]]
    for index, row in enumerate(claim["comparisons"]):
        passes = {True: "yes", False: "no", None: "-"}[row.get("original_passes")]
        text = row.get("text") or f"{row['a']} vs {row['b']} ({claimed(row)}?)"
        if row.get("margin_from"):  # where the bound comes from, or why a direction is all that is tested
            text += f"; {'direction only' if row['asserts'] == 'a_better' else 'bound'}: {row['margin_from']}"
        cells = [f"{claim['id']}{chr(ord('a') + index)}", text] + ([original_numbers(row)] if published else [])
        cells += [difference(row), f"{row['p_holm']:.2g}" if "p_holm" in row else "-", detectable(row)]
        rows.append(cells + ([passes] if published else []) + [row["verdict"]])
    return rows


def findings_table(findings: list[dict], published: bool, synthetic: set = frozenset()) -> list[str]:
    names = header(published)
    lines = ["| " + " | ".join(names) + " |", "|---" * len(names) + "|"]
    for claim in findings:
        for cells in claim_rows(claim, published, synthetic):
            lines.append("| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return lines


def seeds_lines(findings: list[dict]) -> list[str]:
    """For each "higher?" sub-claim with the original's numbers: the seeds its test would need to detect the
    original's own difference, scaled from this run's standard error (this run as the pilot of the next)."""
    rows = []
    for claim in findings:
        for index, row in enumerate(claim["comparisons"]):
            numbers = row.get("original") or {}
            if row["asserts"] != "a_better" or "se" not in row or numbers.get("a") is None:
                continue
            effect = abs(numbers["a"] - numbers["b"])
            needed = seeds_needed(row["one_seed_var"], row["test_var"], row["n"], effect) if row["seeds"] > 1 \
                else None
            enough = "a pilot of one seed cannot tell (no seed spread)" if row["seeds"] < 2 else \
                f"> {MAX_SEEDS}" if needed is None else str(needed)
            rows.append(f"| {claim['id']}{chr(ord('a') + index)} | {100 * effect:.1f} pts | "
                        f"{100 * row['detectable']:.1f} pts at {row['seeds']} seed{'s' if row['seeds'] > 1 else ''} | "
                        f"{enough} |")
    if not rows:
        return []
    return ["### Seeds for the original's effects", "",
            "Each \"higher?\" sub-claim's smallest detectable effect (80% power, two-sided 5%) against the difference "
            "the original reports, and the seeds that would bring the first down to the second, scaled from these "
            "runs' standard error (these runs as the pilot of the next plan).", "",
            "| sub-claim | the original's difference | detectable here | seeds needed |",
            "|---|---|---|---|"] + rows + [""]
