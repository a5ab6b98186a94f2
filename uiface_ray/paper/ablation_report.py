"""The ablation's report: Table 2 with our numbers, image grids, d_t curves, Figure 2, histograms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uiface_ray import storage
from uiface_ray.paper.ablation import AblationResult
from uiface_ray.evaluate.plots import bar_plot, histogram_plot, image_grid, line_plot
from uiface_ray.evaluate.report import Report
from uiface_ray.paper.config import AblationConfig
from uiface_ray.sample.config import SamplerMode

TABLE2_NAMES: dict[SamplerMode, str] = {
    "baseline": "baseline",
    "two_stage_fixed": "baseline + 2-stage-fixed",
    "two_stage_adaptive": "baseline + 2-stage-adaptive",
    "attention_injection": "baseline + attn",
    "uiface": "baseline + 2-stage-adaptive + attn",
}
COLUMNS = (
    "Method",
    "Diversity (1-MS-SSIM)",
    "FR-emb. precision",
    "FR-emb. recall",
    "Genuine",
    "Impostor",
    "d'",
    "verification acc. (%)",
    "+- 10-fold",
    "+- seeds",
    "mean t0",
    "UNet evals/image",
    "FR steps",
    "FR loss first->last",
)


def _fixed(value: float | None, digits: int, scale: float = 1.0) -> str | None:
    """A cell with ``digits`` decimals (the page's default is 4, too many for points and step counts)."""
    return None if value is None else f"{scale * value:.{digits}f}"


def _row(r) -> list:
    m = r.metrics
    loss = f"{r.fr_loss[0]:.2f}->{r.fr_loss[1]:.2f}" if r.fr_loss else None
    return [
        TABLE2_NAMES.get(r.name, r.name),
        m.diversity_1_minus_msssim,
        m.fr_precision,
        m.fr_recall,
        m.genuine_mean,
        m.impostor_mean,
        m.d_prime,
        _fixed(r.verify_accuracy, 1, 100),
        _fixed(r.verify_std, 1, 100),
        _fixed(r.seed_std, 1, 100),
        _fixed(r.mean_t0, 0),
        _fixed(r.unet_evals_per_image, 1),
        r.fr_steps,
        loss,
    ]


def _upscale(grid: np.ndarray, min_side: int = 64) -> np.ndarray:
    h = grid.shape[2]
    if h >= min_side:
        return grid
    f = int(np.ceil(min_side / h))
    return grid.repeat(f, axis=2).repeat(f, axis=3)  # nearest-neighbour, (rows, cols, h*f, w*f, 3)


def fr_recipe(fr) -> str:
    """One line naming the FR training recipe of every row."""
    size = f"{fr.input_size} px" if fr.input_size else "the data's size"
    budget = (
        f"{fr.epochs} epochs"
        + (f", at most {fr.max_steps} steps" if fr.max_steps else "")
        + (f", at most {fr.max_minutes} min" if fr.max_minutes else "")
    )
    return (
        f"FR: IR-{fr.depth} (width x{fr.width}, input {size}) + {'CosFace' if fr.head == 'cosface' else 'ArcFace'} "
        f"s={fr.head_s} m={fr.head_m}, lr {fr.lr} {fr.lr_schedule}, EMA {fr.ema_decay or 'off'}, budget {budget}"
    )


def _difference_se(a, b, n_seeds: int) -> float:
    """Standard error of the difference of two rows' mean accuracies over ``n_seeds`` FR seeds each."""
    return float(np.sqrt((a.seed_std**2 + b.seed_std**2) / n_seeds))


def seed_paragraph(rows: list, n_seeds: int) -> str:
    """Each row's accuracy per FR seed, and whether each row differs from the baseline by more than the
    seed-to-seed spread (the difference of the means against twice its standard error)."""
    parts = [
        f"Verification accuracy is the mean over {n_seeds} FR models per row (seeds {', '.join(map(str, range(n_seeds)))}"
        " added to the job seed); '+- seeds' is their standard deviation, '+- 10-fold' the mean 10-fold spread."
    ]
    for r in rows:
        parts.append(f"{TABLE2_NAMES.get(r.name, r.name)}: {', '.join(f'{100 * a:.1f}' for a in r.seed_accuracies)}.")
    base = next((r for r in rows if r.name == "baseline" and r.seed_std is not None), None)
    if base is not None:
        for r in rows:
            if r is base or r.seed_std is None:
                continue
            diff = r.verify_accuracy - base.verify_accuracy
            se = _difference_se(r, base, n_seeds)
            verdict = "exceeds" if abs(diff) > 2 * se else "does not exceed"
            parts.append(
                f"{TABLE2_NAMES.get(r.name, r.name)} vs baseline: {100 * diff:+.1f} points, which {verdict} twice "
                f"the standard error of the difference ({100 * 2 * se:.1f} points)."
            )
    return " ".join(parts)


# The paper's Table 2 orderings (better, worse): accuracy, LPIPS and ImRecall all rise along each pair.
PAPER_ORDER: tuple[tuple[SamplerMode, SamplerMode], ...] = (
    ("two_stage_fixed", "baseline"),
    ("two_stage_adaptive", "two_stage_fixed"),
    ("attention_injection", "baseline"),
    ("uiface", "two_stage_adaptive"),
    ("uiface", "attention_injection"),
)
# Our stand-ins for the paper's columns: (Row attribute or metric, what the paper reports).
DIRECTION_MEASURES = (
    ("verify_accuracy", "verification accuracy"),
    ("diversity_1_minus_msssim", "diversity (1-MS-SSIM, for LPIPS)"),
    ("fr_recall", "recall (FR embeddings, for ImRecall)"),
)


@dataclass(frozen=True)
class Direction:
    """One of the paper's claims checked on our rows: ``better`` scores above ``worse`` on ``measure``."""

    measure: str
    better: str
    worse: str
    difference: float  # better - worse (accuracy in points)
    holds: bool
    beyond_seed_spread: bool | None = None  # accuracy only, with more than one FR seed


def _measure(row, attr: str) -> float | None:
    value = getattr(row, attr) if hasattr(row, attr) else getattr(row.metrics, attr, None)
    return None if value is None else float(value)


def paper_directions(rows: list, n_seeds: int) -> list[Direction]:
    """The paper's Table 2 orderings (and Figure 5's: UIFace raises the genuine similarity over the
    baseline), each checked on our rows; accuracy differences also against twice their standard error."""
    by_name = {r.name: r for r in rows}
    checks = [(attr, label, b, w) for attr, label in DIRECTION_MEASURES for b, w in PAPER_ORDER]
    checks.append(("genuine_mean", "genuine similarity (Figure 5)", "uiface", "baseline"))
    out = []
    for attr, label, b, w in checks:
        if b not in by_name or w not in by_name:
            continue
        hi, lo = _measure(by_name[b], attr), _measure(by_name[w], attr)
        if hi is None or lo is None:
            continue
        scale = 100.0 if attr == "verify_accuracy" else 1.0
        beyond = None
        rb, rw = by_name[b], by_name[w]
        if attr == "verify_accuracy" and n_seeds > 1 and rb.seed_std is not None and rw.seed_std is not None:
            beyond = abs(hi - lo) > 2 * _difference_se(rb, rw, n_seeds)
        out.append(
            Direction(
                measure=label, better=b, worse=w, difference=scale * (hi - lo), holds=hi > lo, beyond_seed_spread=beyond
            )
        )
    return out


def directions_paragraph(directions: list[Direction]) -> str:
    """Which of the paper's directions hold at our scale, one sentence each."""
    if not directions:
        return ""
    held = sum(d.holds for d in directions)
    parts = [f"The paper's directions at our scale: {held} of {len(directions)} hold."]
    for d in directions:
        unit = " points" if d.measure == "verification accuracy" else ""
        spread = ""
        if d.beyond_seed_spread is not None:
            spread = ", beyond the seed spread" if d.beyond_seed_spread else ", within the seed spread"
        parts.append(
            f"{d.measure}: {TABLE2_NAMES.get(d.better, d.better)} above {TABLE2_NAMES.get(d.worse, d.worse)} "
            f"{'holds' if d.holds else 'does not hold'} ({d.difference:+.{1 if unit else 4}f}{unit}{spread})."
        )
    return " ".join(parts)


def _introduction(rep: Report, cfg: AblationConfig, res: AblationResult) -> None:
    """What was sampled and trained, at which resolution, and which of the paper's columns we replace."""
    enc = res.rows[0].metrics.encoder if res.rows else "-"
    rep.paragraph(
        f"Generator {cfg.model}; {cfg.num_identities} identities x {cfg.images_per_identity} images per "
        f"mode, same identities and seeds in every mode (job seed {cfg.seed}). {fr_recipe(cfg.fr)}, "
        f"verified by 10-fold accuracy on {res.verify_name}. Metrics use the FR encoder {enc}."
    )
    if res.real_resolution:
        s = res.real_resolution
        rep.paragraph(
            f"Real faces (the real row, the precision/recall reference and the verification images) were "
            f"reduced to {s}x{s}, the generator's resolution, before use, so every row is trained and "
            f"scored on images of the same detail."
        )
    rep.paragraph(
        "The paper's LPIPS and ImRecall columns need ImageNet VGG and Inception weights that are not "
        "available here; this table reports 1 - MS-SSIM for diversity and improved precision/recall "
        "in the FR embedding space instead, named as such. The paper's five benchmarks are replaced "
        f"by {res.verify_name} (people no row was trained on)."
    )


def _table2(rep: Report, cfg: AblationConfig, res: AblationResult) -> None:
    """Table 2 with our numbers, the seed spread and which of the paper's directions hold."""
    rep.heading("Table 2 (our numbers)")
    rep.table(COLUMNS, [_row(r) for r in res.rows])
    if cfg.fr_seeds > 1:
        rep.paragraph(seed_paragraph(res.rows, cfg.fr_seeds))
    directions = directions_paragraph(paper_directions(res.rows, cfg.fr_seeds))
    if directions:
        rep.paragraph(directions)


def _samples(rep: Report, cfg: AblationConfig, res: AblationResult) -> None:
    """Each mode's image grid and the d_t curves (Figure 7 left)."""
    rep.heading("Samples per mode (rows: identities, columns: seeds; the same in every mode)")
    for mode, grid in res.grids.items():
        rep.image(f"grid_{mode}.png", image_grid(_upscale(grid)), TABLE2_NAMES.get(mode, mode))
    curves = {m: v for m, v in res.d_t.items() if v[0]}
    if curves:
        rep.heading("d_t: mean change of the c_e cross-attention map (Figure 7 left)")
        rep.image(
            "d_t.png",
            line_plot(curves, "d_t over timesteps", "timestep t", "mean d_t"),
            f"threshold {cfg.sampler.threshold}; NaN steps (not computed) omitted",
        )


def _figure2(rep: Report, res: AblationResult) -> None:
    """The intra-class similarity per identity interval, as a bar plot and a table."""
    if not res.intervals:
        return
    rep.heading("Identity used only in a timestep interval (Figure 2)")
    labels = [f"[{p.interval[0]},{p.interval[1]})" for p in res.intervals]
    rep.image(
        "figure2.png",
        bar_plot(
            labels,
            [p.intra_class_similarity for p in res.intervals],
            "intra-class similarity vs identity interval",
            "mean cosine",
        ),
    )
    rep.table(
        ("interval", "intra-class similarity", "std"),
        [[lab, p.intra_class_similarity, p.std] for lab, p in zip(labels, res.intervals)],
    )


def _histograms(rep: Report, res: AblationResult) -> None:
    """Each row's genuine and impostor similarity histogram (Figure 5)."""
    rep.heading("Genuine and impostor similarity (Figure 5)")
    for r in res.rows:
        name = "".join(c if c.isalnum() else "_" for c in r.name)
        rep.image(
            f"genuine_impostor_{name}.png",
            histogram_plot(
                {"genuine": r.genuine, "impostor": r.impostor}, TABLE2_NAMES.get(r.name, r.name), "cosine similarity"
            ),
        )


def build_report(cfg: AblationConfig, res: AblationResult) -> Report:
    """The ablation's page: introduction, Table 2, samples and d_t, Figure 2, Figure 5's histograms."""
    rep = Report("UIFace ablation (Table 2 at our scale)")
    _introduction(rep, cfg, res)
    _table2(rep, cfg, res)
    _samples(rep, cfg, res)
    _figure2(rep, res)
    _histograms(rep, res)
    return rep


def write_report(cfg: AblationConfig, res: AblationResult) -> str:
    return build_report(cfg, res).write(storage.join(cfg.out, "report"), cfg.storage)


__all__ = ["build_report", "seed_paragraph", "write_report"]
