"""Class labels: one per line, line i naming the model's output i (TF Hub's ImageNetLabels.txt layout)."""

from __future__ import annotations

from pathlib import Path


class LabelsError(ValueError):
    """The label file is missing, empty, or does not fit the model."""


def load_labels(path: str | Path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc}") from exc
    # Trailing blank lines are an artefact of how the file was written, not classes; blank lines inside the
    # file are kept so that indices still line up with the model's outputs.
    labels = [line.strip() for line in text.rstrip().splitlines()]
    if not labels:
        raise LabelsError(f"labels file {path} is empty")
    return labels


def check_labels_fit(labels: list[str], num_outputs: int, labels_path: str | Path) -> None:
    if len(labels) != num_outputs:
        hint = ""
        if len(labels) + 1 == num_outputs:
            hint = " (the model has a 'background' class at index 0: use a label file that starts with it)"
        raise LabelsError(
            f"labels file {labels_path} has {len(labels)} labels, "
            f"but the model outputs {num_outputs} classes{hint}"
        )
