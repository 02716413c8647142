"""The data sources of the dataset tier (fxtract._data): tiny synthetic files in tmp_path, 32 px images."""

from __future__ import annotations

import doctest
import io
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fxtract import FxtractError
from fxtract._data import (
    IMAGENET_MEAN,
    Batch,
    DataNotFoundError,
    DataPackageError,
    DataSourceError,
    Item,
    collate,
    decode_image,
    describe_transform,
    image_transform,
    open_source,
)

RAW = image_transform(image_size=None, resize=None, normalize=False)  # PIL -> [0, 1] floats, no geometry
SMALL = image_transform(image_size=32, resize=32)


def save(path, mode="RGB", color=(255, 0, 0), size=(32, 32), fmt=None, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt, **kwargs)
    return path


def pixel(source, i=0):
    """The RGB value (0..255) of the top-left pixel of item i of a source opened with RAW."""
    item = source[i]
    assert item.error is None, item.error
    return tuple(round(float(v) * 255) for v in item.inputs[:, 0, 0])


def good(items):
    return [it for it in items if it.error is None]


# ---------------------------------------------------------------------------------------------
# Image folders


def test_image_folder_classes_sorted_recursive_and_filtered(tmp_path):
    save(tmp_path / "dog" / "b.PNG")
    save(tmp_path / "dog" / "deep" / "er" / "a.webp", fmt="WEBP", lossless=True)
    save(tmp_path / "cat" / "z.JPEG")
    save(tmp_path / "cat" / "a.bmp")
    save(tmp_path / "cat" / ".hidden.png")
    save(tmp_path / ".cache" / "x.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    save(tmp_path / "cat" / "anim.gif", fmt="GIF")
    source = open_source(tmp_path, transform=SMALL)
    assert source.kind == "image-folder"
    assert source.classes == ["cat", "dog"]
    assert [source.source(i) for i in range(len(source))] == [
        "cat/a.bmp",
        "cat/z.JPEG",
        "dog/b.PNG",
        "dog/deep/er/a.webp",
    ]
    assert [source.label(i) for i in range(len(source))] == [0, 0, 1, 1]
    items = [source[i] for i in range(len(source))]
    assert all(it.error is None and it.inputs.shape == (3, 32, 32) for it in items)
    assert [it.label for it in items] == [0, 0, 1, 1]
    json.dumps(source.describe())
    assert source.describe()["count"] == 4 and source.describe()["classes"] == ["cat", "dog"]


def test_flat_folder_has_no_labels(tmp_path):
    save(tmp_path / "b.png")
    save(tmp_path / "a.jpg")
    save(tmp_path / "more" / "c.png")
    source = open_source(tmp_path, transform=SMALL)
    assert source.classes is None
    assert [source.source(i) for i in range(3)] == ["a.jpg", "b.png", "more/c.png"]
    assert source.label(0) is None and source[0].label is None


def test_default_transform_is_resize_256_crop_224_imagenet(tmp_path):
    save(tmp_path / "a.png", size=(64, 48), color=(0, 0, 0))
    source = open_source(tmp_path)
    x = source[0].inputs
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0], -torch.tensor(IMAGENET_MEAN) / torch.tensor([0.229, 0.224, 0.225]))
    assert source.describe()["transform"] == {
        "type": "fxtract.image_transform",
        "resize": 256,
        "crop": [224, 224],
        "interpolation": "bilinear",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }


