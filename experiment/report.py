"""``OUT/report.md`` and a self-contained ``OUT/report.html`` (figures embedded as base64 PNG),
rendered from ``OUT/results.json`` alone: ``lmcot report OUT`` redraws everything with no LM call.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from lmcot.experiment.plots import draw_all
from lmcot.experiment.tables import Table, build_tables, summary
from lmcot.jsonl import atomic_write_text, write_json

CAPTIONS = {"em_f1.png": "EM / F1 per method (95% bootstrap CI)", "aspects_rl.png": "Aspects before / after RL",
            "quality_threshold.png": "Accuracy vs rationale-quality threshold",
            "cost_accuracy.png": "Cost per correct answer vs accuracy"}


def _caption(png: Path) -> str:
    if png.name in CAPTIONS:
        return CAPTIONS[png.name]
    if png.name == "training_kd.png":
        return "Training curve: KD loss per step"
    from lmcot.experiment.tables import STUDENT_LABELS

    student = png.stem.removeprefix("training_")
    return f"Training curves: RL of the {STUDENT_LABELS.get(student, student)} student (loss, mean reward per step)"


def _md_table(t: Table) -> str:
    lines = [f"### {t.title}", "", "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines) + "\n"


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    note = f"<p class='note'>{html.escape(t.note)}</p>" if t.note else ""
    return f"<h3>{html.escape(t.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _intro(results: dict[str, Any]) -> list[str]:
    cfg = results["config"]
    lines = [f"Dev set: `{results['dev']['source']}` ({results['dev']['dataset']}, n={results['dev']['n']}). "
             f"Large LM: `{results['large_lm']}`. Small LM: `{results['small_lm']}`. "
             f"k = {cfg['experiment']['num_samples']} samples at temperature {cfg['experiment']['sample_temperature']}."]
    form = (cfg.get("kd") or {}).get("rationale_form", "full")
    extra = [f for f in cfg["experiment"].get("rationale_forms") or [] if f != form]
    if form != "full" or extra:
        lines.append(f"Rationale form of the students (kd.rationale_form): {form}"
                     + (f"; rows marked '{', '.join(extra)} form' use that form instead." if extra else ".")
                     + " evidence: reasoning and evidence, no final answer; full: the teacher's form, ending in an answer.")
    # The config says when its models are stand-ins (lmcot does not guess from model names).
    note = cfg["experiment"].get("stand_in_note")
    if note:
        lines.append(f"**Stand-in models**: {note}")
    return lines


def render(out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.html, plots/*.png and tables.json from ``out_dir/results.json``."""
    out = Path(out_dir)
    src = out / "results.json"
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no results here (run `lmcot experiment --out {out}` first)")
    from lmcot.errors import UserError

    try:
        results = json.loads(src.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{src}: not valid JSON ({exc}); rerun `lmcot experiment` to write it again") from None
    if not isinstance(results, dict) or results.get("format") != "lmcot-experiment/1":
        raise UserError(f"{src}: not an lmcot experiment results file (format "
                        f"{results.get('format') if isinstance(results, dict) else None!r})")
    s = summary(results)
    tables = build_tables(results, s)
    pngs = draw_all(s, out / "plots")

    md = ["# LM-guided CoT experiment", "", *_intro(results), ""]
    md += [_md_table(t) for t in tables]
    md += ["## Figures", ""] + [f"![{_caption(p)}](plots/{p.name})\n" for p in pngs]
    atomic_write_text(out / "report.md", "\n".join(md))

    figs = "".join(
        f"<figure><img alt='{html.escape(_caption(p))}' src='data:image/png;base64,"
        f"{base64.b64encode(p.read_bytes()).decode()}'><figcaption>{html.escape(_caption(p))}</figcaption></figure>"
        for p in pngs)
    intro = "".join(f"<p>{html.escape(line).replace('**', '')}</p>" for line in _intro(results))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;"
             "margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:12px}img{max-width:100%}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>lmcot experiment</title><style>{style}</style>"
            f"</head><body><h1>LM-guided CoT experiment</h1>{intro}{''.join(_html_table(t) for t in tables)}"
            f"<h2>Figures</h2>{figs}</body></html>\n")
    atomic_write_text(out / "report.html", page)
    write_json(out / "tables.json", {t.key: {"title": t.title, "columns": t.columns, "rows": t.rows} for t in tables})
    return {"md": out / "report.md", "html": out / "report.html", "plots": out / "plots"}
