import pytest
from pydantic import TypeAdapter, ValidationError

from aiinfra.runtime.champion import check_model, smoke_frame
from aiinfra.runtime.serving import MAX_BATCH_ROWS, BatchOfApplications, LoanApplication

GOOD = {
    "applicant_id": 1,
    "zipcode": "10000",
    "loan_amount": 12000.0,
    "term_months": 36,
    "purpose": "car",
}
batch = TypeAdapter(BatchOfApplications)


def test_a_good_row_validates() -> None:
    assert LoanApplication(**GOOD).model_dump()["purpose"] == "car"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"loan_amount": float("nan")}, "loan_amount"),
        ({"loan_amount": float("inf")}, "loan_amount"),
        ({"loan_amount": -5}, "loan_amount"),
        ({"loan_amount": "a lot"}, "loan_amount"),
        ({"term_months": 1000}, "term_months"),
        ({"purpose": "yacht"}, "purpose"),
        ({"zipcode": "12"}, "zipcode"),
        ({"applicant_id": 0}, "applicant_id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        LoanApplication(**{**GOOD, **change})
    assert field in str(err.value)


def test_missing_field_is_named() -> None:
    row = dict(GOOD)
    del row["purpose"]
    with pytest.raises(ValidationError, match="purpose"):
        LoanApplication(**row)


def test_batch_bounds() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        batch.validate_python([])
    with pytest.raises(ValidationError, match=f"at most {MAX_BATCH_ROWS}"):
        batch.validate_python([GOOD] * (MAX_BATCH_ROWS + 1))


def test_smoke_frame_covers_every_feature() -> None:
    from aiinfra.project import schema

    assert list(smoke_frame().columns) == list(schema.FEATURE_NAMES)
    with pytest.raises(AttributeError):
        check_model(None)  # type: ignore[arg-type]
