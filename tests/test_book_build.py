"""Pieces of tools/build_book.py that need no build: which cells the book folds as plumbing."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from build_book import is_plumbing, render_notebook  # noqa: E402


@pytest.mark.parametrize("code", ["import torch\nfrom pathlib import Path\ntorch.set_num_threads(1)",
                                  "assert x == 1, 'guard'\nimport numpy as np", "warnings.filterwarnings('ignore')"])
def test_plumbing_is_recognised(code):
    assert is_plumbing(code)


@pytest.mark.parametrize("code", ["x = 1\nimport torch", "print(1)", "", "%matplotlib inline", "plt.show()",
                                  "import torch\nMarkdown('a claim')"])
def test_work_is_not_plumbing(code):
    assert not is_plumbing(code)


def test_plumbing_cells_are_folded_and_others_not():
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Title"},
             {"cell_type": "code", "metadata": {}, "outputs": [], "source": "import torch\ntorch.set_num_threads(1)"},
             {"cell_type": "code", "metadata": {}, "outputs": [], "source": "y = 2 * 3"},
             {"cell_type": "code", "metadata": {}, "outputs": [], "source": "#| export\nimport torch"},
             {"cell_type": "code", "metadata": {}, "outputs": [], "source": "import numpy as np\nx = np.ones(3)"}]
    notebook = render_notebook({"cells": cells, "metadata": {}}, Path("99_example.ipynb"), api={}, modules={})
    tags = [c.get("metadata", {}).get("tags", []) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert tags[0] == ["hide-input"] and "hide-input" not in tags[1] and "hide-input" not in tags[2]
    assert "hide-input" not in tags[3]  # imports and work, but not the chapter's first code cell: shown


def test_the_setup_cell_is_folded():
    "A chapter's first code cell that starts with imports (imports, then loading) is folded even though it does more."
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Title"},
             {"cell_type": "code", "metadata": {}, "outputs": [], "source": "import json\nRESULTS = json.loads('{}')"},
             {"cell_type": "code", "metadata": {}, "outputs": [], "source": "import math\ny = math.pi"}]
    notebook = render_notebook({"cells": cells, "metadata": {}}, Path("99_example.ipynb"), api={}, modules={})
    tags = [c.get("metadata", {}).get("tags", []) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert tags[0] == ["hide-input"] and "hide-input" not in tags[1]
