"""scripts/evaluate_steps.py's frontier rows: what each row runs (method, config, options) and where its
records are read, the folder the command line writes them to."""

from __future__ import annotations

from inference.report import record_path, write_json
from script_modules import load_script

evaluate_steps = load_script("evaluate_steps")
evaluate_demo = load_script("evaluate_demo")


def test_rows_run_each_variant_with_its_method_and_config():
    table = evaluate_steps.rows([25, 10], ["ddim", "dpmpp_2m"], [25])
    assert table[0].variant == "rm0" and table[0].flags() == []
    assert [r.variant for r in table[1:4]] == ["difface", "dynfacerestore", "zero_shot"]
    assert all(r.flags() == ["--preset", "paper"] for r in table[1:4])
    zero_shot = [r for r in table if r.variant == "zero_shot"]
    assert len(zero_shot) == 1 + 2 * 2
    assert all(r.method == "dynfacerestore" and r.config == evaluate_demo.PUBLIC_CONFIG for r in zero_shot)
    difface = next(r for r in table if r.variant == "difface" and r.steps == 10 and r.solver == "dpmpp_2m")
    assert difface.flags() == ["--steps", "10", "--solver", "dpmpp_2m"] and difface.guided == "-"
    once = table[-2:]
    assert [(r.variant, r.steps, r.guided) for r in once] == [("dynfacerestore", 25, "once")] * 2
    assert once[0].flags()[-1] == "sampler.guidance.reguide=false"


def test_run_set_reads_the_records_where_the_command_line_writes_them(tmp_path):
    """Every row already restored (records in the folders inference_difface.py writes, named after the
    --method): no process starts, and each row's summary is over the faces of all rows."""
    testset = tmp_path / "testset"
    (testset / "lq").mkdir(parents=True)
    (testset / "lq" / "a.png").write_bytes(b"")
    table = evaluate_steps.rows([25], ["ddim"], [])
    for index, row in enumerate(table):
        folder = evaluate_demo.row_dir(tmp_path, index, row.method)
        write_json(record_path(folder, "a"), {"key": "a", "metrics": {"psnr": 20.0 + index}, "nfe": index})
    results = evaluate_steps.run_set(testset, tmp_path, table, nproc=1)
    assert [r["n"] for r in results] == [1] * len(table)
    assert [r["psnr"] for r in results] == [20.0 + i for i in range(len(table))]
