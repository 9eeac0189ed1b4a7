"""Label smoothing and calibration of an over-parameterised MLP on scikit-learn's digits.

A two-hidden-layer MLP of 1024 units (about 1.1 million weights for 719 training images)
is trained with Adam, no weight decay, for 60 epochs on 40% of the digits: long enough that
without smoothing it fits its training set and grows over-confident. Three runs with the
same seed, split and batches: no smoothing, a constant ``epsilon = 0.1``
(``labelsmooth.torch.CrossEntropyLoss(label_smoothing=0.1)``), and 0.1 annealed to 0 by a
cosine (``labelsmooth.schedules.cosine`` stepped once an epoch by ``EpsilonScheduler``).
It prints test accuracy, NLL, the expected calibration error under both binning
conventions of ``labelsmooth.metrics`` (Guo et al.'s and torchmetrics', 15 bins), the mean
confidence and the share of confidences that round to 1.0 in float32, and draws the three
reliability diagrams (``docs/figures/mlp_reliability.png``, or ``--output``).

What it shows, measured with the defaults on a 2-core machine (about 40 s): smoothing
raised test accuracy (0.969 -> 0.985); the constant 0.1 over-smooths, so its confidence
sits far below its accuracy (mean 0.84, ECE 0.140 against 0.018 unsmoothed) and its NLL is
the worst; annealing to 0 keeps the accuracy and gives the best NLL (0.069) and ECE (0.009),
and no confidence of exactly 1.0 (14% of the unsmoothed model's are). Unlike the logistic
regression of ``digits_calibration.py``, where smoothing mostly trades NLL for
under-confidence, here a schedule that ends unsmoothed helps on every measure.

Usage::

    python examples/mlp_calibration.py            # about 40 s
    python examples/mlp_calibration.py --epochs 20 --output diagram.png

With ``LABELSMOOTH_EXAMPLE_FAST=1`` it trains 2 epochs and writes the figure to the
working directory.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import labelsmooth as ls
from labelsmooth.metrics import expected_calibration_error, reliability_diagram
from labelsmooth.schedules import EpsilonScheduler, Schedule, constant, cosine
from labelsmooth.torch import CrossEntropyLoss

FAST = os.environ.get("LABELSMOOTH_EXAMPLE_FAST", "") not in ("", "0")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "figures" / "mlp_reliability.png"
N_BINS = 15
HIDDEN = 1024
BATCH = 32
LEARNING_RATE = 1e-3


def load(seed: int) -> tuple[np.ndarray, ...]:
    """Standardised digits split 40% / 20% / 40% (stratified) into training, validation and test sets.

    Parameters
    ----------
    seed : int
        Seed of the split.

    Returns
    -------
    tuple of numpy.ndarray
        ``x_train, x_val, x_test`` (float32, standardised with the training set's pixel
        means and deviations) and ``y_train, y_val, y_test`` (int64 class indices).
    """
    features, labels = load_digits(return_X_y=True)
    x_train, x_rest, y_train, y_rest = train_test_split(
        features, labels, train_size=0.4, stratify=labels, random_state=seed
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, train_size=1 / 3, stratify=y_rest, random_state=seed
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0  # pixels that are always blank in the training set
    xs = [((x - mean) / std).astype(np.float32) for x in (x_train, x_val, x_test)]
    return (*xs, y_train, y_val, y_test)


def make_model(num_features: int, num_classes: int, seed: int) -> torch.nn.Module:
    """Two hidden ReLU layers of ``HIDDEN`` units: about 1.1 million weights for 719 training images.

    Parameters
    ----------
    num_features, num_classes : int
        Input and output widths.
    seed : int
        Seed of the initial weights (the same for every setting).

    Returns
    -------
    torch.nn.Module
        The untrained float32 network.
    """
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(num_features, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, num_classes),
    )


def train(x: np.ndarray, y: np.ndarray, schedule: Schedule, epochs: int, seed: int, progress: Any) -> torch.nn.Module:
    """Adam without weight decay on the smoothed cross-entropy, ``epsilon`` set once per epoch.

    Parameters
    ----------
    x, y : numpy.ndarray
        Training images and labels.
    schedule : labelsmooth.schedules.Schedule
        ``epoch -> epsilon``; an :class:`~labelsmooth.schedules.EpsilonScheduler` assigns
        it to the loss's ``label_smoothing`` before each epoch.
    epochs : int
        Passes over the training set, in mini-batches of ``BATCH``.
    seed : int
        Seed of the initial weights and of the order of the mini-batches.
    progress : tqdm.tqdm
        Advanced by one per epoch.

    Returns
    -------
    torch.nn.Module
        The trained network.
    """
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    model = make_model(x.shape[1], int(y.max()) + 1, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = CrossEntropyLoss()
    scheduler = EpsilonScheduler(loss_fn, schedule)  # sets loss_fn.label_smoothing = schedule(0)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(labels), generator=order).split(BATCH):
            optimizer.zero_grad()
            loss_fn(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
        scheduler.step()
        progress.update(1)
    return model


def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Test accuracy, NLL, ECE in both conventions and the reliability diagram.

    Parameters
    ----------
    model : torch.nn.Module
        A trained network.
    x, y : numpy.ndarray
        Held-out images and labels.

    Returns
    -------
    dict
        ``accuracy``, ``nll`` (mean cross-entropy without smoothing, nats), ``ece_guo``,
        ``ece_torchmetrics`` (15 bins), ``confidence`` (mean top-label probability),
        ``saturated`` (share of float32 top-label probabilities that are exactly 1.0) and
        ``diagram`` (:func:`labelsmooth.metrics.reliability_diagram`).
    """
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    probs = ls.softmax(logits)  # float32, as the network computes
    confidence = probs.max(axis=1)
    return {
        "accuracy": float(np.mean(probs.argmax(axis=1) == y)),
        "nll": float(ls.cross_entropy(logits.astype(np.float64), y)),
        "ece_guo": float(expected_calibration_error(probs, y, n_bins=N_BINS, convention="guo")),
        "ece_torchmetrics": float(expected_calibration_error(probs, y, n_bins=N_BINS, convention="torchmetrics")),
        "confidence": float(confidence.mean()),
        "saturated": float(np.mean(confidence == 1.0)),
        "diagram": reliability_diagram(probs, y, n_bins=N_BINS),
    }


