import numpy as np
import pytest
import torch

from adaptmem.data.fewshot import (
    ClassImages,
    Episode,
    EpisodeDataset,
    accuracy_ci,
    episode_from_torchmeta,
    episode_loader,
    merge_classes,
)
from tests.data.fewshot_fakes import one_thread  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def make_classes(n_classes=6, per_class=5, size=4, rotations=(0,)):
    # Image j of class c is filled with the value 10 * c + j, so a drawn image names its origin.
    vals = torch.arange(n_classes).repeat_interleave(per_class) * 10 + torch.arange(per_class).repeat(n_classes)
    images = vals.view(-1, 1, 1, 1).expand(-1, 1, size, size).to(torch.uint8).clone()
    images[:, :, 0, 1] = 255  # an off-centre marker that rotations move
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    perm = torch.randperm(len(labels))  # storage order must not matter
    return ClassImages(images[perm], labels[perm], [f"A/c{i}" for i in range(n_classes)], rotations)


def origin(x):
    """Class and image number of a drawn float image (see make_classes)."""
    v = round(float(x[0, 2, 2]) * 255)
    return v // 10, v % 10


def test_episode_shapes_labels_and_disjoint_support_query():
    ds = EpisodeDataset(make_classes(), n_way=3, k_shot=2, n_query=2, seed=0)
    ep = ds[7]
    assert ep.support_x.shape == (6, 1, 4, 4) and ep.query_x.shape == (6, 1, 4, 4)
    assert ep.support_x.dtype == torch.float32 and 0 <= float(ep.support_x.min()) and float(ep.support_x.max()) <= 1
    assert sorted(ep.support_y.tolist()) == [0, 0, 1, 1, 2, 2]
    # One class per label, and support and query images of a class are different drawings.
    cls_of = {}
    seen = set()
    for x, y in zip(torch.cat([ep.support_x, ep.query_x]), torch.cat([ep.support_y, ep.query_y])):
        c, j = origin(x)
        assert cls_of.setdefault(int(y), c) == c
        assert (c, j) not in seen
        seen.add((c, j))
    assert len(set(cls_of.values())) == 3


def test_episodes_are_a_pure_function_of_seed_and_index():
    ds = EpisodeDataset(make_classes(), 3, 1, 1, seed=5)
    a, b = ds[3], ds[3]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    other = EpisodeDataset(make_classes(), 3, 1, 1, seed=6)[3]
    assert not all(torch.equal(x, y) for x, y in zip(a, other))


def test_support_set_interleaves_classes_rather_than_grouping_them():
    ds = EpisodeDataset(make_classes(n_classes=6, per_class=8), 5, 5, 0, seed=0)
    grouped = 0
    for i in range(50):
        y = ds[i].support_y
        grouped += int(all(torch.equal(y[k * 5 : (k + 1) * 5], y[k * 5].repeat(5)) for k in range(5)))
    assert grouped == 0


def test_rotations_are_extra_classes_and_rotate_the_image():
    classes = make_classes(n_classes=2, rotations=(0, 90, 180, 270))
    assert classes.num_classes == 8 and classes.class_name(5) == "A/c1/rot090"
    x0, x90 = classes.images_of(4, [0]), classes.images_of(5, [0])
    assert torch.equal(x90, torch.rot90(x0, 1, dims=(-2, -1))) and not torch.equal(x0, x90)


def test_label_slots_draw_labels_from_the_larger_range():
    ds = EpisodeDataset(make_classes(n_classes=10), 3, 1, 1, label_slots=20, seed=0)
    labels = torch.cat([ds[i].support_y for i in range(40)])
    assert labels.max() >= 3 and labels.max() < 20 and len(labels.unique()) > 10


def test_loader_batches_ranks_disjoint_and_resume_continues_the_stream():
    ds = EpisodeDataset(make_classes(), 3, 1, 1, seed=0, num_episodes=64)
    full = list(episode_loader(ds, 4, num_batches=4))
    assert isinstance(full[0], Episode) and full[0].support_x.shape == (4, 3, 1, 4, 4)
    resumed = list(episode_loader(ds, 4, num_batches=4, start=2))
    assert len(resumed) == 2 and all(torch.equal(a, b) for a, b in zip(full[2], resumed[0]))
    r0 = next(iter(episode_loader(ds, 4, num_batches=1, rank=0, world_size=2)))
    r1 = next(iter(episode_loader(ds, 4, num_batches=1, rank=1, world_size=2)))
    assert torch.equal(r0.support_x, full[0].support_x) and torch.equal(r1.support_x, full[1].support_x)


