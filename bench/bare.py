"""The bare backend: the service's own decode (preprocess.decode_image) and model call (backends.load_backend)
in a loop, one image at a time, no HTTP, pinned to one core with one inference thread: the ceiling the
service is measured against (img/s per core).

Run by `python3 -m bench` in a child process per backend, so that the core pinning is in place before
TensorFlow or LiteRT start their thread pools and each runtime's memory goes away with its process.

    python3 -m bench.bare --backend tf --model-path M/saved_model --labels M/labels.txt --cpu 1 \
        --seconds 8 IMAGE [IMAGE...]                        (prints one JSON object)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = REPO / "services" / "classifier"
WARMUP_S = 1.0
# CLASSIFIER_BACKEND names (classifier/backends BACKEND_KINDS), as the service's settings take them.
sys.path.insert(0, str(CLASSIFIER))
from classifier.backends import BACKEND_KINDS  # noqa: E402  (the service's folder is on the path only now)

SERVICE_KINDS = tuple(BACKEND_KINDS)


def pin_to_cpu(cpu: int | None) -> list[int]:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    return sorted(os.sched_getaffinity(0))


def measure_image(backend: object, data: bytes, seconds: float) -> dict[str, object]:
    import psutil

    from bench.stats import cpu_share, summarize_ms
    from classifier.preprocess import decode_image

    size = backend.input_size  # type: ignore[attr-defined]
    predict = backend.predict  # type: ignore[attr-defined]
    clock = time.perf_counter
    end = clock() + WARMUP_S
    while clock() < end:
        predict(decode_image(data, size)[None])
    decode_s: list[float] = []
    infer_s: list[float] = []
    cpus = sorted(os.sched_getaffinity(0))
    psutil.cpu_percent(percpu=True)  # starts the window of the core's busy share below
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    started = clock()
    end = started + seconds
    now = started
    while now < end:
        image = decode_image(data, size)
        decoded = clock()
        predict(image[None])
        finished = clock()
        decode_s.append(decoded - now)
        infer_s.append(finished - decoded)
        now = finished
    wall = now - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy_by_core = psutil.cpu_percent(percpu=True)
    own = cpu_share(usage.ru_utime + usage.ru_stime - cpu0, wall)
    busy = busy_by_core[cpus[0]] if len(cpus) == 1 else float("nan")
    return {
        "images": len(infer_s),
        "seconds": wall,
        "img_per_s": len(infer_s) / wall,
        "decode_ms": summarize_ms(decode_s),
        "infer_ms": summarize_ms(infer_s),
        # Below ~95 % the core was shared with something else, and img/s is low by that much.
        "cpu_percent": own,
        # What other processes (or the hypervisor, as steal) took of this core meanwhile.
        "interference_percent": max(0.0, busy - own),
    }


def measure_tutorial(model: object, data: bytes, seconds: float) -> dict[str, object]:
    """The baseline server's work without HTTP: PIL decode at full size + `model.predict(x)`, and for
    comparison the same Keras model called directly (`model(x)`), which skips predict()'s per-call setup."""
    import psutil

    from bench.stats import cpu_share, summarize_ms
    from bench.tutorial import preprocess

    predict = model.predict  # type: ignore[attr-defined]
    clock = time.perf_counter
    # predict() prints a progress bar per call, as in the server (where it goes to the log): keep it off
    # this process's stdout, which carries the JSON result.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        end = clock() + WARMUP_S
        while clock() < end:
            predict(preprocess(data))
        decode_s: list[float] = []
        infer_s: list[float] = []
        cpus = sorted(os.sched_getaffinity(0))
        psutil.cpu_percent(percpu=True)  # starts the window of the core's busy share below
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = usage.ru_utime + usage.ru_stime
        started = now = clock()
        while now < started + seconds:
            x = preprocess(data)
            decoded = clock()
            predict(x)
            finished = clock()
            decode_s.append(decoded - now)
            infer_s.append(finished - decoded)
            now = finished
        wall = now - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy_by_core = psutil.cpu_percent(percpu=True)
        direct_s = []
        end = clock() + seconds / 4
        while clock() < end:
            before = clock()
            model(x, training=False).numpy()  # type: ignore[operator]
            direct_s.append(clock() - before)
    own = cpu_share(usage.ru_utime + usage.ru_stime - cpu0, wall)
    busy = busy_by_core[cpus[0]] if len(cpus) == 1 else float("nan")
    return {
        "images": len(infer_s),
        "seconds": wall,
        "img_per_s": len(infer_s) / wall,
        "decode_ms": summarize_ms(decode_s),
        "infer_ms": summarize_ms(infer_s),
        "keras_call_ms": summarize_ms(direct_s),
        "cpu_percent": own,
        "interference_percent": max(0.0, busy - own),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bare backend loop: decode + infer, one core, one thread.")
    parser.add_argument(
        "--backend",
        choices=(*SERVICE_KINDS, "tutorial"),
        required=True,
        help="a service backend, or `tutorial`: the baseline's PIL decode + Keras predict()",
    )
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--cpu", type=int, default=None, help="the one core to run on")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per image")
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args(argv)

    cpus = pin_to_cpu(args.cpu)  # before any runtime sizes its thread pools
    loaded = time.perf_counter()
    if args.backend == "tutorial":
        from bench.tutorial import load_model

        # Thread pools at TensorFlow's defaults, as in the baseline server.
        model = load_model(args.model_path)
        info: dict[str, object] = {"backend": "tutorial", "model_path": args.model_path}
        measure = partial(measure_tutorial, model)
    else:
        sys.path.insert(0, str(CLASSIFIER))
        from classifier.backends import load_backend

        backend = load_backend(
            args.backend, args.model_path, args.labels, threads=args.threads, inter_op_threads=args.threads
        )
        info = backend.info()
        measure = partial(measure_image, backend)
    load_s = time.perf_counter() - loaded
    result = {
        "backend": args.backend,
        "model_path": args.model_path,
        "cpus": cpus,
        "threads": args.threads,
        "load_s": load_s,
        "info": info,
        "images": {path.name: measure(path.read_bytes(), args.seconds) for path in args.images},
    }
    json.dump(result, sys.stdout, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