@pytest.mark.parametrize(
    ("mode", "color", "fmt", "expected"),
    [
        ("RGB", (10, 200, 30), "PNG", (10, 200, 30)),
        ("RGB", (10, 200, 30), "BMP", (10, 200, 30)),
        ("L", 128, "PNG", (128, 128, 128)),
        ("L", 128, "JPEG", (128, 128, 128)),
        ("1", 1, "PNG", (255, 255, 255)),
        ("I;16", 65535, "PNG", (255, 255, 255)),
        ("I;16", 257 * 100, "PNG", (100, 100, 100)),
        ("RGBA", (255, 0, 0, 255), "PNG", (255, 0, 0)),
        ("RGBA", (255, 0, 0, 0), "PNG", (255, 255, 255)),  # transparent: composited on white
        ("RGBA", (0, 0, 0, 128), "WEBP", (127, 127, 127)),
        ("LA", (0, 0), "PNG", (255, 255, 255)),
        ("CMYK", (0, 0, 0, 0), "JPEG", (255, 255, 255)),
        ("CMYK", (255, 0, 0, 0), "JPEG", (0, 255, 255)),
    ],
)
def test_modes_become_rgb(tmp_path, mode, color, fmt, expected):
    extra = {"lossless": True} if fmt == "WEBP" else {}
    save(tmp_path / f"x.{fmt.lower()}", mode=mode, color=color, fmt=fmt, **extra)
    got = pixel(open_source(tmp_path, transform=RAW))
    tolerance = 3 if fmt == "JPEG" else 1
    assert all(abs(g - e) <= tolerance for g, e in zip(got, expected)), (got, expected)


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (32, 32), 1)
    image.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    image.save(tmp_path / "opaque.png")
    image.save(tmp_path / "see-through.png", transparency=1)
    source = open_source(tmp_path, transform=RAW)
    assert [source.source(i) for i in range(2)] == ["opaque.png", "see-through.png"]
    assert pixel(source, 0) == (255, 0, 0)
    assert pixel(source, 1) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (32, 16), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 16, 16))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: the left half ends on top
    image.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    x = open_source(tmp_path, transform=RAW)[0].inputs
    assert x.shape == (3, 32, 16)
    assert x[0, 2, 8] > 0.9 and x[2, 2, 8] < 0.1  # top: red
    assert x[2, 29, 8] > 0.9 and x[0, 29, 8] < 0.1  # bottom: blue


