from pathlib import Path

from otel_hakgal.reference import BLOCKS, generated_blocks

DOC = Path(__file__).resolve().parents[1] / "instrumentation.md"


def test_instrumentation_md_matches_the_code() -> None:
    found = generated_blocks(DOC.read_text(encoding="utf-8"))
    assert set(found) == set(BLOCKS), "instrumentation.md lacks generated blocks"
    for name, render in BLOCKS.items():
        assert found[name] == render(), (
            f"the '{name}' table in instrumentation.md is stale: "
            "run `python -m otel_hakgal.reference instrumentation.md`"
        )


def test_every_name_and_env_var_appears_in_the_doc() -> None:
    from otel_hakgal.config import environment_variables
    from otel_hakgal.conventions import ATTRIBUTES, METRICS, SPANS

    text = DOC.read_text(encoding="utf-8")
    names = [a.key for a in ATTRIBUTES] + [m.name for m in METRICS] + [s.name for s in SPANS]
    names += list(environment_variables())
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing
