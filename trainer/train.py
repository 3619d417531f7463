"""The training loop: Adam + MSE on random crops, validation every epoch, resumable checkpoints.

Every batch is drawn from its own generator seeded by ``(seed, epoch, step)``, so batches can be
prepared in worker threads ahead of the model and a resumed run sees exactly the batches the
interrupted run would have seen. ``run_dir/last.safetensors`` (weights, optimizer, position) is
written atomically every epoch, every ``checkpoint_minutes`` and on Ctrl-C;
``run_dir/best.safetensors`` holds the weights with the lowest validation loss.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import platform
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from engine.model_io import SEED_NORMALIZATION, Normalization
from trainer.bins import count_classes, rarity_weights
from trainer.checkpoint import (
    Checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from trainer.data import (
    CROSS_SOURCES,
    LabCache,
    PatchSampler,
    build_cache,
    scan_folders,
    select,
    source_of,
    spread,
    whole_image_batch,
)
from trainer.device import autocast_dtype, pick_device
from trainer.evaluate import score_predictions
from trainer.losses import rebalanced_cross_entropy
from trainer.models import (
    PRESETS,
    architecture_of,
    build_from_spec,
    count_macs,
    count_parameters,
    preset_spec,
)
from trainer.pack import data_sources

METRIC_COLUMNS = [
    "epoch", "global_step", "images_seen", "train_loss", "val_loss", "gray_loss", "val_psnr",
    "val_auc", "val_hue", "gray_psnr", "gray_auc", "cross_val_psnr", "cross_val_auc",
    "cross_val_hue", "cross_gray_psnr", "cross_gray_auc", "lr", "elapsed_s", "images_per_s",
]  # fmt: skip
RAW_PREFIX = "train/"
"""With an EMA, ``last`` holds the average as its weights and the trained weights under this
prefix among the optimizer tensors (what a resume continues from)."""

SEED_BOOST = {"general": (2.0, 2.0), "people": (1.6, 1.6), "landscape": (1.6, 1.6)}
"""The paper's post-boost of ab per category model."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint)."""

    data: Path | list[Path]
    """One photo folder, or several (e.g. the open photos and the extra ones) trained as one."""
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
    pretrained: bool = True
    """Start the encoder from the architecture's pretrained weights, where it has them."""
    balance: bool = False
    """Sample photos balanced by category and source (:func:`sampling_weights`), not uniformly."""
    input_size: int | None = None
    """The engine's input size stored in the checkpoint. Default: the training crop ``size``."""
    max_downscale: float | None = None
    """Crops at the photo's own scale, reduced by up to this factor (:class:`PatchSampler`);
    None: random-resized crops covering ``min_scale``..1 of the photo."""
    soft_targets: bool = False
    """Classes heads: soft-encoded targets (5 nearest classes, :mod:`trainer.losses`)."""
    encoder_lr_scale: float = 1.0
    """The pretrained encoder's learning rate as a share of ``lr`` (the decoder gets ``lr``)."""
    ema_decay: float | None = None
    """Keep an exponential moving average of the weights (e.g. 0.999); validated and saved."""
    freeze_batchnorm: bool = False
    """Keep every BatchNorm's running statistics as loaded (its scale and shift still train):
    fine-tuning at small batches, where 100 steps of batch 32 re-estimate them from ~300 crops
    and cost ~0.8 dB at once (MODELS.md, tries)."""
    cross_photos: int = 0
    """Photos of the cross-source split (whole held-out sources) scored every epoch; with some,
    ``best`` is the epoch with the highest cross-source hue accuracy + AuC, not the lowest
    in-source validation loss."""

    @property
    def data_roots(self) -> list[Path]:
        return [Path(d) for d in self.data] if isinstance(self.data, list) else [Path(self.data)]

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("out", "cache_dir", "init"):
            data[key] = None if data[key] is None else str(data[key])
        roots = [str(r) for r in self.data_roots]
        data["data"] = roots[0] if len(roots) == 1 else roots
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