def test_default_loader_covers_every_episode_with_a_short_last_batch():
    ds = EpisodeDataset(make_classes(), 3, 1, 1, seed=0, num_episodes=10)
    sizes = [len(ep.query_y) for ep in episode_loader(ds, 4)]
    assert sizes == [4, 4, 2]


def test_loader_with_workers_gives_the_same_episodes():
    ds = EpisodeDataset(make_classes(), 3, 1, 1, seed=0, num_episodes=16)
    a = list(episode_loader(ds, 4, num_workers=0))
    b = list(episode_loader(ds, 4, num_workers=2))
    assert all(torch.equal(x, y) for ea, eb in zip(a, b) for x, y in zip(ea, eb))


def test_select_and_merge_dedupe_by_name():
    c = make_classes(n_classes=4)
    part = c.select(["A/c1", "A/c3"])
    assert part.names == ["A/c1", "A/c3"] and len(part.labels) == 10
    assert origin(part.images_of(1, [0]).float()[0] / 255)[0] == 3
    merged = merge_classes([part, c.select(["A/c3", "A/c0"])])
    assert merged.names == ["A/c1", "A/c3", "A/c0"] and len(merged.labels) == 15


def test_invalid_arguments_name_the_function_and_argument():
    with pytest.raises(ValueError, match="ClassImages: images must be uint8"):
        ClassImages(torch.zeros(3, 1, 4, 4), torch.zeros(3), ["a"])
    with pytest.raises(ValueError, match="labels must lie in"):
        ClassImages(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 2]), ["a"])
    with pytest.raises(ValueError, match="rotations must be distinct multiples of 90"):
        make_classes(rotations=(0, 45))
    with pytest.raises(ValueError, match="EpisodeDataset: n_way=7 exceeds the 6 classes"):
        EpisodeDataset(make_classes(), 7, 1)
    with pytest.raises(ValueError, match="k_shot \\+ n_query = 6 images per class"):
        EpisodeDataset(make_classes(), 3, 5, 1)
    with pytest.raises(ValueError, match="label_slots \\(2\\) must be >= n_way \\(3\\)"):
        EpisodeDataset(make_classes(), 3, 1, label_slots=2)


def test_torchmeta_batch_adapter_shuffles_grouped_support_per_row():
    B, N, K, Q = 2, 3, 4, 2
    sy = torch.arange(N).repeat_interleave(K).repeat(B, 1)  # torchmeta groups by class
    sx = sy.view(B, N * K, 1, 1, 1).float().expand(B, N * K, 1, 5, 5).clone()
    qy = torch.arange(N).repeat_interleave(Q).repeat(B, 1)
    qx = qy.view(B, N * Q, 1, 1, 1).float().expand(B, N * Q, 1, 5, 5).clone()
    ep = episode_from_torchmeta({"train": (sx, sy), "test": [qx, qy]}, generator=torch.Generator().manual_seed(0))
    assert ep.support_x.shape == (B, N * K, 1, 5, 5) and torch.equal(ep.query_y, qy)
    assert torch.equal(ep.support_x[:, :, 0, 0, 0].long(), ep.support_y)  # images moved with their labels
    assert not torch.equal(ep.support_y, sy)
    assert torch.equal(ep.support_y.sort(1).values, sy)
    kept = episode_from_torchmeta({"train": (sx, sy), "test": (qx, qy)}, shuffle_support=False)
    assert torch.equal(kept.support_y, sy)
    with pytest.raises(TypeError, match="episode_from_torchmeta: batch must be a dict"):
        episode_from_torchmeta((sx, sy))
    with pytest.raises(ValueError, match="targets must be \\[B, n\\]"):
        episode_from_torchmeta({"train": (sx, sy[:, :3]), "test": (qx, qy)})


def test_accuracy_ci_is_196_std_over_sqrt_n():
    rng = np.random.default_rng(0)
    acc = rng.random(400)
    mean, ci = accuracy_ci(acc)
    assert mean == pytest.approx(acc.mean())
    assert ci == pytest.approx(1.96 * acc.std(ddof=1) / 20.0)  # sqrt(400) = 20, not 400
    with pytest.raises(ValueError, match="accuracy_ci"):
        accuracy_ci([])


