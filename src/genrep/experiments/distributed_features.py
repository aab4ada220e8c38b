"""Feature metrics over the W processes of a Fabric (`genrep evaluate --devices W`).

Every rank holds both image sets and extracts the features of its block of whole extractor batches
(`batch_blocks`), so every image meets the network in the batch it meets in one process. FID comes
from the float64 sums Σx, Σxxᵀ, n of every rank's rows, summed over the ranks (`genrep.metrics.FID`
states, torchmetrics' sync); the other feature metrics get the full feature matrices, gathered in
row order. Equal to one process: FID to float64 round-off, the others exactly (same threads per process).
"""

from __future__ import annotations

import torch

from genrep.errors import ConfigError, InputError
from genrep.experiments.evaluate import FEATURE_BATCH, _feature_kinds, _feature_metrics


def batch_blocks(n_rows: int, world_size: int, batch_size: int = FEATURE_BATCH) -> list[range]:
    """Rows 0..n_rows−1 cut into B = ⌈n_rows / batch_size⌉ batches, dealt as contiguous blocks of
    whole batches: with q, m = divmod(B, W), rank r gets batches [r·q + min(r, m), (r+1)·q + min(r+1, m)).
    Returns the W row ranges in rank order (their concatenation is 0..n_rows−1; empty when r ≥ B)."""
    if n_rows < 0 or world_size < 1 or batch_size < 1:
        raise InputError(f"batch_blocks needs n_rows >= 0, world_size >= 1 and batch_size >= 1, got {n_rows}, "
                         f"{world_size}, {batch_size}")
    q, m = divmod(-(-n_rows // batch_size), world_size)
    edges = [min((r * q + min(r, m)) * batch_size, n_rows) for r in range(world_size + 1)]
    return [range(edges[r], edges[r + 1]) for r in range(world_size)]


def _block_features(extractor, images: torch.Tensor, rows: range, kinds: tuple[str, ...], *,
                    progress: bool) -> dict[str, torch.Tensor]:
    """The extractor outputs `kinds` of images[rows] in batches of FEATURE_BATCH (`rows` starts on a
    batch edge); an empty block gives 0×D tensors (D read off one image)."""
    if not len(rows):
        probe = extractor.features(images[:1], batch_size=1, progress=False, kind=kinds)
        return {k: v[:0] for k, v in probe.items()}
    return extractor.features(images[rows.start:rows.stop], batch_size=FEATURE_BATCH, progress=progress, kind=kinds)


def _on_every_rank(fabric, work, what: str):
    """`work()` on this rank; when it raises on any rank, every rank raises (its own error, or a
    ConfigError naming the ranks that failed), so that none waits in a later collective."""
    error = None
    try:
        result = work()
    except Exception as err:  # re-raised below, once every rank knows
        error = err
    failed = _all_gather(fabric, torch.tensor([0.0 if error is None else 1.0])).flatten().tolist()
    if error is not None:
        raise error
    if any(failed):
        ranks = ", ".join(str(r) for r, f in enumerate(failed) if f)
        raise ConfigError(f"{what} failed on rank {ranks}; see the error message of that rank")
    return result


def _all_gather(fabric, tensor: torch.Tensor) -> torch.Tensor:
    """`fabric.all_gather(tensor)` (W × …, on fabric.device) without torch's deprecation warning
    about the function Lightning calls, which says nothing to a user of genrep."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*all_gather is deprecated")
        return fabric.all_gather(tensor)


def _gather_rows(fabric, rows: torch.Tensor, blocks: list[range]) -> torch.Tensor:
    """Every rank's `rows` (rank r holds the rows of blocks[r]) stacked in rank order = row order:
    padded to the largest block, all_gather (W × L × D), each rank's part trimmed to its block."""
    padded = rows.new_zeros((max(map(len, blocks)), *rows.shape[1:]))
    padded[: len(rows)] = rows
    gathered = _all_gather(fabric, padded).cpu()
    return torch.cat([gathered[r, : len(block)] for r, block in enumerate(blocks)])


def _merged_fid(fabric, real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID of every rank's rows together: `genrep.metrics.FID` states (float64 Σx, Σxxᵀ, n per set)
    of this rank's rows, summed over the ranks by torchmetrics' sync in `compute()`."""
    from genrep.metrics import FID

    metric = FID(real.shape[1]).to(fabric.device)
    for which, rows in (("real", real), ("fake", fake)):
        if len(rows):
            metric.update(**{which: rows.to(fabric.device)})
    return metric.compute()


def distributed_feature_metrics(fabric, metrics: list[str], extractor, real: torch.Tensor, fake: torch.Tensor,
                                 real_kinds: tuple[str, ...], kinds: tuple[str, ...], *, progress: bool, seed: int,
                                 prd_clustering: str) -> dict[str, float]:
    """`_feature_metrics` over the ranks of `fabric`: features of this rank's `batch_blocks` only;
    FID from merged sums, the other metrics from the feature matrices gathered in row order."""
    for images in (real, fake) if real_kinds else (fake,):  # the whole sets, on every rank: all fail alike
        extractor.check(images)
    blocks = {"real": batch_blocks(len(real), fabric.world_size), "fake": batch_blocks(len(fake), fabric.world_size)}
    rank = fabric.global_rank

    def extract():
        mine = {"fake": _block_features(extractor, fake, blocks["fake"][rank], kinds, progress=progress)}
        if real_kinds:
            mine["real"] = _block_features(extractor, real, blocks["real"][rank], real_kinds, progress=progress)
        return mine

    local = _on_every_rank(fabric, extract, "feature extraction")
    out: dict[str, float] = {}
    if "fid" in metrics:
        out["fid"] = _merged_fid(fabric, local["real"]["features"], local["fake"]["features"])
    rest = [m for m in metrics if m != "fid"]
    needed = _feature_kinds(rest)
    if needed:
        full = {which: {k: _gather_rows(fabric, v, blocks[which]) for k, v in feats.items() if k in needed}
                for which, feats in local.items()}
        out.update(_feature_metrics(rest, full.get("real", {}), full["fake"], seed=seed,
                                    prd_clustering=prd_clustering))
    return out
