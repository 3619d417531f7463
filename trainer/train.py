"""The training loop: Adam + MSE on random crops, validation every epoch, resumable checkpoints.

Every batch is drawn from its own generator seeded by ``(seed, epoch, step)``, so batches can be
prepared in worker threads ahead of the model and a resumed run sees exactly the batches the
interrupted run would have seen. ``run_dir/last.safetensors`` (weights, optimizer, position) is
written atomically every epoch, every ``checkpoint_minutes`` and on Ctrl-C;
``run_dir/best.safetensors`` holds the weights with the lowest validation loss.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import platform
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from engine.color import SEED_NORMALIZATION, Normalization
from trainer.bins import classes_of, count_classes, rarity_weights
from trainer.checkpoint import (
    Checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from trainer.data import PatchSampler, build_cache, scan_folder, select, whole_image_batch
from trainer.evaluate import score_predictions
from trainer.model import PRESETS, build_model, count_macs, count_parameters

METRIC_COLUMNS = [
    "epoch", "global_step", "images_seen", "train_loss", "val_loss", "gray_loss", "val_psnr",
    "val_auc", "gray_psnr", "gray_auc", "lr", "elapsed_s", "images_per_s",
]  # fmt: skip

SEED_BOOST = {"general": (2.0, 2.0), "people": (1.6, 1.6), "landscape": (1.6, 1.6)}
"""The paper's post-boost of ab per category model."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint)."""

    data: Path
    out: Path
    preset: str = "seed"
    categories: list[str] | None = None
    category: str = "general"
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    size: int = 256
    epoch_size: int | None = None
    val_fraction: float = 0.15
    cache_max_side: int = 512
    cache_dir: Path | None = None
    min_scale: float = 0.25
    boost: tuple[float, float] | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    threads: int | None = None
    loader_threads: int = 2
    checkpoint_minutes: float = 5.0
    max_minutes: float | None = None
    init: Path | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("data", "out", "cache_dir", "init"):
            data[key] = None if data[key] is None else str(data[key])
        return data


@dataclass
class TrainResult:
    """What a finished (or interrupted) run produced."""

    run_dir: Path
    last: Path
    best: Path | None
    epochs_done: int
    interrupted: bool
    history: list[dict] = field(default_factory=list)


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA GPU")
    return device


