import csv
import pickle

import numpy as np
import pytest
import torch

from adaptmem.data.fewshot import (
    MINIMAL_SETS,
    cub_split,
    evaluate_lake_runs,
    load_cifar_fewshot,
    load_cub,
    load_fewshot_splits,
    load_mini_imagenet,
    load_omniglot,
    load_tiered_imagenet,
    omniglot_splits,
    read_lake_runs,
    read_omniglot_set,
)
from adaptmem.data.fewshot import omniglot as omniglot_module
from tests.data.fewshot_fakes import (
    encode_png,
    glyph,
    one_thread,  # noqa: F401 (a fixture, used by name)
    write_cifar100,
    write_minimal_omniglot,
    write_omniglot,
)

pytest.importorskip("PIL")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("layout", ["zip", "folder", "torchvision"])
def test_omniglot_reader_reads_every_public_layout_alike(tmp_path, layout):
    alphabets = {"Greek": 2, "Latin": 3}
    write_omniglot(tmp_path / "ref", "images_background", alphabets, layout="zip", size=105)
    write_omniglot(tmp_path / "x", "images_background", alphabets, layout=layout, size=105)
    ref = read_omniglot_set(tmp_path / "ref" / "images_background.zip")
    got = load_omniglot(tmp_path / "x", ["images_background"])["images_background"]
    assert got.names == [
        "Greek/character01",
        "Greek/character02",
        "Latin/character01",
        "Latin/character02",
        "Latin/character03",
    ]
    assert got.images.shape == (20, 1, 28, 28) and got.images.dtype == torch.uint8
    assert torch.equal(got.images, ref.images) and torch.equal(got.labels, ref.labels)
    # Inverted: the white page becomes 0, the black strokes bright.
    assert float(got.images.float().mean()) < 60 and int(got.images.max()) > 200


def test_omniglot_missing_set_says_where_it_looked_and_download_is_used_when_asked(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"images_evaluation.zip .* --download \(download_if_missing=True"):
        load_omniglot(tmp_path, ["images_evaluation"])
    calls = []

    def fake_download(urls, dest, md5=None):
        calls.append((urls, md5))
        write_omniglot(tmp_path / "src", "images_evaluation", {"ULOG": 1})
        (tmp_path / "src" / "images_evaluation.zip").rename(dest)
        return dest

    monkeypatch.setattr(omniglot_module, "download", fake_download)
    sets = load_omniglot(tmp_path, ["images_evaluation"], download_if_missing=True)
    assert sets["images_evaluation"].names == ["ULOG/character01"]
    assert (
        calls[0][0][0].endswith("/python/images_evaluation.zip") and calls[0][1] == "6b91aef0f799c5bb55b94e3f2daec811"
    )


# Character counts of the 50 alphabets (Lake et al.'s data); names of alphabets outside the
# Vinyals validation/test lists do not matter for the split.
BACKGROUND = {
    "Armenian": 41,
    "Bengali": 46,
    "Early_Aramaic": 22,
    "Hebrew": 22,
    "Mkhedruli_(Georgian)": 41,
    **{
        f"Background_{i:02d}": n
        for i, n in enumerate(
            [26, 40, 24, 14, 26, 33, 23, 29, 26, 43, 24, 48, 52, 16, 40, 47, 40, 26, 20, 34, 33, 14, 42, 17, 55]
        )
    },
}
EVALUATION = {
    "Gurmukhi": 45,
    "Kannada": 41,
    "Keble": 26,
    "Malayalam": 47,
    "Manipuri": 40,
    "Mongolian": 30,
    "Old_Church_Slavonic_(Cyrillic)": 45,
    "Oriya": 46,
    "Sylheti": 28,
    "Syriac_(Serto)": 23,
    "Tengwar": 25,
    "Tibetan": 42,
    "ULOG": 26,
    "Angelic": 20,
    "Atemayar_Qelisayer": 26,
    "Atlantean": 26,
    "Aurek-Besh": 26,
    "Avesta": 26,
    "Ge_ez": 26,
    "Glagolitic": 45,
}


@pytest.fixture(scope="module")
def full_omniglot_names():
    """Both full sets at their real sizes (1623 characters), one 8x8 drawing each."""
    from adaptmem.data.fewshot import ClassImages

    def fake(alphabets):
        names = [f"{a}/character{c:02d}" for a, n in alphabets.items() for c in range(1, n + 1)]
        return ClassImages(torch.zeros(len(names), 1, 8, 8, dtype=torch.uint8), torch.arange(len(names)), names)

    return {"images_background": fake(BACKGROUND), "images_evaluation": fake(EVALUATION)}


