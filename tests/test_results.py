"""results: the one result type and the comparison table."""
import numpy as np
import pytest

from tutorial_utils.results import RegistrationResult, compare, comparison_table


def test_result_needs_exactly_one_transform():
    with pytest.raises(ValueError, match="exactly one"):
        RegistrationResult("none", 1.0)
    with pytest.raises(ValueError, match="exactly one"):
        RegistrationResult("both", 1.0, theta=np.eye(4, 3), ddf=np.zeros((1, 2, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"\(1, d1, d2, d3, 3\)"):
        RegistrationResult("bad", 1.0, ddf=np.zeros((2, 2, 2, 2)))


def test_displacement_of_an_affine_is_the_analytic_field():
    theta = np.array([[1.1, 0.0, 0.2], [0.0, 0.9, 0.0], [0.1, 0.0, 1.0], [2.0, -1.0, 0.5]])
    field = RegistrationResult("a", 0.0, theta=theta).displacement((3, 4, 5))
    x = np.array([2.0, 3.0, 4.0])
    np.testing.assert_allclose(field[0, 2, 3, 4], x @ theta[:3] + theta[3] - x, rtol=1e-6)


def test_displacement_of_a_ddf_is_itself_and_checks_the_grid():
    ddf = np.random.default_rng(0).standard_normal((3, 4, 5, 3)).astype(np.float32)
    result = RegistrationResult("d", 0.0, ddf=ddf)  # a missing batch axis is added
    assert result.ddf.shape == (1, 3, 4, 5, 3)
    np.testing.assert_array_equal(result.displacement((3, 4, 5))[0], ddf)
    with pytest.raises(ValueError, match="grid"):
        result.displacement((3, 4, 6))


def test_table_text_and_html_keep_rows_and_order():
    rows = [{"method": "identity", "dice": 0.5, "hd95": float("nan")},
            {"method": "course", "dice": 0.81234, "seconds": 12.5, "tiny": 0.00123}]
    table = comparison_table(rows, title="t")
    text = str(table).splitlines()
    assert text[0] == "t" and text[1].split() == ["method", "dice", "hd95", "seconds", "tiny"]
    assert text[3].split() == ["identity", "0.500", "-", "-", "-"]
    assert text[4].split() == ["course", "0.812", "-", "12.500", "1.23e-03"]
    assert table.column("dice") == [0.5, 0.81234]
    assert "<caption>t</caption>" in table._repr_html_() and table._repr_html_().count("<tr>") == 3


def test_compare_scores_each_result_once_in_order():
    runs = {"b": RegistrationResult("b", 2.0, theta=np.eye(4, 3)),
            "a": RegistrationResult("a", 1.0, theta=np.eye(4, 3))}
    seen = []
    table = compare(runs, lambda r: seen.append(r.method) or {"score": r.seconds * 10}, per=" per pair")
    assert seen == ["b", "a"]
    assert table.columns == ["method", "seconds per pair", "score"]
    assert table.column("score") == [20.0, 10.0]