def _lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        warmup = min(200, total_steps // 20)
        if step < warmup:
            return config.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown lr schedule {config.lr_schedule!r}; use constant or cosine")


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a checkpoint is always written."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not in the main thread: no handler
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _batches(
    sampler: PatchSampler, config: TrainConfig, epoch: int, first_step: int, steps: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of one epoch, prepared ahead in threads, each from its own seeded generator."""

    def make(step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([config.seed, epoch, step])
        return sampler.batch(config.batch_size, rng)

    lookahead = max(2, 2 * config.loader_threads)
    with ThreadPoolExecutor(config.loader_threads) as pool:
        pending = [
            pool.submit(make, s) for s in range(first_step, min(steps, first_step + lookahead))
        ]
        next_step = first_step + len(pending)
        while pending:
            batch = pending.pop(0).result()
            if next_step < steps:
                pending.append(pool.submit(make, next_step))
                next_step += 1
            yield batch


def train(
    config: TrainConfig,
    resume: bool = False,
    console: Console | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train a U-Net as ``config`` says; with ``resume``, continue ``out/last.safetensors``."""
    console = console or Console(stderr=True)
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; known: {', '.join(PRESETS)}")
    device = pick_device(config.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    if config.threads:
        torch.set_num_threads(config.threads)
    use_amp = device.type == "cuda" if config.amp is None else config.amp
    amp_dtype = (
        torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    )
    norm: Normalization = SEED_NORMALIZATION
    vivid = PRESETS[config.preset].head == "classes"  # decodes vivid colours: no post-boost
    boost = config.boost or ((1.0, 1.0) if vivid else SEED_BOOST.get(config.category, (1.0, 1.0)))
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = run_dir / "last.safetensors", run_dir / "best.safetensors"

    # Data ---------------------------------------------------------------------------------
    photos = scan_folder(config.data)
    train_photos = select(photos, "train", config.val_fraction, config.categories)
    val_photos = select(photos, "val", config.val_fraction, config.categories)
    if not train_photos or not val_photos:
        raise ValueError(
            f"{config.data}: {len(train_photos)} training and {len(val_photos)} validation photos"
            f"{' in categories ' + ','.join(config.categories) if config.categories else ''};"
            " both splits need at least one (add photos or change --val-fraction)"
        )
    cache_dir = config.cache_dir or run_dir / "cache"
    started = time.perf_counter()
    train_cache = build_cache(train_photos, config.cache_max_side, cache_dir)
    val_cache = build_cache(val_photos, config.cache_max_side, cache_dir)
    console.print(
        f"data: {len(train_cache)} training / {len(val_cache)} validation photos "
        f"({len(train_cache.skipped) + len(val_cache.skipped)} skipped), "
        f"decoded in {time.perf_counter() - started:.1f}s"
    )
    sampler = PatchSampler(train_cache, config.size, norm, config.min_scale)
    val_L, val_ab = whole_image_batch(val_cache, config.size, norm)
    epoch_size = config.epoch_size or len(train_cache)
    steps_per_epoch = max(1, math.ceil(epoch_size / config.batch_size))
    total_steps = steps_per_epoch * config.epochs

    # Model and optimizer ------------------------------------------------------------------
    torch.manual_seed(config.seed)
    model = build_model(config.preset)
    if config.init is not None:
        skipped = load_matching(model, load_checkpoint(config.init).weights)
        if skipped:
            console.print(f"init {config.init}: new (not loaded) {', '.join(skipped)}")
    class_weights = None
    if model.config.head == "classes":
        counts = count_classes(train_cache.images)
        class_weights = torch.from_numpy(rarity_weights(counts)).to(device)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    start_epoch, start_step, images_seen, elapsed_before = 0, 0, 0, 0.0
    history: list[dict] = []
    best_val = math.inf
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(f"{last_path}: nothing to resume")
        ckpt = load_checkpoint(last_path, with_optimizer=True)
        state = ckpt.train_state or {}
        if ckpt.config["training"]["seed"] != config.seed or ckpt.config["preset"] != config.preset:
            raise ValueError(f"{last_path}: was trained with another seed or preset; cannot resume")
        model.load_state_dict(ckpt.weights)
        optimizer_from_tensors(optimizer, ckpt.optimizer_tensors, state["optimizer"])
        start_epoch, start_step = state["epoch"], state["step"]
        images_seen, elapsed_before = state["images_seen"], state["elapsed_s"]
        history, best_val = state["history"], state["best_val_loss"]
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        console.print(f"resuming {last_path} at epoch {start_epoch + 1}, step {start_step}")

    data_summary = {
        "root": str(Path(config.data).name),
        "categories": config.categories or "all",
        "split": f"sha256(key) < {config.val_fraction} → val",
        "train": train_cache.summary(),
        "val": val_cache.summary(),
    }
    base_config = {
        "preset": config.preset,
        "architecture": PRESETS[config.preset].to_dict(),
        "parameters": count_parameters(model),
        "gmacs_256": round(count_macs(build_model(config.preset)) / 1e9, 3),
        "normalization": norm.to_dict(),
        "boost": list(boost),
        "category": config.category,
        "input_size": config.size,
        "data": data_summary,
        "training": {**config.to_dict(), "steps_per_epoch": steps_per_epoch, "device": str(device)},
        "environment": {"torch": torch.__version__, "python": platform.python_version()},
    }

    def checkpoint_config(metrics: dict | None) -> dict:
        return {
            **base_config,
            "metrics": metrics or {},
            "images_seen": images_seen,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def save_last(epoch: int, step: int) -> None:
        tensors, rest = optimizer_to_tensors(optimizer)
        state = {
            "epoch": epoch, "step": step, "images_seen": images_seen,
            "elapsed_s": elapsed_before + time.perf_counter() - run_start,
            "history": history, "best_val_loss": best_val, "optimizer": rest,
            "torch_rng": torch.get_rng_state().tolist(),
        }  # fmt: skip
        metrics = history[-1] if history else None
        save_checkpoint(
            last_path, Checkpoint(model.state_dict(), checkpoint_config(metrics), state, tensors)
        )

    def validate() -> dict:
        model.eval()
        preds = []
        with torch.no_grad(), torch.autocast(device.type, amp_dtype, enabled=use_amp):
            for i in range(0, len(val_L), 16):
                x = torch.from_numpy(val_L[i : i + 16]).to(
                    device, memory_format=torch.channels_last
                )
                preds.append(model(x).float().cpu().numpy())
        model.train()
        pred = np.concatenate(preds)
        loss = float(np.mean((pred - val_ab) ** 2))
        scores = score_predictions(val_L, pred, val_ab, norm)
        return {"val_loss": loss, "gray_loss": float(np.mean(val_ab**2)), **scores}

    # Loop -----------------------------------------------------------------------------------
    run_start = time.perf_counter()
    if not history:  # epoch 0: the untrained model, so every curve starts from a reference
        history.append(
            {"epoch": 0, "global_step": 0, "images_seen": 0, "train_loss": math.nan, **validate(),
             "lr": config.lr, "elapsed_s": 0.0, "images_per_s": 0.0}
        )  # fmt: skip
    model.train()
    last_save = time.monotonic()
    interrupted = False
    columns = [
        TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.5f}"), TextColumn("{task.fields[ips]:.1f} img/s"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    ]  # fmt: skip
    with _StopRequest() as stop, Progress(*columns, console=console, transient=False) as progress:
        for epoch in range(start_epoch, config.epochs):
            first = start_step if epoch == start_epoch else 0
            task = progress.add_task(
                "train", total=steps_per_epoch, completed=first, epoch=epoch + 1,
                epochs=config.epochs, loss=float("nan"), ips=0.0,
            )  # fmt: skip
            loss_sum, loss_count, epoch_images = 0.0, 0, 0
            lr = _lr_at(config, epoch * steps_per_epoch + first, total_steps)
            epoch_start = time.perf_counter()
            for step, (L_np, ab_np) in enumerate(
                _batches(sampler, config, epoch, first, steps_per_epoch), start=first
            ):
                lr = _lr_at(config, epoch * steps_per_epoch + step, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                L = torch.from_numpy(L_np).to(device, memory_format=torch.channels_last)
                ab = torch.from_numpy(ab_np).to(device, memory_format=torch.channels_last)
                with torch.autocast(device.type, amp_dtype, enabled=use_amp):
                    pred = model(L) if class_weights is None else model.logits(L)
                if class_weights is None:
                    loss = torch.nn.functional.mse_loss(pred.float(), ab)
                else:
                    loss = rebalanced_cross_entropy(pred.float(), ab, class_weights, norm)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                images_seen += len(L_np)
                epoch_images += len(L_np)
                loss_sum += float(loss.detach())
                loss_count += 1
                ips = epoch_images / max(1e-9, time.perf_counter() - epoch_start)
                progress.update(task, completed=step + 1, loss=loss_sum / loss_count, ips=ips)
                out_of_time = (
                    config.max_minutes is not None
                    and elapsed_before + time.perf_counter() - run_start > 60 * config.max_minutes
                )
                if stop.requested or out_of_time:
                    save_last(epoch, step + 1)
                    console.print(f"stopped; checkpoint {last_path} (rerun with --resume)")
                    interrupted = True
                    break
                if time.monotonic() - last_save > 60 * config.checkpoint_minutes:
                    save_last(epoch, step + 1)
                    last_save = time.monotonic()
            if interrupted:
                break
            metrics = {
                "epoch": epoch + 1,
                "global_step": (epoch + 1) * steps_per_epoch,
                "images_seen": images_seen,
                "train_loss": loss_sum / max(1, loss_count),
                **validate(),
                "lr": lr,
                "elapsed_s": elapsed_before + time.perf_counter() - run_start,
                "images_per_s": epoch_images / max(1e-9, time.perf_counter() - epoch_start),
            }
            history.append(metrics)
            if metrics["val_loss"] < best_val:
                best_val = metrics["val_loss"]
                save_checkpoint(
                    best_path, Checkpoint(model.state_dict(), checkpoint_config(metrics))
                )
            save_last(epoch + 1, 0)
            last_save = time.monotonic()
            _write_history(run_dir, history)
            m = metrics
            console.print(
                f"epoch {epoch + 1}: train {m['train_loss']:.5f}  val {m['val_loss']:.5f}"
                f" (gray {m['gray_loss']:.5f})"
                f"  PSNR {metrics['val_psnr']:.2f} (gray {metrics['gray_psnr']:.2f})"
                f"  AuC {metrics['val_auc']:.4f} (gray {metrics['gray_auc']:.4f})"
                f"  {metrics['images_per_s']:.1f} img/s"
            )
            if on_epoch:
                on_epoch(metrics)
    return TrainResult(
        run_dir, last_path, best_path if best_path.exists() else None,
        len(history), interrupted, history,
    )  # fmt: skip


def load_matching(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Load the tensors of ``weights`` whose name and shape match ``model``'s (fine-tuning into
    another head); returns the names of the model's tensors left as initialised."""
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)


def rebalanced_cross_entropy(
    logits: torch.Tensor, ab: torch.Tensor, class_weights: torch.Tensor, norm: Normalization
) -> torch.Tensor:
    """Cross-entropy of the ``classes`` head against each pixel's ab class, weighted by rarity."""
    with torch.no_grad():
        ab_units = (ab * float(norm.ab_scale)).permute(1, 0, 2, 3).cpu().numpy()
        target = torch.from_numpy(classes_of(ab_units)).to(logits.device)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    return (per_pixel * class_weights[target]).mean()


def _write_history(run_dir: Path, history: list[dict]) -> None:
    """``metrics.csv`` and ``curves.png`` (the PNG only when matplotlib is installed)."""
    tmp = run_dir / ".metrics.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, run_dir / "metrics.csv")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_psnr, ax_auc) = plt.subplots(1, 3, figsize=(13, 3.6))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax_loss.set(title="MSE (normalised ab)", xlabel="epoch")
    ax_loss.legend()
    for ax, key, title in ((ax_psnr, "psnr", "val PSNR (dB)"), (ax_auc, "auc", "val AuC")):
        ax.plot(epochs, [h[f"val_{key}"] for h in history], label="model")
        ax.plot(epochs, [h[f"gray_{key}"] for h in history], "--", label="gray baseline")
        ax.set(title=title, xlabel="epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / ".curves.tmp.png", dpi=90)
    plt.close(fig)
    os.replace(run_dir / ".curves.tmp.png", run_dir / "curves.png")