def _lr_at(
    config: TrainConfig, step: int, total_steps: int, elapsed_s: float | None = None
) -> float:
    """The learning rate at ``step``. ``cosine`` decays over all epochs or, with
    ``max_minutes``, over whichever of the two budgets is used up first (``elapsed_s``)."""
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        warmup = min(200, total_steps // 20)
        if step < warmup:
            return config.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.max_minutes and elapsed_s is not None:
            progress = max(progress, elapsed_s / (60 * config.max_minutes))
        progress = min(1.0, progress)
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


class Trainer:
    """One training run: :meth:`__init__` sets up data, model and optimizer; :meth:`resume`
    continues ``out/last.safetensors``; :meth:`fit` runs the loop of :meth:`step`, with
    :meth:`validate` and the checkpoints (:meth:`save_last`, :meth:`save_best`) each epoch."""

    def __init__(
        self,
        config: TrainConfig,
        console: Console | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> None:
        self.config, self.on_epoch = config, on_epoch
        self.console = console or Console(stderr=True)
        if config.preset not in PRESETS:
            raise ValueError(f"unknown preset {config.preset!r}; known: {', '.join(PRESETS)}")
        self.spec = preset_spec(config.preset)
        self.device = pick_device(config.device)
        torch.backends.cudnn.benchmark = self.device.type == "cuda"
        if config.threads:
            torch.set_num_threads(config.threads)
        self.use_amp = self.device.type == "cuda" if config.amp is None else config.amp
        self.amp_dtype = autocast_dtype(self.device)
        self.norm: Normalization = SEED_NORMALIZATION
        self.run_dir = Path(config.out)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.last_path = self.run_dir / "last.safetensors"
        self.best_path = self.run_dir / "best.safetensors"
        self._set_up_data()
        self._set_up_model()
        self.epoch, self.step_in_epoch, self.images_seen, self.elapsed_before = 0, 0, 0, 0.0
        self.history: list[dict] = []
        self.best_val = math.inf
        self.run_start = time.perf_counter()

    # Set-up ---------------------------------------------------------------------------------
    def _set_up_data(self) -> None:
        config = self.config
        photos = scan_folders(config.data_roots)
        train_photos = select(photos, "train", config.val_fraction, config.categories)
        val_photos = select(photos, "val", config.val_fraction, config.categories)
        cross_photos = spread(
            select(photos, "cross", config.val_fraction, config.categories), config.cross_photos
        )
        if not train_photos or not val_photos:
            raise ValueError(
                f"{', '.join(map(str, config.data_roots))}: {len(train_photos)} training and "
                f"{len(val_photos)} validation photos"
                f"{' in categories ' + ','.join(config.categories) if config.categories else ''};"
                " both splits need at least one (add photos or change --val-fraction)"
            )
        cache_dir = config.cache_dir or self.run_dir / "cache"
        started = time.perf_counter()
        self.train_cache = build_cache(train_photos, config.cache_max_side, cache_dir)
        self.val_cache = build_cache(val_photos, config.cache_max_side, cache_dir)
        self.cross_cache = build_cache(cross_photos, config.cache_max_side, cache_dir)
        caches = (self.train_cache, self.val_cache, self.cross_cache)
        self.console.print(
            f"data: {len(self.train_cache)} training / {len(self.val_cache)} validation / "
            f"{len(self.cross_cache)} cross-source photos "
            f"({sum(len(c.skipped) for c in caches)} skipped), "
            f"decoded in {time.perf_counter() - started:.1f}s"
        )
        weights = sampling_weights(self.train_cache) if config.balance else None
        self.sampler = PatchSampler(
            self.train_cache, config.size, self.norm, config.min_scale, weights,
            config.max_downscale,
        )  # fmt: skip
        check_size = config.input_size or config.size  # as the engine will see the photos
        self.val_L, self.val_ab = whole_image_batch(self.val_cache, check_size, self.norm)
        self.cross = (
            whole_image_batch(self.cross_cache, check_size, self.norm)
            if len(self.cross_cache) else None
        )  # fmt: skip
        epoch_size = config.epoch_size or len(self.train_cache)
        self.steps_per_epoch = max(1, math.ceil(epoch_size / config.batch_size))
        self.total_steps = self.steps_per_epoch * config.epochs

    def _set_up_model(self) -> None:
        config = self.config
        torch.manual_seed(config.seed)
        model = build_from_spec(self.spec)
        self.head = model.config.head
        architecture = architecture_of(self.spec)
        if config.init is not None:
            skipped = load_matching(model, load_checkpoint(config.init).weights)
            if skipped:
                self.console.print(f"init {config.init}: new (not loaded) {', '.join(skipped)}")
        elif config.pretrained and architecture.pretrained is not None:
            left = architecture.pretrained(model)
            self.console.print(
                f"pretrained encoder loaded ({len(left)} encoder tensors left as initialised)"
            )
        self.class_weights = None
        if self.head == "classes":
            counts = count_classes(self.train_cache.images)
            self.class_weights = torch.from_numpy(rarity_weights(counts)).to(self.device)
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, config.encoder_lr_scale), lr=config.lr,
            weight_decay=config.weight_decay,
        )  # fmt: skip
        self.ema = None
        if config.ema_decay:
            self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.use_amp and self.amp_dtype == torch.float16
        )
        vivid = self.head == "classes"  # decodes vivid colours: no post-boost
        self.boost = config.boost or (
            (1.0, 1.0) if vivid else SEED_BOOST.get(config.category, (1.0, 1.0))
        )
        self.base_config = {
            "preset": config.preset,
            "architecture": self.spec,
            "parameters": count_parameters(model),
            "gmacs_256": round(count_macs(build_from_spec(self.spec)) / 1e9, 3),
            "normalization": self.norm.to_dict(),
            "boost": list(self.boost),
            "category": config.category,
            "input_size": config.size if config.input_size is None else config.input_size,
            "data": {
                "roots": [Path(r).name for r in config.data_roots],
                "sources": [s for r in config.data_roots for s in data_sources(r)],
                "categories": config.categories or "all",
                "split": f"sha256(key) < {config.val_fraction} → val",
                "sampling": "balanced by category and source" if config.balance else "uniform",
                "cross_sources": sorted(CROSS_SOURCES),
                "cross": self.cross_cache.summary(),
                "train": self.train_cache.summary(),
                "val": self.val_cache.summary(),
            },
            "training": {
                **config.to_dict(),
                "steps_per_epoch": self.steps_per_epoch,
                "device": str(self.device),
            },
            "environment": {"torch": torch.__version__, "python": platform.python_version()},
        }

    def resume(self) -> None:
        """Continue ``out/last.safetensors``: weights, optimizer, position, history, RNG."""
        if not self.last_path.exists():
            raise FileNotFoundError(f"{self.last_path}: nothing to resume")
        ckpt = load_checkpoint(self.last_path, with_optimizer=True)
        state = ckpt.train_state or {}
        if (
            ckpt.config["training"]["seed"] != self.config.seed
            or ckpt.config["preset"] != self.config.preset
        ):
            raise ValueError(
                f"{self.last_path}: was trained with another seed or preset; cannot resume"
            )
        raw = {k[len(RAW_PREFIX) :]: v for k, v in ckpt.optimizer_tensors.items()
               if k.startswith(RAW_PREFIX)}  # fmt: skip
        optimizer_tensors = {
            k: v for k, v in ckpt.optimizer_tensors.items() if not k.startswith(RAW_PREFIX)
        }
        self.model.load_state_dict(raw or ckpt.weights)
        if self.ema is not None:
            self.ema.load_state_dict(ckpt.weights)
        optimizer_from_tensors(self.optimizer, optimizer_tensors, state["optimizer"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step"]
        self.images_seen, self.elapsed_before = state["images_seen"], state["elapsed_s"]
        self.history, self.best_val = state["history"], state["best_val_loss"]
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        self.console.print(
            f"resuming {self.last_path} at epoch {self.epoch + 1}, step {self.step_in_epoch}"
        )

    # Steps ----------------------------------------------------------------------------------
    def step(self, L_np: np.ndarray, ab_np: np.ndarray, lr: float) -> float:
        """One optimisation step on a batch (normalised L and ab); returns the loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        L = torch.from_numpy(L_np).to(self.device, memory_format=torch.channels_last)
        ab = torch.from_numpy(ab_np).to(self.device, memory_format=torch.channels_last)
        with torch.autocast(self.device.type, self.amp_dtype, enabled=self.use_amp):
            pred = self.model(L) if self.class_weights is None else self.model.logits(L)
        if self.class_weights is None:
            loss = torch.nn.functional.mse_loss(pred.float(), ab)
        else:
            loss = rebalanced_cross_entropy(pred, ab, self.class_weights, self.norm.ab_scale)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            update_ema(self.ema, self.model, self.config.ema_decay, self.images_seen)
        self.images_seen += len(L_np)
        return float(loss.detach())

    @property
    def judged_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the moving average where there is one."""
        return self.ema if self.ema is not None else self.model

    def _predict(self, L: np.ndarray) -> np.ndarray:
        model = self.judged_model
        model.eval()
        preds = []
        autocast = torch.autocast(self.device.type, self.amp_dtype, enabled=self.use_amp)
        with torch.no_grad(), autocast:
            for i in range(0, len(L), 16):
                x = torch.from_numpy(L[i : i + 16]).to(
                    self.device, memory_format=torch.channels_last
                )
                preds.append(model(x).float().cpu().numpy())
        self._train_mode()
        return np.concatenate(preds)

    def _train_mode(self) -> None:
        """The model in training mode; its BatchNorm statistics frozen where the config says."""
        self.model.train()
        if self.config.freeze_batchnorm:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def validate(self) -> dict:
        """Loss, PSNR, AuC and hue accuracy of the model and of gray on the in-source validation
        photos, and (``cross_*``) on the cross-source photos where there are some."""
        pred = self._predict(self.val_L)
        loss = float(np.mean((pred - self.val_ab) ** 2))
        scores = score_predictions(self.val_L, pred, self.val_ab, self.norm)
        scores = {"val_loss": loss, "gray_loss": float(np.mean(self.val_ab**2)), **scores}
        if self.cross is not None:
            cross_L, cross_ab = self.cross
            cross = score_predictions(cross_L, self._predict(cross_L), cross_ab, self.norm)
            scores.update({f"cross_{k}": v for k, v in cross.items()})
        return scores

    # Checkpoints ----------------------------------------------------------------------------
    def _checkpoint_config(self, metrics: dict | None) -> dict:
        return {
            **self.base_config,
            "metrics": metrics or {},
            "images_seen": self.images_seen,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.run_start

    def save_last(self, epoch: int, step: int) -> None:
        """``last.safetensors``: weights, optimizer and position (``step`` within ``epoch``)."""
        tensors, rest = optimizer_to_tensors(self.optimizer)
        state = {
            "epoch": epoch, "step": step, "images_seen": self.images_seen,
            "elapsed_s": self.elapsed(), "history": self.history,
            "best_val_loss": self.best_val, "optimizer": rest,
            "torch_rng": torch.get_rng_state().tolist(),
        }  # fmt: skip
        metrics = self.history[-1] if self.history else None
        if self.ema is not None:  # the average is the checkpoint; the raw weights resume
            tensors |= {RAW_PREFIX + k: v for k, v in self.model.state_dict().items()}
        weights = self.judged_model.state_dict()
        save_checkpoint(
            self.last_path, Checkpoint(weights, self._checkpoint_config(metrics), state, tensors)
        )

    def save_best(self, metrics: dict) -> None:
        """``best.safetensors`` when this epoch is the best so far (:func:`selection_loss`)."""
        loss = selection_loss(metrics)
        if loss < self.best_val:
            self.best_val = loss
            save_checkpoint(
                self.best_path,
                Checkpoint(self.judged_model.state_dict(), self._checkpoint_config(metrics)),
            )

    # The loop -------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train until ``config.epochs`` (or a stop request or ``max_minutes``)."""
        config = self.config
        self.run_start = time.perf_counter()
        if not self.history:  # epoch 0: the untrained model, so every curve starts from a reference
            self.history.append(
                {"epoch": 0, "global_step": 0, "images_seen": 0, "train_loss": math.nan,
                 **self.validate(), "lr": config.lr, "elapsed_s": 0.0, "images_per_s": 0.0}
            )  # fmt: skip
        self._train_mode()
        last_save = time.monotonic()
        interrupted = False
        columns = [
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.5f}"), TextColumn("{task.fields[ips]:.1f} img/s"),
            TimeElapsedColumn(), TimeRemainingColumn(),
        ]  # fmt: skip
        start_epoch, start_step = self.epoch, self.step_in_epoch
        with _StopRequest() as stop, Progress(*columns, console=self.console) as progress:
            for epoch in range(start_epoch, config.epochs):
                first = start_step if epoch == start_epoch else 0
                task = progress.add_task(
                    "train", total=self.steps_per_epoch, completed=first, epoch=epoch + 1,
                    epochs=config.epochs, loss=float("nan"), ips=0.0,
                )  # fmt: skip
                loss_sum, loss_count, epoch_images = 0.0, 0, 0
                lr = _lr_at(config, epoch * self.steps_per_epoch + first, self.total_steps)
                epoch_start = time.perf_counter()
                batches = _batches(self.sampler, config, epoch, first, self.steps_per_epoch)
                for step, (L_np, ab_np) in enumerate(batches, start=first):
                    position = epoch * self.steps_per_epoch + step
                    lr = _lr_at(config, position, self.total_steps, self.elapsed())
                    loss_sum += self.step(L_np, ab_np, lr)
                    loss_count += 1
                    epoch_images += len(L_np)
                    ips = epoch_images / max(1e-9, time.perf_counter() - epoch_start)
                    progress.update(task, completed=step + 1, loss=loss_sum / loss_count, ips=ips)
                    out_of_time = (
                        config.max_minutes is not None and self.elapsed() > 60 * config.max_minutes
                    )
                    if stop.requested or out_of_time:
                        self.save_last(epoch, step + 1)
                        self.console.print(
                            f"stopped; checkpoint {self.last_path} (rerun with --resume)"
                        )
                        interrupted = True
                        break
                    if time.monotonic() - last_save > 60 * config.checkpoint_minutes:
                        self.save_last(epoch, step + 1)
                        last_save = time.monotonic()
                if interrupted:
                    break
                self._end_epoch(epoch, loss_sum / max(1, loss_count), lr, epoch_images, epoch_start)
                last_save = time.monotonic()
        return TrainResult(
            self.run_dir, self.last_path, self.best_path if self.best_path.exists() else None,
            len(self.history), interrupted, self.history,
        )  # fmt: skip

    def _end_epoch(
        self, epoch: int, train_loss: float, lr: float, epoch_images: int, epoch_start: float
    ) -> None:
        metrics = {
            "epoch": epoch + 1,
            "global_step": (epoch + 1) * self.steps_per_epoch,
            "images_seen": self.images_seen,
            "train_loss": train_loss,
            **self.validate(),
            "lr": lr,
            "elapsed_s": self.elapsed(),
            "images_per_s": epoch_images / max(1e-9, time.perf_counter() - epoch_start),
        }
        self.history.append(metrics)
        self.save_best(metrics)
        self.save_last(epoch + 1, 0)
        _write_history(self.run_dir, self.history)
        m = metrics
        self.console.print(
            f"epoch {epoch + 1}: train {m['train_loss']:.5f}  val {m['val_loss']:.5f}"
            f" (gray {m['gray_loss']:.5f})  PSNR {m['val_psnr']:.2f} (gray {m['gray_psnr']:.2f})"
            f"  AuC {m['val_auc']:.4f} (gray {m['gray_auc']:.4f})  {m['images_per_s']:.1f} img/s"
        )
        if self.on_epoch:
            self.on_epoch(metrics)


def train(
    config: TrainConfig,
    resume: bool = False,
    console: Console | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train as ``config`` says; with ``resume``, continue ``out/last.safetensors``."""
    trainer = Trainer(config, console, on_epoch)
    if resume:
        trainer.resume()
    return trainer.fit()


SMALL_SOURCE = 20
"""Sources with fewer photos are pooled, per data folder, into one source for sampling."""


def sampling_weights(cache: LabCache, power: float = 0.5) -> np.ndarray:
    """Per-photo sampling probabilities that keep one source or category from dominating without
    shrinking the data set: a source's share of the draws ∝ (its photo count)^``power``, and each
    category's share ∝ √(its photo count). Sources under :data:`SMALL_SOURCE` photos are pooled
    per data folder (``train/`` holds dozens of packages of 1–20 photos: as sources of their own
    they took a quarter of the draws)."""
    sources = _pooled_sources(cache.sources or [f"/{source_of(k)}" for k in cache.keys])
    groups = list(zip(cache.categories, sources, strict=True))
    per_group, per_category = Counter(groups), Counter(cache.categories)
    weights = np.array([float(per_group[group]) ** (power - 1) for group in groups])
    for category, count in per_category.items():
        mask = np.array([c == category for c in cache.categories])
        weights[mask] *= math.sqrt(count) / weights[mask].sum()
    return weights / weights.sum()


def _pooled_sources(sources: list[str]) -> list[str]:
    counts = Counter(sources)
    return [s if counts[s] >= SMALL_SOURCE else s.split("/", 1)[0] + "/(small)" for s in sources]


def effective_photos(weights: np.ndarray) -> float:
    """How many photos, drawn uniformly, would give the same sampling variance (Kish)."""
    return float(1.0 / np.square(weights / weights.sum()).sum())


def parameter_groups(model: torch.nn.Module, encoder_lr_scale: float) -> list[dict]:
    """The encoder's parameters (learning rate × ``encoder_lr_scale``) and the rest's."""
    encoder = getattr(model, "encoder", None)
    if encoder is None or encoder_lr_scale == 1.0:
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    own = {id(p) for p in encoder.parameters()}
    rest = [p for p in model.parameters() if id(p) not in own]
    return [{"params": list(encoder.parameters()), "lr_scale": encoder_lr_scale},
            {"params": rest, "lr_scale": 1.0}]  # fmt: skip


def update_ema(
    average: torch.nn.Module, model: torch.nn.Module, decay: float, images_seen: int
) -> None:
    """Move ``average``'s weights towards ``model``'s (decay warmed up over the first steps);
    buffers (BatchNorm statistics) are copied."""
    decay = min(decay, (1 + images_seen / 32) / (10 + images_seen / 32))
    with torch.no_grad():
        for mine, theirs in zip(average.parameters(), model.parameters(), strict=True):
            mine.lerp_(theirs, 1.0 - decay)
        for mine, theirs in zip(average.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)


def selection_loss(metrics: dict) -> float:
    """Lower is better: −(hue accuracy + AuC) on the cross-source photos where they were scored,
    else the in-source validation loss."""
    if "cross_val_hue" in metrics:
        return -(metrics["cross_val_hue"] + metrics["cross_val_auc"])
    return metrics["val_loss"]


def load_matching(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Load the tensors of ``weights`` whose name and shape match ``model``'s (fine-tuning into
    another head); returns the names of the model's tensors left as initialised."""
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)


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