def test_flips_are_extra_classes_that_mirror_before_rotating():
    classes = make_classes(n_classes=2, rotations=(0, 90)).with_flips()
    assert classes.variants == 4 and classes.num_classes == 8
    assert [classes.class_name(c) for c in range(4)] == [
        "A/c0/rot000",
        "A/c0/rot090",
        "A/c0/flip/rot000",
        "A/c0/flip/rot090",
    ]
    x = classes.images_of(4, [1])  # class 1, plain
    assert torch.equal(classes.images_of(6, [1]), torch.flip(x, dims=(-1,)))
    assert torch.equal(classes.images_of(7, [1]), torch.rot90(torch.flip(x, dims=(-1,)), 1, dims=(-2, -1)))
    assert not torch.equal(classes.images_of(6, [1]), x)  # the marker moved
    assert classes.select(["A/c1"]).flips and merge_classes([classes, classes]).flips
    assert classes.with_flips(False).num_classes == 4
    ep = EpisodeDataset(classes, 8, 1, 1, seed=0)[0]  # all 8 classes: each base class in 4 variants
    assert sorted(origin(x)[0] for x in ep.support_x) == [0, 0, 0, 0, 1, 1, 1, 1]


class _TorchvisionStyle(torch.utils.data.Dataset):
    """A stand-in for a torchvision dataset: ``(PIL image, int)`` items and a ``classes`` list."""

    def __init__(self, images, labels, classes):
        self.images, self.labels, self.classes = images, labels, classes

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def test_from_dataset_turns_any_image_label_dataset_into_class_images():
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (10, 12, 3), dtype=np.uint8) for _ in range(6)]
    labels = [2, 0, 2, 0, 2, 0]  # label 1 ("cat") has no image: dropped
    ds = _TorchvisionStyle([Image.fromarray(a) for a in arrays], labels, ["ant", "cat", "dog"])
    got = ClassImages.from_dataset(ds, rotations=(0, 180), flips=True)
    assert got.names == ["ant", "dog"] and got.images.shape == (6, 3, 10, 12) and got.num_classes == 8
    assert torch.equal(got.images_of(0, [0]), torch.from_numpy(arrays[1]).permute(2, 0, 1)[None])  # first "ant"
    as_tensors = [
        (torch.from_numpy(a).permute(2, 0, 1).float() / 255, torch.tensor(lab)) for a, lab in zip(arrays, labels)
    ]
    same = ClassImages.from_dataset(as_tensors, names=["ant", "cat", "dog"])  # ToTensor()-style floats
    assert torch.equal(same.images, got.images) and torch.equal(same.labels, got.labels)
    gray = ClassImages.from_dataset([(a[:, :, 0], lab) for a, lab in zip(arrays, labels)], image_size=8)
    assert gray.names == ["0", "2"] and gray.images.shape == (6, 1, 8, 8)
    EpisodeDataset(got, 2, 2, 1)[0]  # the sampler takes it as it is


def test_from_dataset_errors_name_the_item():
    rng = np.random.default_rng(0)
    mixed = [(rng.integers(0, 256, (8, 8), dtype=np.uint8), 0), (rng.integers(0, 256, (9, 8), dtype=np.uint8), 1)]
    with pytest.raises(ValueError, match="images have different shapes .*pass image_size="):
        ClassImages.from_dataset(mixed)
    with pytest.raises(TypeError, match=r"dataset\[0\] label must be an int >= 0, got 'a'"):
        ClassImages.from_dataset([(mixed[0][0], "a")])
    with pytest.raises(TypeError, match=r"dataset\[0\] must be an \(image, label\) pair"):
        ClassImages.from_dataset([mixed[0][0]])
    with pytest.raises(TypeError, match=r"dataset\[0\] array image must be uint8"):
        ClassImages.from_dataset([(mixed[0][0].astype(np.float32), 0)])
    with pytest.raises(ValueError, match="label 1 has no name"):
        ClassImages.from_dataset(mixed[:1] + [(mixed[0][0], 1)], names=["only"])
    with pytest.raises(TypeError, match="must be map-style"):
        ClassImages.from_dataset(iter(mixed))
