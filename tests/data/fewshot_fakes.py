"""Small generated files in the exact public layouts of the few-shot data sets (for tests)."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptmem.data.fewshot._images import encode_png


def glyph(rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """A random binary 'character': black strokes (0) on white (255), like Omniglot's PNGs."""
    img = np.full((size, size), 255, dtype=np.uint8)
    w, half = max(1, size // 14), size // 4  # stroke width and half length, in proportion to the page
    for _ in range(3):
        r, c = rng.integers(w, size - w, 2)
        if rng.random() < 0.5:
            img[r : r + w, max(0, c - half) : c + half] = 0
        else:
            img[max(0, r - half) : r + half, c : c + w] = 0
    return img


def omniglot_files(
    set_name: str, alphabets: dict[str, int], drawers: int = 4, size: int = 28, seed: int = 0
) -> dict[str, bytes]:
    """``{"<set>/<Alphabet>/characterNN/IIII_DD.png": png bytes}``."""
    rng = np.random.default_rng(seed)
    files, char_id = {}, 1
    for alphabet, n_chars in alphabets.items():
        for c in range(1, n_chars + 1):
            base = glyph(rng, size)
            for d in range(1, drawers + 1):
                noisy = base.copy()
                noisy[rng.random(base.shape) < 0.02] = 0
                files[f"{set_name}/{alphabet}/character{c:02d}/{char_id:04d}_{d:02d}.png"] = encode_png(noisy)
            char_id += 1
    return files


def write_omniglot(
    root: Path,
    set_name: str,
    alphabets: dict[str, int],
    *,
    layout: str = "zip",
    drawers: int = 4,
    size: int = 28,
    seed: int = 0,
) -> Path:
    """Write one set as Lake's zip (``layout="zip"``), unpacked (``"folder"``) or torchvision's
    ``omniglot-py/<set>`` (``"torchvision"``); returns the zip or the set folder."""
    files = omniglot_files(set_name, alphabets, drawers, size, seed)
    root.mkdir(parents=True, exist_ok=True)
    if layout == "zip":
        path = root / f"{set_name}.zip"
        with zipfile.ZipFile(path, "w") as z:
            dirs = sorted({n.rsplit("/", i)[0] + "/" for n in files for i in (1, 2, 3)})
            for d in dirs:
                z.writestr(d, b"")
            for name, data in files.items():
                z.writestr(name, data)
        return path
    base = root / "omniglot-py" if layout == "torchvision" else root
    for name, data in files.items():
        p = base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return base / set_name


MINIMAL_ALPHABETS_1 = {"Balinese": 3, "Early_Aramaic": 3, "Greek": 2, "Korean": 3, "Latin": 2}
MINIMAL_ALPHABETS_2 = {"Greek": 2, "Japanese_(katakana)": 3, "Latin": 2, "Sanskrit": 3, "Tagalog": 2}


def write_minimal_omniglot(root: Path, drawers: int = 4) -> Path:
    """Both minimal sets with the real alphabet names (few characters each), as zips."""
    write_omniglot(root, "images_background_small1", MINIMAL_ALPHABETS_1, drawers=drawers, seed=1)
    write_omniglot(root, "images_background_small2", MINIMAL_ALPHABETS_2, drawers=drawers, seed=1)
    return root


def cifar100_blobs(per_class: tuple[int, int] = (2, 1), seed: int = 0) -> dict[str, bytes]:
    """CIFAR-100 python pickles (``train``, ``test``, ``meta``) with ``per_class`` images per
    fine class in train / test; fine class f belongs to super-class f % 20 (as a stand-in)."""
    from adaptmem.data.fewshot.cifar import CIFAR_FS_TEST, CIFAR_FS_VAL

    rng = np.random.default_rng(seed)
    others = [f"class_{i:02d}" for i in range(100 - len(CIFAR_FS_VAL) - len(CIFAR_FS_TEST))]
    names = sorted(others + list(CIFAR_FS_VAL) + list(CIFAR_FS_TEST))
    blobs = {}
    for split, n in zip(("train", "test"), per_class):
        fine = np.repeat(np.arange(100), n)
        blobs[split] = pickle.dumps(
            {
                b"data": rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8),
                b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine % 20).tolist(),
            }
        )
    blobs["meta"] = pickle.dumps(
        {
            b"fine_label_names": [n.encode() for n in names],
            b"coarse_label_names": [f"super_{i}".encode() for i in range(20)],
        }
    )
    return blobs