def test_vinyals_split_has_1028_172_423_characters_times_four_rotations(full_omniglot_names):
    assert sum(BACKGROUND.values()) == 964 and sum(EVALUATION.values()) == 659
    s = omniglot_splits(full_omniglot_names, "vinyals")
    assert [len(s[k].names) for k in ("train", "val", "test")] == [1028, 172, 423]
    assert s["test"].num_classes == 4 * 423
    assert "Gurmukhi/character42" in s["test"].names and "Gurmukhi/character41" in s["train"].names


def test_background_evaluation_split_tests_on_every_evaluation_alphabet(full_omniglot_names):
    s = omniglot_splits(full_omniglot_names, "background_evaluation", rotations=(0,))
    assert [len(s[k].names) for k in ("train", "val", "test")] == [964 - 172, 172, 659]
    no_val = omniglot_splits(full_omniglot_names, "background_evaluation", val_alphabets=())
    assert set(no_val) == {"train", "test"} and len(no_val["train"].names) == 964


def test_split_errors_are_explicit(full_omniglot_names):
    with pytest.raises(ValueError, match="omniglot_splits: scheme must be one of"):
        omniglot_splits(full_omniglot_names, "random")
    with pytest.raises(ValueError, match="alphabets \\['Klingon'\\] are not in the loaded sets"):
        omniglot_splits(full_omniglot_names, "alphabets", test_alphabets=["Klingon"])
    only_background = {"images_background": full_omniglot_names["images_background"]}
    with pytest.raises(ValueError, match="split 'test' of scheme 'vinyals' is empty"):
        omniglot_splits(only_background, "vinyals")


def test_minimal_split_holds_out_whole_alphabets_and_dedupes_shared_ones(tmp_path):
    write_minimal_omniglot(tmp_path)
    s = load_fewshot_splits("omniglot-minimal", tmp_path)
    alph = {k: {n.split("/")[0] for n in v.names} for k, v in s.items()}
    assert alph["val"] == {"Early_Aramaic"} and alph["test"] == {"Sanskrit", "Tagalog"}
    assert alph["train"] == {"Balinese", "Greek", "Korean", "Latin", "Japanese_(katakana)"}
    assert len(s["train"].names) == 3 + 2 + 3 + 2 + 3  # Greek and Latin once
    assert s["train"].num_classes == 4 * 13


@pytest.mark.data
def test_real_minimal_omniglot_has_242_characters_in_8_alphabets(shared_data):
    sets = load_omniglot(shared_data / "omniglot", MINIMAL_SETS)
    s = omniglot_splits(sets, "minimal")
    assert sum(len(v.names) for v in s.values()) == 242
    assert [len(s[k].names) for k in ("train", "val", "test")] == [161, 22, 59]
    assert all(v.min_images_per_class() == 20 for v in s.values())
    assert s["train"].images.shape[1:] == (1, 28, 28)


def test_mini_imagenet_cache_pickle_layout(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 84, 84, 3), dtype=np.uint8)
    class_dict = {"n02": [1, 3, 5, 7, 9, 11], "n01": [0, 2, 4, 6, 8, 10]}
    with open(tmp_path / "mini-imagenet-cache-val.pkl", "wb") as f:
        pickle.dump({"image_data": images, "class_dict": class_dict}, f)
    c = load_mini_imagenet(tmp_path, "val")
    assert c.names == ["n01", "n02"] and c.images.shape == (12, 3, 84, 84)
    assert torch.equal(c.images_of(1, [2]), torch.from_numpy(images[5]).permute(2, 0, 1)[None])


def test_mini_imagenet_category_split_pickle_layout(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 84, 84, 3), dtype=np.uint8)
    d = {"data": images, "labels": [7, 7, 9, 9, 7, 9], "catname2label": {"n07": 7, "n09": 9}}
    with open(tmp_path / "miniImageNet_category_split_train_phase_train.pickle", "wb") as f:
        pickle.dump(d, f, protocol=2)
    c = load_mini_imagenet(tmp_path, "train")
    assert c.names == ["n07", "n09"] and c.labels.tolist() == [0, 0, 1, 1, 0, 1]


