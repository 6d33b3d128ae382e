"""A long fuzz run of the input readers: mutated photos and DICOM files into ``read_input``.

The mutations are those of the bounded property test in tests/test_imaging_reject.py
(truncate, flip a bit, overwrite up to 8 bytes in the first 400), one to four per example,
applied to a few valid seed files. ``read_input`` may accept a mutated file (then its
frames must be RGB8, C-contiguous) or reject it with ``InputRejected``; anything else is a
bug. Each example is reproducible from ``--seed`` and its index.

    .venv/bin/python benchmarks/fuzz_readers.py [--examples 5000] [--seed 0] [--out DIR]

Prints a summary (examples, accepted, rejected by reason, slowest, each unexpected
exception with the file its bytes were saved to) and exits 1 if there was any unexpected
exception. The example in progress is always on disk as ``DIR/current.bin``: if a decoder
crashes the interpreter itself, that file is the culprit. What the C decoders print on
standard error goes to ``DIR/decoders.log``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from pydicom.data import get_testdata_file

from cervixbatch.errors import InputRejected
from cervixbatch.imaging.frames import ReadLimits
from cervixbatch.imaging.reader import read_input

__all__ = ["Summary", "fuzz", "main", "mutate", "seed_files"]

LIMITS = ReadLimits(min_side=1)
MIN_WORKING_SIDE = 16
SLOW_SECONDS = 5.0
# The seeds of the property test, then a few more formats and DICOM codecs.
TEST_SEEDS = ("jpeg", "png", "dicom", "dicom_native")


def _quadrants_bgr(height: int = 32, width: int = 40) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    img[:h, :w] = (0, 0, 255)
    img[:h, w:] = (0, 255, 0)
    img[h:, :w] = (255, 0, 0)
    img[h:, w:] = (255, 255, 255)
    return img


def _encode(ext: str, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, _quadrants_bgr(), params or [])
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {ext}")
    return bytes(buf.tobytes())


def _bundled(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name} is not bundled with this pydicom")
    return Path(path).read_bytes()


def seed_files() -> dict[str, bytes]:
    """The valid files that mutations start from."""
    return {
        "jpeg": _encode(".jpg"),
        "png": _encode(".png"),
        "dicom": _bundled("SC_rgb_rle.dcm"),
        "dicom_native": _bundled("MR_small_bigendian.dcm"),
        "jpeg_progressive": _encode(".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "webp": _encode(".webp"),
        "bmp": _encode(".bmp"),
        "tiff": _encode(".tif"),
        "dicom_jpeg_ybr": _bundled("SC_rgb_dcmtk_+eb+cy+np.dcm"),
        "dicom_jpeg_lossless": _bundled("SC_rgb_jpeg_gdcm.dcm"),
        "dicom_j2k": _bundled("JPEG2000.dcm"),
        "dicom_2frame": _bundled("SC_rgb_rle_2frame.dcm"),
    }


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four truncations, bit flips or header overwrites (the property test's)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["truncate", "flip", "overwrite"])
        if not out:
            break
        if kind == "truncate":
            del out[rng.randint(0, len(out) - 1) :]
        elif kind == "flip":
            pos = rng.randint(0, len(out) - 1)
            out[pos] ^= 1 << rng.randint(0, 7)
        else:  # headers are where parsers trust the file most
            pos = rng.randint(0, min(len(out), 400) - 1)
            chunk = rng.randbytes(rng.randint(1, 8))
            out[pos : pos + len(chunk)] = chunk
    return bytes(out)


@dataclasses.dataclass(slots=True)
class Summary:
    """What a fuzz run found."""

    examples: int = 0
    accepted: int = 0
    rejected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    by_seed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    unexpected: list[dict[str, str]] = dataclasses.field(default_factory=list)
    slow: list[dict[str, object]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    slowest_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "examples": self.examples,
            "accepted": self.accepted,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected.most_common()),
            "examples_by_seed": dict(sorted(self.by_seed.items())),
            "unexpected": self.unexpected,
            "slow": self.slow,
            "seconds": round(self.seconds, 1),
            "slowest_s": round(self.slowest_s, 3),
        }


def _check_frames(decoded: object) -> str | None:
    frames = getattr(decoded, "frames", ())
    if not frames:
        return "accepted with no frames"
    for frame in frames:
        rgb = frame.rgb
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            return f"frame is {rgb.dtype} {rgb.shape}, not RGB8"
        if not rgb.flags.c_contiguous:
            return "frame is not C-contiguous"
    return None


def fuzz(examples: int, seed: int, out: Path, seeds: dict[str, bytes]) -> Summary:
    """Runs ``examples`` mutated files through ``read_input``; saves the bad ones in ``out``."""
    summary = Summary()
    names = sorted(seeds)
    current = out / "current.bin"
    started = time.perf_counter()
    for index in range(examples):
        rng = random.Random(f"{seed}:{index}")  # noqa: S311 - reproducible, not secret
        name = rng.choice(names)
        data = mutate(seeds[name], rng)
        current.write_bytes(data)
        summary.examples += 1
        summary.by_seed[name] += 1
        t0 = time.perf_counter()
        problem: str | None = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                decoded = read_input(current, LIMITS, min_working_side=MIN_WORKING_SIDE)
        except InputRejected as exc:
            summary.rejected[exc.reason.value] += 1
        except Exception as exc:  # noqa: BLE001 - exactly what this run looks for
            problem = "".join(traceback.format_exception_only(exc)).strip()
        else:
            problem = _check_frames(decoded)
            if problem is None:
                summary.accepted += 1
        elapsed = time.perf_counter() - t0
        summary.slowest_s = max(summary.slowest_s, elapsed)
        if elapsed > SLOW_SECONDS:
            saved = out / f"slow-{index:06d}-{name}.bin"
            saved.write_bytes(data)
            summary.slow.append(
                {"index": index, "seed": name, "seconds": round(elapsed, 2), "saved": str(saved)}
            )
        if problem is not None:
            saved = out / f"unexpected-{index:06d}-{name}.bin"
            saved.write_bytes(data)
            summary.unexpected.append(
                {"index": str(index), "seed": name, "error": problem, "saved": str(saved)}
            )
    current.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - started
    return summary


def main(argv: list[str] | None = None) -> int:
    """The command: parse, fuzz, print; 1 when something other than a rejection happened."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000, help="mutated files to try")
    parser.add_argument("--seed", type=int, default=0, help="the run's random seed")
    parser.add_argument(
        "--out", type=Path, help="folder for the bytes of bad examples (default: a temp dir)"
    )
    parser.add_argument(
        "--test-seeds-only",
        action="store_true",
        help="only the property test's four seed files (jpeg, png, two DICOM)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="cervixbatch-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    seeds = seed_files()
    if args.test_seeds_only:
        seeds = {k: v for k, v in seeds.items() if k in TEST_SEEDS}
    with _stderr_to(out / "decoders.log"):  # libpng, libtiff and OpenCV chatter
        summary = fuzz(args.examples, args.seed, out, seeds)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        _print_text(summary, out)
    return 1 if summary.unexpected else 0


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (what C decoders print) to ``path`` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _print_text(summary: Summary, out: Path) -> None:
    print(
        f"examples {summary.examples}: accepted {summary.accepted}, "
        f"rejected {sum(summary.rejected.values())}, unexpected {len(summary.unexpected)} "
        f"({summary.seconds:.1f} s, slowest {summary.slowest_s * 1000:.0f} ms)"
    )
    for reason, count in summary.rejected.most_common():
        print(f"  rejected {reason:<20} {count}")
    print("  per seed: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.by_seed.items())))
    for item in summary.slow:
        print(f"  slow: example {item['index']} ({item['seed']}) took {item['seconds']} s")
        print(f"    bytes saved to {item['saved']}")
    for item in summary.unexpected:
        print(f"  UNEXPECTED example {item['index']} ({item['seed']}): {item['error']}")
        print(f"    bytes saved to {item['saved']}")
    if summary.unexpected:
        print(f"bad examples are in {out}")


if __name__ == "__main__":
    sys.exit(main())
