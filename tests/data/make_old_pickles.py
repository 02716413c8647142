"""Write ``extractors_0_1.pkl``: extractors pickled by fxtract 0.1 (the layout before ``_strategies/``).

Run with the old code first on the path, from the repository root::

    git archive ff69557 src | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src python tests/data/make_old_pickles.py

``tests/test_layers.py`` loads the file with the current code: the pickled import paths
(``fxtract._graph_module``, ``fxtract._export``, ``fxtract._hooks``, ``fxtract._runtime``) must stay.
"""

import pickle
from pathlib import Path

import torch
from torch import nn

import fxtract


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(144, 2)
    )
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    out = {"fxtract": fxtract.__version__, "input": x, "extractors": {}, "expected": {}}
    for strategy in ("fx", "export", "hooks"):
        ex = fxtract.create_feature_extractor(
            model, {"1": "bn", "2": "act", "4": "logits"}, strategy=strategy, example_inputs=x
        ).eval()
        out["extractors"][strategy] = ex
        with torch.no_grad():
            out["expected"][strategy] = ex(x)
    path = Path(__file__).with_name("extractors_0_1.pkl")
    path.write_bytes(pickle.dumps(out))
    print(path, path.stat().st_size)


if __name__ == "__main__":
    main()