@pytest.mark.parametrize("layout", ["folders", "csv"])
def test_mini_imagenet_image_layouts_resize_to_84(tmp_path, layout):
    rng = np.random.default_rng(0)
    rows = []
    for wnid in ("n01", "n02"):
        for i in range(3):
            img = rng.integers(0, 256, (100, 90, 3), dtype=np.uint8)
            name = f"{wnid}{i:08d}.jpg"
            if layout == "folders":
                (tmp_path / "test" / wnid).mkdir(parents=True, exist_ok=True)
                encode_png(img, tmp_path / "test" / wnid / name)  # PNG bytes in .jpg: PIL sniffs the format
            else:
                (tmp_path / "images").mkdir(exist_ok=True)
                encode_png(img, tmp_path / "images" / name)
                rows.append((name, wnid))
    if layout == "csv":
        with open(tmp_path / "test.csv", "w", newline="") as f:
            csv.writer(f).writerows([("filename", "label"), *rows])
    c = load_mini_imagenet(tmp_path, "test")
    assert c.names == ["n01", "n02"] and c.images.shape == (6, 3, 84, 84)
    with pytest.raises(FileNotFoundError, match="no Mini-ImageNet 'val' split"):
        load_mini_imagenet(tmp_path, "val")


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar_fs_and_fc100_class_splits(tmp_path, as_tar):
    write_cifar100(tmp_path, as_tar=as_tar)
    fs = {s: load_cifar_fewshot(tmp_path, "cifar_fs", s) for s in ("train", "val", "test")}
    assert [len(fs[s].names) for s in ("train", "val", "test")] == [64, 16, 20]
    assert "whale" in fs["test"].names and "otter" in fs["val"].names
    assert (
        fs["train"].images.shape[1:] == (3, 32, 32) and fs["train"].min_images_per_class() == 3
    )  # train + test pooled
    fc = {s: load_cifar_fewshot(tmp_path, "fc100", s) for s in ("train", "val", "test")}
    assert [len(fc[s].names) for s in ("train", "val", "test")] == [60, 20, 20]
    assert not set(fc["train"].names) & set(fc["test"].names)


def test_cifar_missing_archive_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="read_cifar100: .*download_if_missing=True"):
        load_cifar_fewshot(tmp_path, "fc100", "train")


def write_lake_runs(root, n_runs=2, n=20, seed=0):
    """Lake's all_runs layout; test item i is a noisy copy of training class perm[i]."""
    rng = np.random.default_rng(seed)
    truth = {}
    for r in range(1, n_runs + 1):
        run = root / f"run{r:02d}"
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        glyphs = [glyph(rng, 105) for _ in range(n)]
        perm = rng.permutation(n)
        lines = []
        for k in range(n):
            encode_png(glyphs[k], run / "training" / f"class{k + 1:02d}.png")
        for i in range(n):
            img = glyphs[perm[i]].copy()
            img[rng.random(img.shape) < 0.01] = 0
            encode_png(img, run / "test" / f"item{i + 1:02d}.png")
            lines.append(f"run{r:02d}/test/item{i + 1:02d}.png run{r:02d}/training/class{perm[i] + 1:02d}.png")
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
        truth[run.name] = perm
    return truth


def test_lake_runs_evaluator_reports_error_per_run_and_mean(tmp_path):
    truth = write_lake_runs(tmp_path)
    runs = read_lake_runs(tmp_path)
    assert [r.name for r in runs] == ["run01", "run02"]
    assert runs[0].support_x.shape == (20, 1, 28, 28) and torch.equal(runs[0].query_y, torch.as_tensor(truth["run01"]))

    def nearest_neighbour(sx, sy, qx):
        d = torch.cdist(qx.flatten(1), sx.flatten(1))
        return sy[d.argmin(1)]

    perfect = evaluate_lake_runs(runs, nearest_neighbour)
    assert perfect.errors == {"run01": 0.0, "run02": 0.0} and perfect.mean_error == 0.0
    always_zero = evaluate_lake_runs(tmp_path, lambda sx, sy, qx: torch.zeros(len(qx), dtype=torch.long))
    assert always_zero.errors == {"run01": 95.0, "run02": 95.0}
    assert "| mean | 95.00 |" in always_zero.table()
    with pytest.raises(ValueError, match="returned \\(3,\\) predictions for 20 items"):
        evaluate_lake_runs(runs, lambda sx, sy, qx: torch.zeros(3))


@pytest.mark.parametrize("layout", ["png", "npz", "folder"])
def test_tiered_imagenet_reads_every_public_layout_alike(tmp_path, layout):
    from tests.data.fewshot_fakes import tiered_arrays, write_tiered_imagenet

    write_tiered_imagenet(tmp_path, layout)
    splits = {s: load_tiered_imagenet(tmp_path, s) for s in ("train", "val", "test")}
    assert [splits[s].names for s in ("train", "val")] == [["ntrain00", "ntrain01", "ntrain02"], ["nval00", "nval01"]]
    images, labels = tiered_arrays("train", 3)
    got = splits["train"]
    assert got.images.shape == (6, 3, 84, 84) and got.images.dtype == torch.uint8
    for c in range(3):  # PNG is lossless: each class holds exactly its images
        want = torch.from_numpy(images[labels["label_specific"] == c]).permute(0, 3, 1, 2)
        have = got.images_of(c)
        assert sorted(map(bytes, want.flatten(1).numpy())) == sorted(map(bytes, have.flatten(1).numpy()))
    assert not set(splits["train"].names) & set(splits["test"].names)