def write_cifar100(root: Path, *, as_tar: bool) -> None:
    blobs = cifar100_blobs()
    root.mkdir(parents=True, exist_ok=True)
    if as_tar:
        with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
            for name, data in blobs.items():
                info = tarfile.TarInfo(f"cifar-100-python/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        (root / "cifar-100-python").mkdir(exist_ok=True)
        for name, data in blobs.items():
            (root / "cifar-100-python" / name).write_bytes(data)


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a shared, oversubscribed machine
    OpenMP's thread hand-offs make them 10-50x slower; the few-shot tests run single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def photo(rng: np.random.Generator, height: int, width: int, gray: bool = False) -> np.ndarray:
    """A random smooth 'photo' (``uint8 [H, W, 3]``, or ``[H, W]`` when ``gray``)."""
    base = rng.integers(0, 256, (4, 4, 1 if gray else 3)).astype(np.float64)
    img = np.kron(base, np.ones((height // 4 + 1, width // 4 + 1, 1)))[:height, :width]
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    return img[:, :, 0] if gray else img


def tiered_arrays(split: str, classes: int = 3, per_class: int = 2, seed: int = 0):
    """``(images uint8 [N, 84, 84, 3], labels dict)`` in Ren et al.'s label format; class ``c``
    of ``split`` is named ``n<split><c>`` and belongs to category ``c % 2``."""
    rng = np.random.default_rng([seed, SPLIT_SEEDS[split]])
    specific = np.repeat(np.arange(classes), per_class)[::-1].copy()  # out of class order, as shuffled files are
    images = np.stack([photo(rng, 84, 84) for _ in specific])
    labels = {
        "label_specific": specific,
        "label_general": specific % 2,
        "label_specific_str": [f"n{split}{c:02d}" for c in range(classes)],
        "label_general_str": ["category_a", "category_b"],
    }
    return images, labels


SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def write_tiered_imagenet(root: Path, layout: str = "png", classes: dict[str, int] | None = None) -> Path:
    """tieredImageNet in one public layout: ``"png"`` (Ren et al.'s ``<split>_images_png.pkl``
    with ``<split>_labels.pkl``), ``"npz"`` (``<split>_images.npz``) or ``"folder"``
    (``<split>/<class>/*.png``)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (classes or {"train": 3, "val": 2, "test": 2}).items():
        images, labels = tiered_arrays(split, n)
        if layout == "folder":
            for i, (img, c) in enumerate(zip(images, labels["label_specific"])):
                d = root / split / labels["label_specific_str"][c]
                d.mkdir(parents=True, exist_ok=True)
                encode_png(img, d / f"{i:04d}.png")
            continue
        (root / f"{split}_labels.pkl").write_bytes(pickle.dumps(labels))
        if layout == "png":  # each image a uint8 array of its PNG bytes, as in the release
            encoded = [np.frombuffer(encode_png(img), dtype=np.uint8) for img in images]
            (root / f"{split}_images_png.pkl").write_bytes(pickle.dumps(encoded))
        else:
            np.savez(root / f"{split}_images.npz", images=images)
    return root


CUB_FIRST_CLASSES = (
    "001.Black_footed_Albatross",
    "002.Laysan_Albatross",
    "003.Sooty_Albatross",
    "004.Groove_billed_Ani",
    "005.Crested_Auklet",
)


def cub_class_names(n: int = 8) -> list[str]:
    return [*CUB_FIRST_CLASSES, *(f"{i:03d}.Bird_{i}" for i in range(len(CUB_FIRST_CLASSES) + 1, n + 1))][:n]


def write_cub(root: Path, classes: int = 8, per_class: int = 3, *, as_tgz: bool = False, seed: int = 0) -> Path:
    """``CUB_200_2011/images/<NNN.Name>/*.jpg`` with photos of varying sizes (every fourth
    grayscale), unpacked or as ``CUB_200_2011.tgz``; returns the archive or the images folder."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    files = {}
    for c, name in enumerate(cub_class_names(classes)):
        for j in range(per_class):
            img = photo(rng, 60 + 7 * j, 90 - 5 * c, gray=(c * per_class + j) % 4 == 3)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=95)
            files[f"CUB_200_2011/images/{name}/{name.split('.')[1]}_{j:04d}.jpg"] = buf.getvalue()
    files["CUB_200_2011/classes.txt"] = "".join(
        f"{i + 1} {n}\n" for i, n in enumerate(cub_class_names(classes))
    ).encode()
    root.mkdir(parents=True, exist_ok=True)
    if as_tgz:
        path = root / "CUB_200_2011.tgz"
        with tarfile.open(path, "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root / "CUB_200_2011" / "images"