def test_corrupt_images_are_item_errors_and_collate_reports_them(tmp_path):
    save(tmp_path / "a_good.png")
    buffer = io.BytesIO()
    Image.effect_noise((32, 32), 64).convert("RGB").save(buffer, "JPEG")
    (tmp_path / "b_truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "c_text.png").write_text("this is not a png")
    (tmp_path / "d_empty.bmp").write_bytes(b"")
    source = open_source(tmp_path, transform=SMALL)
    items = [source[i] for i in range(len(source))]
    assert items[0].error is None
    assert items[1].inputs is None and items[1].error.startswith("cannot decode image 'b_truncated.jpg'")
    assert "truncated" in items[1].error
    assert items[2].error == "cannot decode image 'c_text.png': not an image format PIL can read"
    assert items[3].error == "cannot decode image 'd_empty.bmp': the file is empty (0 bytes)"
    batch = collate(items)
    assert batch.inputs.shape == (1, 3, 32, 32) and batch.indices.tolist() == [0]
    assert [i for i, _ in batch.failed] == [1, 2, 3] and batch.failed[1][1] == items[2].error


def test_decode_image_reasons_are_stable_across_runs(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    reasons = set()
    for _ in range(2):
        with pytest.raises(Exception) as info:
            decode_image(path, "x.png")
        reasons.add(str(info.value))
    assert len(reasons) == 1 and "0x" not in reasons.pop()


def test_a_failing_transform_is_an_item_error(tmp_path):
    save(tmp_path / "a.png")

    def broken(image):
        raise RuntimeError("boom")

    item = open_source(tmp_path, transform=broken)[0]
    assert item.error == "transform failed on 'a.png': RuntimeError: boom"


@pytest.mark.parametrize("name", ["missing", "missing.pt", "missing.txt"])
def test_a_path_that_does_not_exist(tmp_path, name):
    (tmp_path / "misisng").mkdir()
    with pytest.raises(
        DataNotFoundError, match=r"no such file or folder: .*Did you mean 'misisng'.*DATA must be"
    ) as e:
        open_source(tmp_path / name)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, FxtractError)


def test_a_folder_without_images(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("x")
    save(tmp_path / ".hidden.png")
    with pytest.raises(
        DataSourceError, match=r"no images in folder .*\.jpg, \.jpeg, \.png, \.webp, \.bmp, any case"
    ) as e:
        open_source(tmp_path)
    assert isinstance(e.value, ValueError)


def test_an_unknown_extension_or_one_image(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"1")
    with pytest.raises(DataSourceError, match=r"cannot tell what .*'\.bin'"):
        open_source(tmp_path / "x.bin")
    save(tmp_path / "a.png")
    with pytest.raises(DataSourceError, match="is one image; pass the folder"):
        open_source(tmp_path / "a.png")


# ---------------------------------------------------------------------------------------------
# File lists


def test_txt_file_list(tmp_path):
    save(tmp_path / "imgs" / "a.png", color=(255, 0, 0))
    save(tmp_path / "imgs" / "my photo.png", color=(0, 255, 0))
    outside = save(tmp_path.parent / f"{tmp_path.name}-elsewhere" / "c.png", color=(0, 0, 255))
    lines = ["# a comment", "imgs/a.png\t3", "imgs/my photo.png", "", f"{outside} 7", "imgs/gone.png 1"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    source = open_source(tmp_path / "list.txt", transform=RAW)
    assert source.kind == "file-list" and len(source) == 4 and source.classes is None
    assert [source.label(i) for i in range(4)] == [3, None, 7, 1]
    assert [pixel(source, i) for i in range(3)] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert source.source(1) == "imgs/my photo.png"
    missing = source[3]
    assert missing.inputs is None and missing.error.startswith("no such file: 'imgs/gone.png' (")
    assert str(tmp_path / "imgs" / "gone.png") in missing.error


def test_csv_file_list_with_label_names(tmp_path):
    for name in ("a", "b", "c"):
        save(tmp_path / f"{name}.jpg")
    (tmp_path / "list.csv").write_text("Filename,species,extra\na.jpg,dog,1\nb.jpg,cat,2\nc.jpg,dog,3\n")
    source = open_source(tmp_path / "list.csv", transform=SMALL, label_column="species")
    assert source.classes == ["cat", "dog"]
    assert [source[i].label for i in range(3)] == [1, 0, 1]
    unlabeled = open_source(tmp_path / "list.csv", transform=SMALL)  # no column named like a label
    assert unlabeled.classes is None and unlabeled.label(0) is None
    (tmp_path / "auto.csv").write_text("path,label\na.jpg,5\nb.jpg,6\n")
    assert open_source(tmp_path / "auto.csv", transform=SMALL).label(1) == 6


def test_csv_missing_columns_are_listed(tmp_path):
    (tmp_path / "list.csv").write_text("picture,kind\na.jpg,dog\n")
    with pytest.raises(
        DataSourceError, match=r"no path column \(looked for path, .*its columns: picture, kind"
    ):
        open_source(tmp_path / "list.csv")
    with pytest.raises(
        DataSourceError, match=r"no column 'knd'. Did you mean 'kind'\? Its columns: picture, kind"
    ):
        open_source(tmp_path / "list.csv", image_column="picture", label_column="knd")
    assert open_source(tmp_path / "list.csv", image_column="picture", label_column="kind").classes == ["dog"]


def test_empty_file_list(tmp_path):
    (tmp_path / "list.txt").write_text("# nothing\n\n")
    with pytest.raises(DataSourceError, match="lists no files"):
        open_source(tmp_path / "list.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataSourceError, match=r"cannot read file list .*UnicodeDecodeError"):
        open_source(tmp_path / "binary.txt")


# ---------------------------------------------------------------------------------------------
# Tensor files and in-memory inputs


def hf_inputs(n=5, length=7):
    return {
        "input_ids": torch.arange(n * length).reshape(n, length),
        "attention_mask": torch.ones(n, length, dtype=torch.long),
    }


def test_pt_tensor_and_dict(tmp_path):
    x = torch.randn(5, 3, 4, 4)
    torch.save(x, tmp_path / "x.pt")
    source = open_source(tmp_path / "x.pt")
    assert source.kind == "tensors" and len(source) == 5 and source.source(3) == "x.pt[3]"
    assert torch.equal(source[3].inputs, x[3])
    inputs = {**hf_inputs(), "labels": torch.tensor([0, 1, 2, 1, 0])}
    torch.save(inputs, tmp_path / "tokens.pt")
    keyword = open_source(tmp_path / "tokens.pt")
    assert sorted(keyword[0].inputs) == ["attention_mask", "input_ids", "labels"] and keyword.label(0) is None
    labeled = open_source(tmp_path / "tokens.pt", label_column="labels")
    item = labeled[2]
    assert sorted(item.inputs) == ["attention_mask", "input_ids"] and item.label == 2
    assert torch.equal(item.inputs["input_ids"], inputs["input_ids"][2])
    batch = collate([labeled[i] for i in range(5)])
    assert torch.equal(batch.inputs["input_ids"], inputs["input_ids"]) and batch.labels.tolist() == [
        0,
        1,
        2,
        1,
        0,
    ]


def test_ready_inputs_get_no_image_transform(tmp_path):
    x = torch.randn(2, 3, 8, 8)
    torch.save(x, tmp_path / "x.pt")
    for source in (open_source(tmp_path / "x.pt", transform=SMALL), open_source(x, transform=SMALL)):
        assert torch.equal(source[1].inputs, x[1]) and source.describe()["transform"] is None


def test_pt_refuses_lists(tmp_path):
    torch.save([{"input_ids": torch.zeros(3)}, {"input_ids": torch.zeros(3)}], tmp_path / "rows.pt")
    with pytest.raises(
        DataSourceError, match=r"holds a list of 2 dict; save one Tensor .* or one dict of Tensors"
    ):
        open_source(tmp_path / "rows.pt")


@pytest.mark.parametrize("suffix", [".pt", ".npy", ".safetensors"])
def test_a_corrupt_tensor_file(tmp_path, suffix):
    (tmp_path / f"x{suffix}").write_bytes(b"not a tensor file")
    with pytest.raises(DataSourceError, match=rf"cannot read tensor file '.*x\{suffix}': \w+"):
        open_source(tmp_path / f"x{suffix}")


def test_npy_is_memory_mapped(tmp_path):
    array = np.arange(60, dtype=np.float32).reshape(5, 3, 4)
    np.save(tmp_path / "x.npy", array)
    source = open_source(tmp_path / "x.npy")
    assert isinstance(source._columns[None], np.memmap)
    assert torch.equal(source[4].inputs, torch.from_numpy(array[4]))
    assert collate([source[i] for i in range(5)]).inputs.shape == (5, 3, 4)


def test_safetensors_is_read_lazily(tmp_path):
    from safetensors.torch import save_file

    inputs = {**hf_inputs(4), "labels": torch.tensor([1, 0, 1, 1])}
    save_file(inputs, tmp_path / "x.safetensors")
    source = open_source(tmp_path / "x.safetensors", label_column="labels")
    assert not isinstance(next(iter(source._columns.values())), torch.Tensor)  # slices, read per row
    item = source[1]
    assert torch.equal(item.inputs["attention_mask"], inputs["attention_mask"][1]) and item.label == 0


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_tensor_lengths_must_agree(tmp_path, suffix):
    from safetensors.torch import save_file

    inputs = {
        "input_ids": torch.zeros(5, 7, dtype=torch.long),
        "attention_mask": torch.zeros(4, 7, dtype=torch.long),
    }
    path = tmp_path / f"x{suffix}"
    torch.save(inputs, path) if suffix == ".pt" else save_file(inputs, path)
    with pytest.raises(
        DataSourceError, match=r"not have the same number of samples \(first dimension\): "
    ) as e:
        open_source(path)
    assert "input_ids: [5, 7]" in str(e.value) and "attention_mask: [4, 7]" in str(e.value)


def test_label_column_must_exist_and_be_ints(tmp_path):
    torch.save({**hf_inputs(), "label": torch.zeros(5)}, tmp_path / "x.pt")
    with pytest.raises(
        DataSourceError, match=r"no 'labels' for labels. Did you mean 'label'\? It holds: input_ids"
    ):
        open_source(tmp_path / "x.pt", label_column="labels")
    with pytest.raises(DataSourceError, match="must be a 1-D integer tensor"):
        open_source(tmp_path / "x.pt", label_column="label")
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    with pytest.raises(DataSourceError, match=r"a \.npy file holds one array"):
        open_source(tmp_path / "x.npy", label_column="labels")


def test_in_memory_tensor_and_dict():
    x = torch.randn(4, 3)
    source = open_source(x)
    assert source.kind == "memory" and len(source) == 4 and torch.equal(source[2].inputs, x[2])
    assert source.source(2) == "tensor[2]"
    tokens = open_source({**hf_inputs(4), "labels": torch.tensor([3, 2, 1, 0])}, label_column="labels")
    assert sorted(tokens[0].inputs) == ["attention_mask", "input_ids"] and tokens[0].label == 3
    with pytest.raises(DataSourceError, match="same number of samples"):
        open_source({"a": torch.zeros(3, 2), "b": torch.zeros(2, 2)})
    with pytest.raises(DataSourceError, match="is a scalar"):
        open_source(torch.tensor(1.0))
    with pytest.raises(DataSourceError, match="cannot use a int as data"):
        open_source(3)


class Pairs(torch.utils.data.Dataset):
    def __init__(self, kind):
        self.kind = kind

    def __len__(self):
        return 3

    def __getitem__(self, i):
        x = torch.full((2,), float(i))
        if self.kind == "pair":
            return x, i + 10
        if self.kind == "dict":
            return {"x": x, "y": np.array([i])}
        if self.kind == "broken" and i == 1:
            raise OSError("disk on fire")
        return x


class Kept(Pairs):
    labels = np.array([5, 6, 7])  # like SVHN: the labels without reading an item

    def __getitem__(self, i):
        if i == 1:
            raise AssertionError("a label must not read the item")
        return torch.zeros(2), int(self.labels[i])


def test_a_dataset_that_keeps_its_labels_is_not_read_for_them():
    source = open_source(Kept("pair"))
    assert [source.label(i) for i in range(3)] == [5, 6, 7]
    assert source[2].label == 7 and source[1].error.startswith("cannot read 'Kept[1]': AssertionError")


@pytest.mark.parametrize("kind", ["tensor", "pair", "dict", "broken"])
def test_in_memory_dataset(kind):
    source = open_source(Pairs(kind))
    items = [source[i] for i in range(3)]
    assert source.source(1) == "Pairs[1]"
    if kind == "broken":
        assert items[1].error == "cannot read 'Pairs[1]': OSError: disk on fire"
        assert collate(items).indices.tolist() == [0, 2]
        return
    batch = collate(items)
    if kind == "dict":
        assert batch.inputs["y"].tolist() == [[0], [1], [2]]
    else:
        assert batch.inputs[:, 0].tolist() == [0.0, 1.0, 2.0]
    assert batch.labels is None if kind != "pair" else batch.labels.tolist() == [10, 11, 12]
    assert source.label(2) == (12 if kind == "pair" else None)


# ---------------------------------------------------------------------------------------------
# torchvision datasets


def test_torchvision_fake_data():
    source = open_source("torchvision:FakeData", transform=SMALL)
    assert source.kind == "torchvision" and len(source) == 1000 and source.source(7) == "FakeData[7]"
    item = source[7]
    assert item.inputs.shape == (3, 32, 32) and item.label == source.label(7)
    assert 0 <= item.label < 10
    assert source.describe()["spec"] == "torchvision:FakeData"


def test_torchvision_arguments_after_a_question_mark():
    source = open_source("torchvision:FakeData?size=5&image_size=(3,8,8)&num_classes=3", transform=RAW)
    assert len(source) == 5 and source[4].inputs.shape == (3, 8, 8)
    assert source.describe()["spec"] == "torchvision:FakeData?size=5&image_size=(3,8,8)&num_classes=3"
    with pytest.raises(
        DataSourceError, match=r"no argument 'sise'. Did you mean 'size'\? It takes: size, image_size"
    ):
        open_source("torchvision:FakeData?sise=5")
    with pytest.raises(DataSourceError, match="key=value pairs"):
        open_source("torchvision:FakeData?size")


def test_a_dataset_object_of_pil_images_gets_the_default_transform():
    import torchvision

    source = open_source(torchvision.datasets.FakeData(size=3, image_size=(1, 40, 30), num_classes=2))
    item = source[2]
    assert source.kind == "memory" and item.inputs.shape == (3, 224, 224) and item.label in (0, 1)


def test_torchvision_image_folder(tmp_path):
    save(tmp_path / "b" / "1.png", color=(0, 255, 0))
    save(tmp_path / "a" / "1.png", color=(255, 0, 0))
    source = open_source("torchvision:ImageFolder", root=tmp_path, transform=RAW)
    assert source.classes == ["a", "b"] and [source.label(i) for i in range(2)] == [0, 1]
    assert pixel(source, 1) == (0, 255, 0) and source[1].label == 1


def test_torchvision_errors(tmp_path):
    with pytest.raises(
        DataSourceError, match=r"no dataset 'cifar10'. Did you mean 'CIFAR10'\? It has: .*FakeData"
    ):
        open_source("torchvision:cifar10", root=tmp_path)
    with pytest.raises(DataSourceError, match=r"no dataset 'FakeDta'. Did you mean 'FakeData'"):
        open_source("torchvision:FakeDta")
    with pytest.raises(
        DataNotFoundError, match=r"CIFAR10 found no dataset under .*--download \(download=True\).*--root DIR"
    ):
        open_source("torchvision:CIFAR10", root=tmp_path)
    with pytest.raises(DataSourceError, match=r"needs the folder .*--root DIR"):
        open_source("torchvision:CIFAR10")
    with pytest.raises(DataSourceError, match=r"DatasetFolder needs the arguments loader"):
        open_source("torchvision:DatasetFolder", root=tmp_path)
    with pytest.raises(DataSourceError, match="image_column / label_column apply to file lists"):
        open_source("torchvision:FakeData", label_column="label")


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets


@pytest.fixture
def hf_images(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (32, 32), (40 * i, 0, 0)) for i in range(3)]
    features = datasets.Features(
        {
            "photo": datasets.Image(),
            "kind": datasets.ClassLabel(names=["bird", "fish"]),
            "note": datasets.Value("string"),
        }
    )
    data = {"photo": images, "kind": [1, 0, 1], "note": ["x", "y", "z"]}
    datasets.Dataset.from_dict(data, features=features).save_to_disk(tmp_path / "ds")
    return tmp_path / "ds"


def test_hf_image_dataset_detects_columns(hf_images):
    source = open_source(hf_images, transform=RAW)
    assert source.kind == "hf-datasets" and len(source) == 3
    assert (source.image_column, source.label_column, source.classes) == ("photo", "kind", ["bird", "fish"])
    assert pixel(source, 2) == (80, 0, 0) and source[2].label == 1 and source.source(2) == "ds[2]"
    assert open_source(f"hf:{hf_images}", transform=SMALL)[0].inputs.shape == (3, 32, 32)
    json.dumps(source.describe())


def test_hf_missing_columns_are_listed(hf_images):
    with pytest.raises(
        DataSourceError,
        match=r"no image column 'foto'. Did you mean 'photo'\? Its columns: photo \(Image\), kind \(ClassLabel\), note \(Value\)",
    ):
        open_source(hf_images, image_column="foto")
    with pytest.raises(DataSourceError, match=r"no label column 'label'"):
        open_source(hf_images, label_column="label")


def test_hf_bad_image_is_an_item_error(tmp_path):
    datasets = pytest.importorskip("datasets")
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "PNG")
    cells = [{"bytes": buffer.getvalue(), "path": None}, {"bytes": b"not an image", "path": None}]
    features = datasets.Features({"image": datasets.Image()})
    datasets.Dataset.from_dict({"image": cells}, features=features).save_to_disk(tmp_path / "ds")
    source = open_source(tmp_path / "ds", transform=SMALL)
    assert source[0].error is None
    assert source[1].error == "cannot decode image 'ds[1]': not an image format PIL can read"


def test_hf_token_dataset_gives_keyword_inputs(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = {
        "text": ["a b", "c d", "e f"],
        "input_ids": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        "attention_mask": [[1, 1, 1], [1, 1, 0], [1, 0, 0]],
        "label": [2, 0, 1],
    }
    datasets.Dataset.from_dict(data).save_to_disk(tmp_path / "tokens")
    source = open_source(f"hf:{tmp_path / 'tokens'}")
    assert source.input_columns == ["input_ids", "attention_mask"] and source.label_column == "label"
    batch = collate([source[i] for i in range(3)])
    assert batch.inputs["input_ids"].tolist() == data["input_ids"] and batch.labels.tolist() == [2, 0, 1]
    datasets.Dataset.from_dict({"text": ["a"]}).save_to_disk(tmp_path / "text")
    with pytest.raises(
        DataSourceError, match=r"no image column .* no column of numbers .*text \(Value\). Tokenize"
    ):
        open_source(tmp_path / "text")


def test_hf_dataset_dict_names_its_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    one = datasets.Dataset.from_dict({"input_ids": [[1, 2]]})
    datasets.DatasetDict({"train": one, "test": one}).save_to_disk(tmp_path / "dd")
    with pytest.raises(
        DataSourceError, match=r"splits train, test; pass one split's folder, e.g. '.*dd/train'"
    ):
        open_source(tmp_path / "dd")
    assert len(open_source(tmp_path / "dd" / "train")) == 1


def test_hf_without_datasets_installed(tmp_path, monkeypatch):
    import sys

    from fxtract._data._hf import HFSource

    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataPackageError, match=r"pip install 'fxtract\[datasets\]'") as e:
        HFSource(tmp_path)
    assert isinstance(e.value, ImportError)


# ---------------------------------------------------------------------------------------------
# collate, pickling, workers


def test_collate_keywords_and_mismatches():
    items = [Item({"a": torch.zeros(2), "b": torch.ones(1)}, i) for i in range(3)]
    batch = collate(items)
    assert isinstance(batch, Batch) and batch.inputs["a"].shape == (3, 2) and len(batch) == 3
    assert batch.indices.dtype == torch.int64
    assert collate([Item(None, 4, error="bad")]).inputs is None
    with pytest.raises(DataSourceError, match=r"different shapes, \[3\] and \[5\].*padding='max_length'"):
        collate([Item(torch.zeros(3), 0), Item(torch.zeros(5), 1)])
    with pytest.raises(
        DataSourceError, match=r"different shapes, \[3, 4, 4\] and \[3, 5, 5\].*image_transform"
    ):
        collate([Item(torch.zeros(3, 4, 4), 0), Item(torch.zeros(3, 5, 5), 1)])
    with pytest.raises(DataSourceError, match="do not have the same inputs"):
        collate([Item({"a": torch.zeros(1)}, 0), Item({"b": torch.zeros(1)}, 1)])


def test_out_of_range_and_negative_indices():
    source = open_source(torch.arange(3))
    assert source[-1].index == 2 and source[-1].inputs.item() == 2
    with pytest.raises(IndexError):
        source[3]
    assert [item.index for item in source] == [0, 1, 2]  # the iteration protocol stops


def test_every_source_pickles(tmp_path, hf_images):
    from safetensors.torch import save_file

    save(tmp_path / "imgs" / "a" / "x.png")
    (tmp_path / "list.txt").write_text("imgs/a/x.png 1\n")
    torch.save(hf_inputs(), tmp_path / "x.pt")
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    save_file(hf_inputs(), tmp_path / "x.safetensors")
    specs = [tmp_path / "imgs", tmp_path / "list.txt", tmp_path / "x.pt", tmp_path / "x.npy"]
    specs += [tmp_path / "x.safetensors", "torchvision:FakeData", hf_images, torch.zeros(2, 3), hf_inputs()]
    for spec in specs:
        source = open_source(spec, transform=SMALL)
        before = source[0]
        copy = pickle.loads(pickle.dumps(source))
        after = copy[0]
        assert after.error is None and after.label == before.label, spec
        if isinstance(before.inputs, dict):
            assert all(torch.equal(before.inputs[k], after.inputs[k]) for k in before.inputs)
        else:
            assert torch.equal(before.inputs, after.inputs), spec


@pytest.mark.parametrize("start", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])  # spawn pickles
def test_data_loader_with_two_workers(tmp_path, start):
    for i in range(6):
        save(tmp_path / ("a" if i % 2 else "b") / f"{i}.png", color=(i * 40, 0, 0))
    (tmp_path / "a" / "9.png").write_text("corrupt")
    source = open_source(tmp_path, transform=RAW)
    loader = torch.utils.data.DataLoader(
        source, batch_size=3, num_workers=2, collate_fn=collate, multiprocessing_context=start
    )
    batches = list(loader)
    indices = torch.cat([b.indices for b in batches]).tolist()
    failed = [f for b in batches for f in b.failed]
    assert indices == [i for i in range(7) if source.source(i) != "a/9.png"]
    assert failed == [
        (source.paths.index("a/9.png"), "cannot decode image 'a/9.png': not an image format PIL can read")
    ]
    labels = torch.cat([b.labels for b in batches]).tolist()
    assert labels == [source.label(i) for i in indices]
    reds = torch.cat([b.inputs[:, 0, 0, 0] for b in batches])
    assert [round(float(r) * 255) for r in reds] == [
        int(source.source(i).split("/")[1][0]) * 40 for i in indices
    ]


# ---------------------------------------------------------------------------------------------
# Transforms


def test_image_transform_options():
    image = Image.new("RGB", (60, 40), (255, 255, 255))
    assert image_transform()(image).shape == (3, 224, 224)
    x = image_transform(image_size=(16, 24), resize=20, normalize=False)(image)
    assert x.shape == (3, 16, 24) and x.max() == 1.0
    assert image_transform(image_size=None, resize=None)(image).shape == (3, 40, 60)
    assert image_transform(image_size=8, resize=None)(torch.zeros(3, 10, 10, dtype=torch.uint8)).shape == (
        3,
        8,
        8,
    )
    with pytest.raises(DataSourceError, match="image_size must be a positive int"):
        image_transform(image_size=0)
    with pytest.raises(DataSourceError, match="unknown interpolation 'cubic'; use one of nearest"):
        image_transform(interpolation="cubic")
    assert pickle.loads(pickle.dumps(image_transform(image_size=8))) == image_transform(image_size=8)


def test_describe_transform_is_deterministic_and_json():
    import torchvision
    from torchvision import transforms as T

    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    assert describe_transform(preset) == {
        "type": "torchvision.transforms._presets.ImageClassification",
        "resize_size": [256],
        "crop_size": [224],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
        "antialias": True,
    }
    composed = T.Compose([T.Resize(40), T.Lambda(lambda x: x), T.ToTensor()])
    described = describe_transform(composed)
    assert (
        described["type"] == "torchvision.transforms.transforms.Compose" and len(described["transforms"]) == 3
    )
    assert described == describe_transform(T.Compose([T.Resize(40), T.Lambda(lambda x: x), T.ToTensor()]))
    assert "0x" not in json.dumps(described)
    assert describe_transform(None) is None


def test_data_transform_per_model_spec():
    import torchvision

    from fxtract._cli._models import LoadedModel, ModelSpecError, data_transform, load_model

    resnet = load_model("torchvision:resnet18")
    preset = torchvision.models.ResNet18_Weights.DEFAULT
    assert type(data_transform(resnet, weights=preset)).__name__ == "ImageClassification"
    assert describe_transform(data_transform(resnet, weights="DEFAULT")) == describe_transform(
        preset.transforms()
    )
    carried = LoadedModel(resnet.model, resnet.spec)
    carried.weights = preset  # a loader that records the weights it loaded
    assert type(data_transform(carried)).__name__ == "ImageClassification"
    smaller = data_transform(resnet, weights=preset, image_size=112, normalize=False)
    assert (smaller.image_size, smaller.resize, smaller.normalize) == (112, 128, False)
    plain = data_transform(resnet)  # random weights: resize 256, crop 224, ImageNet
    assert plain == image_transform()
    assert data_transform(resnet, image_size=32, resize=40) == image_transform(image_size=32, resize=40)
    with pytest.raises(ModelSpecError, match="--image-size must be a positive integer"):
        data_transform(resnet, image_size=-1)


def test_data_transform_for_timm():
    pytest.importorskip("timm")
    from fxtract._cli._models import data_transform, load_model

    loaded = load_model("timm:resnet18")
    default = describe_transform(data_transform(loaded))
    assert default["transforms"][0].startswith("Resize(size=235, interpolation=bicubic")  # crop_pct 0.95
    image = Image.new("RGB", (50, 40), (255, 255, 255))
    small = data_transform(loaded, image_size=32, resize=40, normalize=False)
    x = small(image)
    assert x.shape == (3, 32, 32) and torch.allclose(x, torch.ones_like(x))


def test_doctests():
    import fxtract._data as data
    from fxtract._data import _base, _images, _transforms

    for module in (_base, _images, _transforms, data):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