def test_tiered_imagenet_missing_split_says_where_it_looked_and_download_unpacks_the_release(tmp_path, monkeypatch):
    import tarfile

    from adaptmem.data.fewshot import tiered_imagenet
    from tests.data.fewshot_fakes import write_tiered_imagenet

    with pytest.raises(FileNotFoundError, match="no tieredImageNet 'train' split .*download_tiered_imagenet"):
        load_tiered_imagenet(tmp_path, "train")
    release = write_tiered_imagenet(tmp_path / "release", "png")
    fetched = []

    def fake_download(urls, dest, *, md5=None, timeout=30.0):
        fetched.append((urls[0], md5))
        with tarfile.open(dest, "w") as tar:  # the archive's own folder, as Ren et al. pack it
            for f in sorted(release.iterdir()):
                tar.add(f, arcname=f"tiered-imagenet/{f.name}")
        return dest

    monkeypatch.setattr(tiered_imagenet, "download", fake_download)
    splits = load_fewshot_splits("tiered-imagenet", tmp_path / "data", download=True)
    assert fetched == [(tiered_imagenet.ARCHIVE_URLS[0], tiered_imagenet.ARCHIVE_MD5)]
    assert [splits[s].num_classes for s in ("train", "val", "test")] == [3, 2, 2]
    assert tiered_imagenet.CLASSES == {"train": 351, "val": 97, "test": 160}


def test_cub_split_is_chen_et_al_rule_100_50_50_disjoint():
    from tests.data.fewshot_fakes import CUB_FIRST_CLASSES

    folders = [*CUB_FIRST_CLASSES, *(f"{i:03d}.Bird_{i}" for i in range(6, 201))]
    shuffled = [folders[i] for i in np.random.default_rng(0).permutation(200)]  # the listing order must not matter
    parts = {s: cub_split(shuffled, s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [100, 50, 50]
    assert set(parts["train"]) | set(parts["val"]) | set(parts["test"]) == set(folders)
    assert parts["train"][:2] == ["001.Black_footed_Albatross", "003.Sooty_Albatross"]
    assert parts["val"][0] == "002.Laysan_Albatross" and parts["test"][0] == "004.Groove_billed_Ani"


def test_cub_reads_the_folder_or_the_archive_resized_to_rgb_squares(tmp_path, monkeypatch):
    from adaptmem.data.fewshot import cub
    from tests.data.fewshot_fakes import cub_class_names, write_cub

    write_cub(tmp_path / "folder")
    splits = {s: load_cub(tmp_path / "folder", s) for s in ("train", "val", "test")}
    names = cub_class_names(8)
    assert splits["train"].names == names[0::2] and splits["val"].names == [names[1], names[5]]
    assert splits["test"].names == [names[3], names[7]]
    assert splits["train"].images.shape == (12, 3, 84, 84)  # varied sizes and grayscale -> 3 x 84 x 84
    with pytest.raises(FileNotFoundError, match="load_cub: CUB-200-2011 .* not found in .* --download"):
        load_cub(tmp_path / "none", "train")
    archive = write_cub(tmp_path / "archive", as_tgz=True)
    fetched = []

    def fake_download(urls, dest, *, md5=None, timeout=30.0):
        fetched.append((urls[0], md5))
        dest.write_bytes(archive.read_bytes())
        return dest

    monkeypatch.setattr(cub, "download", fake_download)
    got = load_fewshot_splits("cub", tmp_path / "data", download=True, flips=True)
    assert fetched == [(cub.ARCHIVE_URLS[0], cub.ARCHIVE_MD5)]
    assert torch.equal(got["test"].images, splits["test"].images) and got["test"].num_classes == 4  # 2 + mirrored


def test_downloads_land_in_the_sets_sub_folder_of_the_data_root(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_minimal_omniglot(src)
    dests = []

    def fake_download(urls, dest, md5=None):
        dests.append(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        (src / dest.name).rename(dest)
        return dest

    monkeypatch.setattr(omniglot_module, "download", fake_download)
    data = tmp_path / "data"
    splits = load_fewshot_splits("omniglot-minimal", data, download=True)
    assert dests == [data / "omniglot" / f"{s}.zip" for s in MINIMAL_SETS] and splits["train"].num_classes > 0
    again = load_fewshot_splits("omniglot-minimal", data)  # found there without a download
    assert again["test"].names == splits["test"].names and len(dests) == 2
