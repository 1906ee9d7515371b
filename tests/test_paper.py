"""The paper's numbers in slotcov.paper, pinned against the tables as printed in the paper, and the
claims' numbers against those tables."""
import math

import pytest

from slotcov import paper

# Typed from the paper's text (Tables 1-3 and Sec. 4.3.1), independently of src/slotcov/paper.py.
PRINTED_TABLE1 = """
SLOT-ATTENTION 90.71 20
COVLOSS 87.42 29.55
COSINELOSS 88.82 34.23
"""
PRINTED_TABLE2 = """
SLOT-ATTENTION 0.8472 0.9485 0.7865 0.9734 0.9726
COVLOSS 0.8438 0.9359 0.7675 0.9641 0.9694
COSINELOSS 0.8984 0.9199 0.8124 0.9592 0.9626
"""
PRINTED_TABLE3 = {"DINOSAUR": 43.86, "DINOSAUR + COVLOSS": 42.64, "DINOSAUR + slot dim. 1024": 15.25,
                  "DINOSAUR + slot dim. 1024 + COVLOSS": 35.35}
PRINTED_BLOCKMASKS = 23  # "achieves an FG-ARI of around 23"
NAMES = {"SLOT-ATTENTION": "sa", "COVLOSS": "covloss", "COSINELOSS": "cosineloss", "DINOSAUR": "dinosaur",
         "DINOSAUR + COVLOSS": "dinosaur_covloss", "DINOSAUR + slot dim. 1024": "dinosaur1024",
         "DINOSAUR + slot dim. 1024 + COVLOSS": "dinosaur1024_covloss"}


def printed(text: str) -> dict[str, list[float]]:
    return {NAMES[line.split()[0]]: [float(x) for x in line.split()[1:]] for line in text.strip().splitlines()}


def test_table1_as_printed():
    rows = printed(PRINTED_TABLE1)
    expected = {(ds, m): v for m, vals in rows.items() for ds, v in zip(["cmdsprites", "coco"], vals)}
    assert paper.TABLE1 == expected
    assert paper.TABLE1_ROWS == ["sa", "covloss", "cosineloss"] and paper.TABLE1_COLS == ["cmdsprites", "coco"]


def test_table2_as_printed():
    rows = printed(PRINTED_TABLE2)
    assert paper.TABLE2_COLS == ["shape_acc", "color_r2", "scale_r2", "x_r2", "y_r2"]  # the paper's column order
    assert {m: [paper.TABLE2[m][c] for c in paper.TABLE2_COLS] for m in paper.TABLE2} == rows


def test_table3_and_block_masks_as_printed():
    assert paper.TABLE3 == {NAMES[k]: v for k, v in PRINTED_TABLE3.items()}
    assert paper.BLOCKMASKS == PRINTED_BLOCKMASKS


def printed_value(side, value):
    """The printed number of one side of a test: a cell's table entry (a tuple of properties: their mean),
    or the constant itself."""
    if isinstance(side, (int, float)):
        return float(side)
    dataset, method = side.split("/")
    if isinstance(value, tuple) or value in paper.TABLE2_COLS:
        props = dict(zip(paper.TABLE2_COLS, printed(PRINTED_TABLE2)[method]))
        keys = value if isinstance(value, tuple) else (value,)
        return sum(props[k] for k in keys) / len(keys)
    if method in printed(PRINTED_TABLE1):
        return printed(PRINTED_TABLE1)[method][["cmdsprites", "coco"].index(dataset)]
    if method == "blockmasks":
        return float(PRINTED_BLOCKMASKS)
    return {NAMES[k]: v for k, v in PRINTED_TABLE3.items()}[method]


def comparisons(claim):
    return [claim["primary"], *claim["secondary"]]


def test_claims_quote_the_printed_numbers():
    assert [c["id"] for c in paper.CLAIMS] == [f"C{i}" for i in range(1, 25)]
    checked = 0
    for claim in paper.CLAIMS:
        for test in comparisons(claim):
            if test["paper"] is None or test["source"] == "log":
                continue
            printed_gap = printed_value(test["a"], test["value"]) - printed_value(test["b"], test["value"])
            assert test["paper"] == pytest.approx(printed_gap, abs=1e-6), test
            checked += 1
    assert checked >= 30


def test_every_claim_has_a_rule_fixed_in_advance():
    kinds = {"superiority", "size", "non-superiority", "equivalence", "rate"}
    for c in paper.CLAIMS:
        low, high = c["region"]
        assert c["kind"] in kinds and low < high and c["quote"] and c["where"] and c["sesoi_why"], c["id"]
        assert c["sesoi"] > 0 and c["unit"]
        if c["kind"] == "superiority":  # a beats b by at least the smallest effect of interest
            assert (low, high) == (c["sesoi"], math.inf), c["id"]
        if c["kind"] == "non-superiority":
            assert (low, high) == (-math.inf, c["sesoi"]), c["id"]
        if c["kind"] == "equivalence":
            assert low == -high == -c["sesoi"], c["id"]
        assert low < c["holds"] < high, c["id"]  # the effect planned for lies where the claim holds ...
        assert not low < c["fails"] < high, c["id"]  # ... and the effect at which it is false does not
        if c["primary"]["paper"] is not None and c["kind"] != "rate":
            assert low < c["primary"]["paper"] < high, c["id"]  # the paper's own run supports its claim


def test_sizes_and_margins_in_the_text_are_rules():
    claims = {c["id"]: c for c in paper.CLAIMS}
    assert claims["C2"]["kind"] == "size" and claims["C2"]["region"] == (7.5, 12.5)  # "nearly 10 points"
    assert claims["C7"]["kind"] == "size" and claims["C7"]["region"] == (-2.0, -0.5)  # "slightly degrades"
    assert claims["C6"]["kind"] == "non-superiority"  # "outperforms on two of five": not better on the other three
    assert set(claims["C6"]["primary"]["value"]) == {"color_r2", "x_r2", "y_r2"}
    assert set(claims["C12"]["primary"]["value"]) == {"shape_acc", "scale_r2"}
    assert claims["C11"]["kind"] == "equivalence" and claims["C11"]["primary"]["pipeline"] == "dinosaur"
    c10 = claims["C10"]["primary"]
    assert c10["source"] == "log" and c10["value"] == "cov" and c10["transform"] == "log10"
    assert claims["C10"]["region"] == (-math.inf, -9.0) and c10["paper"] == -10.0


def test_the_claims_of_every_section_are_there():
    by_cells = {(c["primary"]["a"], c["primary"]["b"], c["primary"]["value"]): c["id"] for c in paper.CLAIMS}
    assert ("coco/dinosaur", "coco/covloss", "fg_ari") in by_cells  # abstract: does not reach DINOSAUR
    assert ("cmdsprites/covloss_var", "cmdsprites/covloss", "fg_ari") in by_cells  # Sec. 3: variance term
    assert ("cmdsprites/cosineloss_proj", 0.0, "diverged") in by_cells  # Sec. 3: diverges
    assert ("coco/cosineloss", "coco/sa", "stripe") in by_cells  # Sec. 4.3.1: worse striping
    assert ("coco/dinosaur1024", "coco/dinosaur", "mse") in by_cells  # Sec. 4.3.2: poor reconstruction
    assert ("coco/covloss", "coco/blockmasks", "mbo") in by_cells  # Sec. 4.3.1: some object separation
    assert {("cmdsprites/covloss", "cmdsprites/sa", "mse"), ("cmdsprites/sa", "cmdsprites/covloss", "mbo")} <= set(by_cells)