def settings(epochs: int) -> dict[str, Schedule]:
    """The three runs: no smoothing, a constant 0.1, and 0.1 annealed to 0 by a cosine.

    Parameters
    ----------
    epochs : int
        Length of the run; the cosine reaches 0 at the last epoch.

    Returns
    -------
    dict of str to labelsmooth.schedules.Schedule
        Name of the setting and its ``epoch -> epsilon`` schedule.
    """
    return {
        "eps = 0": constant(0.0),
        "eps = 0.1": constant(0.1),
        "cosine 0.1 -> 0": cosine(0.1, 0.0, steps=max(epochs - 1, 1)),
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """Print one row of test metrics per setting.

    Parameters
    ----------
    results : dict
        Setting name to the output of :func:`evaluate`.
    """
    header = (
        f"{'setting':<16} {'accuracy':>8} {'NLL':>7} {'ECE guo':>8} {'ECE torchmetrics':>16} "
        f"{'mean conf':>9} {'conf = 1':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<16} {r['accuracy']:>8.4f} {r['nll']:>7.4f} {r['ece_guo']:>8.4f} "
            f"{r['ece_torchmetrics']:>16.4f} {r['confidence']:>9.4f} {r['saturated']:>8.4f}"
        )


def plot(results: dict[str, dict[str, Any]], out: Path, epochs: int) -> None:
    """Write the reliability diagrams of the settings side by side as a PNG.

    Parameters
    ----------
    results : dict
        Setting name to the output of :func:`evaluate`.
    out : pathlib.Path
        Where to write the figure; its folder is created if need be.
    epochs : int
        Length of the runs, for the title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4.9), sharey=True, layout="constrained")
    for ax, (name, r) in zip(np.atleast_1d(axes), results.items()):
        diagram = r["diagram"]
        lower = diagram.edges[:-1]
        width = diagram.edges[1] - diagram.edges[0]
        filled = diagram.counts > 0
        accuracy = diagram.accuracy[filled]
        confidence = diagram.confidence[filled]
        share = diagram.counts[filled] / diagram.counts.sum()
        left = lower[filled]
        ax.bar(
            left,
            accuracy,
            width=width,
            align="edge",
            color="#4c72b0",
            edgecolor="black",
            linewidth=0.6,
            label="accuracy in bin",
        )
        # Mean confidence against accuracy per bin, as in Guo et al. (2017), fig. 1.
        over = confidence > accuracy
        for mask, colour, label in ((over, "#c44e52", "gap, overconfident"), (~over, "#55a868", "gap, underconfident")):
            ax.bar(
                left[mask],
                np.abs(confidence - accuracy)[mask],
                bottom=np.minimum(accuracy, confidence)[mask],
                width=width,
                align="edge",
                fill=False,
                edgecolor=colour,
                hatch="///",
                linewidth=0.8,
                label=label,
            )
        ax.bar(left, share * 0.25, width=width, align="edge", color="0.55", label="share of samples (x 1/4)")
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.3", linewidth=1.0, label="calibrated")
        ax.set_title(f"{name}\nECE {r['ece_guo']:.3f}   NLL {r['nll']:.3f}   accuracy {r['accuracy']:.1%}", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.set_xlabel("confidence (top-label probability)")
    np.atleast_1d(axes)[0].set_ylabel("accuracy")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, frameon=False)
    fig.suptitle(
        f"Reliability on test digits: MLP 64-{HIDDEN}-{HIDDEN}-10, {epochs} epochs of Adam, {N_BINS} bins",
        fontsize=11,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Train the three settings, print the table and write the figure.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status, 0.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output",
        "--out",
        dest="out",
        type=Path,
        default=None,
        help=f"where to write the reliability diagram (default {DEFAULT_OUT.name} in docs/figures)",
    )
    parser.add_argument("--epochs", type=int, default=2 if FAST else 60, help="epochs per setting")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the batches")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    out = args.out
    if out is None:
        out = Path.cwd() / DEFAULT_OUT.name if FAST else DEFAULT_OUT
    torch.set_num_threads(args.threads)

    x_train, _x_val, x_test, y_train, _y_val, y_test = load(args.seed)
    print(f"digits: {len(y_train)} training and {len(y_test)} test images, {x_train.shape[1]} pixels, 10 classes")
    schedules = settings(args.epochs)
    results = {}
    start = time.perf_counter()
    with tqdm(total=len(schedules) * args.epochs, desc="training", unit="epoch", mininterval=0.25) as progress:
        for name, schedule in schedules.items():
            progress.set_postfix_str(name)
            model = train(x_train, y_train, schedule, args.epochs, args.seed, progress)
            results[name] = evaluate(model, x_test, y_test)
    elapsed = time.perf_counter() - start
    print(f"trained {len(schedules)} models x {args.epochs} epochs in {elapsed:.1f} s; test results:")
    print()
    print_table(results)
    print()
    print("mean conf above accuracy = overconfident, below = underconfident; conf = 1: share of float32 1.0")
    plot(results, out, args.epochs)
    print(f"reliability diagram written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
